/**
 * Issue 27 at its size: a run of 10,000 steps with a 1 ms durable sleep every 10th step (1,000 wakes).
 * With the execution cache on (the default) every wake resumes the suspended handler with only the new
 * records: the handler body is entered once, the run takes seconds rather than minutes, a wake late in
 * the run costs about what an early one does, and no FCALL runs over 5 ms (SLOWLOG). With the cache off
 * (a smaller run, as each wake replays) every wake enters the handler again, and the result is the same.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

const N = Number(process.env.LONG_RUN_N ?? 10_000);

const entered = new Map<string, number>();
/** When each wake's sleep was asked for and when the handler went on after it (first time only: a replay passes it again). */
const marks = new Map<string, number>();
const mark = (key: string) => {
  if (!marks.has(key)) marks.set(key, performance.now());
};

@Workflow('long-loop', { maxAttempts: 1 })
@Injectable()
class LongLoopWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; tag: string }>) {
    entered.set(ctx.input.tag, (entered.get(ctx.input.tag) ?? 0) + 1);
    let total = 0;
    for (let i = 0; i < ctx.input.n; i += 1) {
      total += await ctx.step.run(`s${i}`, () => i);
      if (i % 10 === 9) {
        mark(`${ctx.input.tag}:a${i}`);
        await ctx.step.sleep(`z${i}`, 1);
        mark(`${ctx.input.tag}:b${i}`);
      }
    }
    return total;
  }
}

const suite = useSuiteRedis();
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
/** The 21 wakes around step `step`: their latency (sleep asked for -> handler went on). */
const wakesAround = (tag: string, step: number) =>
  [...Array(21).keys()].map((k) => Math.floor(step / 10) * 10 + 9 + 10 * (k - 10)).map((i) => marks.get(`${tag}:b${i}`)! - marks.get(`${tag}:a${i}`)!);

beforeAll(() => {
  if (suite.redis.server) prioritize(suite.redis.server.pid);
});

describe('long runs: 10,000 steps with 1,000 wakes', () => {
  it('with the cache on: the handler is entered once past 32 records, wakes late in the run cost about what early ones do, no FCALL over 5 ms', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('long'), worker: { reaperIntervalMs: 20 }, maxStepsPerRun: 20_000 }, [LongLoopWorkflow]);
    suite.apps.push(app);
    await startSlowlog(suite.direct, 5_000);
    const started = performance.now();
    const handle = await app.client.emit('long-loop', { n: N, tag: 'warm' });
    expect(await handle.result({ timeoutMs: 300_000 })).toBe((N * (N - 1)) / 2);
    const seconds = (performance.now() - started) / 1000;
    // the default executionCache.minRecords (32): the parks at 10 and 21 records are cold, and replayed
    // once each; from the park at 32 records on the run stays warm (a wake replays nothing)
    expect(entered.get('warm')).toBe(3);
    const early = median(wakesAround('warm', 200));
    const late = median(wakesAround('warm', Math.min(N - 300, 5_000)));
    process.stdout.write(`long run of ${N} steps, cache on: ${seconds.toFixed(1)} s; median wake around step 200 ${early.toFixed(2)} ms, around step ${Math.min(N - 300, 5_000)} ${late.toFixed(2)} ms\n`);
    expect(late).toBeLessThan(3 * early + 2);
    expect(await unexplainedSlowFcalls(suite.direct)).toEqual([]);
  }, 360_000);

  it('with the cache off: every wake replays, with the same result', async () => {
    const n = Math.min(N, 1_000);
    const app = await startApp(
      { connection: suite.redis.url, prefix: uniquePrefix('long-cold'), worker: { reaperIntervalMs: 20 }, executionCache: false, maxStepsPerRun: 20_000 },
      [LongLoopWorkflow],
    );
    suite.apps.push(app);
    const handle = await app.client.emit('long-loop', { n, tag: 'cold' });
    expect(await handle.result({ timeoutMs: 300_000 })).toBe((n * (n - 1)) / 2);
    expect(entered.get('cold')).toBe(n / 10 + 1);
  }, 360_000);
});
