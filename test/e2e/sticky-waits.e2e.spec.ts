/**
 * Warm resumes of every kind of wait: child runs (in the run's shard and in another), an event, a wait
 * that times out, and a Promise.all over a child and a sleep. The run's handler body is entered once
 * (the cache resumed it at each wake), and its results are those of a replay (the same run with the cache
 * off, entered at every wake).
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

const entered = new Map<string, number>();

@Workflow('double-it', { maxAttempts: 1 })
@Injectable()
class DoubleWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n * 2;
  }
}

@Workflow('double-elsewhere', { maxAttempts: 1, queue: 'elsewhere' })
@Injectable()
class DoubleElsewhereWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n * 2;
  }
}

@Workflow('mixed-waits', { maxAttempts: 1 })
@Injectable()
class MixedWaitsWorkflow {
  async execute(ctx: WorkflowContext<{ rounds: number; tag: string }>) {
    entered.set(ctx.input.tag, (entered.get(ctx.input.tag) ?? 0) + 1);
    const seen: unknown[] = [];
    for (let r = 0; r < ctx.input.rounds; r += 1) {
      seen.push(await ctx.step.run(`step-${r}`, () => r));
      seen.push(await ctx.step.runWorkflow(`child-${r}`, DoubleWorkflow, { n: r }));
      seen.push(await ctx.step.runWorkflow(`far-${r}`, DoubleElsewhereWorkflow, { n: r + 100 }));
      const [both] = await Promise.all([ctx.step.runWorkflow(`pair-${r}`, DoubleWorkflow, { n: r + 10 }), ctx.step.sleep(`nap-${r}`, 5)]);
      seen.push(both);
      seen.push(await ctx.step.waitForEvent(`signal-${r}`, { event: 'go', key: `${ctx.input.tag}-${r}` }));
      seen.push(await ctx.step.waitForEvent(`late-${r}`, { event: 'never', key: ctx.input.tag, timeoutMs: 20 }));
    }
    return seen;
  }
}

const suite = useSuiteRedis();

function expected(rounds: number, tag: string): unknown[] {
  return [...Array(rounds).keys()].flatMap((r) => [r, r * 2, (r + 100) * 2, (r + 10) * 2, { round: r, tag }, null]);
}

async function runMixed(tag: string, cache: boolean, rounds: number): Promise<unknown> {
  const app = await startApp(
    { connection: suite.redis.url, prefix: uniquePrefix(tag), worker: { reaperIntervalMs: 20 }, tracing: false, ...(cache ? { executionCache: { minRecords: 0 } } : { executionCache: false }) },
    [DoubleWorkflow, DoubleElsewhereWorkflow, MixedWaitsWorkflow],
  );
  suite.apps.push(app);
  const handle = await app.client.emit('mixed-waits', { rounds, tag });
  // each round's event is sent once the run waits for it
  for (let r = 0; r < rounds; r += 1) {
    await waitFor(async () => (await app.client.getRunSteps(handle.id)).some((s) => s.name === `signal-${r}`), 15_000);
    await app.client.sendEvent('go', { round: r, tag }, { key: `${tag}-${r}` });
  }
  return handle.result({ timeoutMs: 30_000 });
}

describe('warm resumes of children, events, timeouts and Promise.all', () => {
  it('the handler is entered once and the results are those of a replay', async () => {
    expect(await runMixed('warm-mixed', true, 4)).toEqual(expected(4, 'warm-mixed'));
    expect(entered.get('warm-mixed')).toBe(1);
    expect(await runMixed('cold-mixed', false, 4)).toEqual(expected(4, 'cold-mixed'));
    expect(entered.get('cold-mixed')).toBeGreaterThan(4 * 5);
  }, 90_000);
});
