/**
 * The executionCache option: its defaults, `false`, and a clear error for a value out of range or a key
 * it does not have (checked once, at start, before anything connects).
 */
import { describe, expect, it } from '@jest/globals';
import { WorkflowConfigurationError } from '../../lib/errors/workflow.errors.js';
import { resolveSettings } from '../../lib/workflow-settings.js';

describe('executionCache option', () => {
  it('defaults to a bounded cache, and false turns it off', () => {
    expect(resolveSettings({}).executionCache).toEqual({ maxRuns: 1000, maxBytes: 64 * 1024 * 1024, stickyWindowMs: 1000, minRecords: 32 });
    expect(resolveSettings({ executionCache: { maxRuns: 5 } }).executionCache).toEqual({ maxRuns: 5, maxBytes: 64 * 1024 * 1024, stickyWindowMs: 1000, minRecords: 32 });
    expect(resolveSettings({ executionCache: false }).executionCache).toBe(false);
  });

  it('refuses a value out of range or a key it does not know, naming it', () => {
    expect(() => resolveSettings({ executionCache: { maxRuns: 0 } })).toThrow(WorkflowConfigurationError);
    expect(() => resolveSettings({ executionCache: { maxRuns: 0 } })).toThrow(/executionCache.maxRuns must be a whole number >= 1, got 0/);
    expect(() => resolveSettings({ executionCache: { maxBytes: 1.5 } as never })).toThrow(/executionCache.maxBytes/);
    expect(() => resolveSettings({ executionCache: { stickyWindowMs: -1 } })).toThrow(/executionCache.stickyWindowMs/);
    expect(() => resolveSettings({ executionCache: { maxEntries: 3 } as never })).toThrow(/'maxEntries' is not one of them/);
    expect(() => resolveSettings({ executionCache: true as never })).toThrow(/executionCache must be false or/);
  });
});
