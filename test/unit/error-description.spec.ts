import { describe, expect, it } from '@jest/globals';
import { describeError } from '../../lib/errors/error-codec.js';

describe('describeError: one line for logs and messages', () => {
  it('names the error and keeps its message', () => {
    expect(describeError(new TypeError('bad input'))).toBe('TypeError: bad input');
    expect(describeError('plain text')).toBe('plain text');
  });

  it('cuts a message of megabytes (a failed run logged 4 MB at ERROR) and says how much it left out', () => {
    const text = describeError(new Error('x'.repeat(4_000_000)));
    expect(text.length).toBeLessThan(2_100);
    expect(text).toMatch(/^Error: x+… \(3998007 more characters\)$/);
  });
});
