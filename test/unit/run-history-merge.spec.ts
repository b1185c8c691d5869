import { describe, expect, it } from '@jest/globals';
import { mergeStepEvents } from '../../lib/client/run-info.mapper.js';
import type { RunEvent } from '../../lib/interfaces/run.interfaces.js';

const at = (ms: number) => new Date(ms).toISOString();

describe('run history: step outcomes merged with the run transitions', () => {
  it('orders a step that failed in the same millisecond as the run began compensating before it, and the compensations after it', () => {
    const history: RunEvent[] = [
      { type: 'created', at: at(1) },
      { type: 'claimed', at: at(1) },
      { type: 'compensating', at: at(5) },
      { type: 'failed', at: at(6) },
    ];
    const steps = {
      '0:reserve': `3|S|${JSON.stringify({ k: 'step', a: 1, st: 2 })}`,
      '0:charge': `5|C|${JSON.stringify({ k: 'step', a: 1, st: 3, sc: 4, s: 'compensated' })}`,
      '0:ship': `5|F|${JSON.stringify({ k: 'step', a: 1, st: 4, e: { name: 'Error', message: 'no courier' } })}`,
    };
    const types = mergeStepEvents(history, steps).map((e) => (e.step ? `${e.type}:${e.step}` : e.type));
    expect(types).toEqual([
      'created',
      'claimed',
      'step-succeeded:reserve',
      'step-succeeded:charge',
      'step-failed:ship',
      'compensating',
      'step-compensated:charge',
      'failed',
    ]);
  });

  it('orders compensations committed in the same millisecond in reverse order of their steps', () => {
    const history: RunEvent[] = [{ type: 'compensating', at: at(9) }];
    const steps = {
      '0:first': `9|C|${JSON.stringify({ k: 'step', a: 1, st: 1, sc: 2, s: 'compensated' })}`,
      '0:second': `9|C|${JSON.stringify({ k: 'step', a: 1, st: 3, sc: 4, s: 'compensated' })}`,
    };
    const compensations = mergeStepEvents(history, steps).filter((e) => e.type === 'step-compensated').map((e) => e.step);
    expect(compensations).toEqual(['second', 'first']);
  });

  it('orders steps committed in the same millisecond as the claim after it', () => {
    const history: RunEvent[] = [
      { type: 'claimed', at: at(7) },
      { type: 'succeeded', at: at(7) },
    ];
    const steps = { '0:only': `7|S|${JSON.stringify({ k: 'step', a: 1, st: 7 })}` };
    expect(mergeStepEvents(history, steps).map((e) => e.type)).toEqual(['claimed', 'step-succeeded', 'succeeded']);
  });
});
