/**
 * executionCache.minRecords (docs/long-runs.md): a run parks warm only once it has that many step records
 * (default 32); a shorter one parks cold and is replayed at its next wake, which costs less than the warm
 * path's own claim and notice (bench scenario 3).
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type ExecutionCacheOptions, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

const entered = new Map<string, number>();

@Workflow('padded-naps', { maxAttempts: 1 })
@Injectable()
class PaddedNaps {
  async execute(ctx: WorkflowContext<{ pad: number; tag: string }>) {
    entered.set(ctx.input.tag, (entered.get(ctx.input.tag) ?? 0) + 1);
    for (let i = 0; i < ctx.input.pad; i += 1) await ctx.step.run(`pad-${i}`, () => i);
    for (let nap = 0; nap < 3; nap += 1) await ctx.step.sleep(`nap-${nap}`, 5);
    return ctx.input.pad;
  }
}

const suite = useSuiteRedis();

async function timesEntered(tag: string, pad: number, executionCache?: ExecutionCacheOptions): Promise<number> {
  const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix(tag), worker: { reaperIntervalMs: 20 }, tracing: false, ...(executionCache ? { executionCache } : {}) }, [PaddedNaps]);
  suite.apps.push(app);
  const handle = await app.client.emit(PaddedNaps, { pad, tag });
  expect(await handle.result({ timeoutMs: 15_000 })).toBe(pad);
  return entered.get(tag)!;
}

describe('executionCache.minRecords', () => {
  it('by default a run of a few records parks cold (replayed at each of its 3 wakes)', async () => {
    expect(await timesEntered('few', 0)).toBe(4);
  });

  it('by default a run past 32 records parks warm (its handler entered once)', async () => {
    expect(await timesEntered('many', 40)).toBe(1);
  });

  it('minRecords: 0 keeps every parked run warm', async () => {
    expect(await timesEntered('all', 0, { minRecords: 0 })).toBe(1);
  });
});
