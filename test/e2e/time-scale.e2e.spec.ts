import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { redisUrlForTests, sleep, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, statusIndexSize, waitFor } from '../support/workflow-app.js';

let redis: TestRedis;
let probe: Redis;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Present so that the worker serves the default queue; never emitted. */
@Workflow('idle')
@Injectable()
class IdleWorkflow {
  async execute() {}
}

@Workflow('sleeper')
@Injectable()
class SleeperWorkflow {
  async execute(ctx: WorkflowContext<{ wakeAt: number }>) {
    await ctx.step.run('before', () => 1);
    await ctx.step.sleepUntil('nap', new Date(ctx.input.wakeAt));
  }
}

/** '<workflow>|<status>' -> runs, from the shard's status indexes. */
async function counts(prefix: string): Promise<Record<string, number>> {
  const pairs = ['backlog', 'sleeper'].flatMap((wf) => ['scheduled', 'queued', 'running', 'waiting', 'succeeded'].map((st) => [wf, st]));
  const sizes = await Promise.all(pairs.map(([wf, st]) => statusIndexSize(probe, `{${prefix}:default:0}`, wf, st)));
  return Object.fromEntries(pairs.map(([wf, st], i) => [`${wf}|${st}`, sizes[i]]));
}

async function commandCalls(command: string): Promise<number> {
  const info = await probe.info('commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

async function totalCommands(): Promise<number> {
  const info = await probe.info('commandstats');
  let calls = 0;
  for (const match of info.matchAll(/calls=(\d+)/g)) calls += Number(match[1]);
  return calls;
}

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('time at scale (e2e, real Redis)', () => {
  beforeAll(async () => {
    redis = await redisUrlForTests();
    probe = redisFor(redis.url);
  });

  afterAll(async () => {
    probe?.disconnect();
    await redis?.stop();
  });

  it('promotes a backlog of 100,000 due runs in bounded calls of a few ms each', async () => {
    const prefix = uniquePrefix('backlog');
    const api = await startApp({ connection: redis.url, prefix, worker: false }, []);
    const wr = api.moduleRef.get(WorkflowRedis);
    await wr.ready();
    const shard = { queue: 'default', partition: 0 };
    const total = 100_000;
    const created = Date.now();
    // Created through the real wf1_emit, 5,000 calls per pipeline (the arguments of WorkflowStore.emit).
    // The runs' workflow is one no worker of this test has, so they are promoted and then left alone.
    const root = wr.keys.shardRoot(shard);
    for (let start = 0; start < total; start += 5_000) {
      const pipeline = (wr.store.client as Redis).pipeline();
      for (let i = 0; i < 5_000; i += 1) {
        pipeline.fcall('wf1_emit', 1, root, wr.keys.newRunId(shard), 'backlog', 'default', 'null', 0, '', 1_000, '', '', '', '');
      }
      const replies = (await pipeline.exec())!;
      expect(replies.every(([error]) => !error)).toBe(true);
    }
    const createMs = Date.now() - created;
    expect((await counts(prefix))['backlog|scheduled']).toBe(total);
    await sleep(1_100); // every timer is due now

    // Redis logs the commands a function runs too, so the slow log holds only calls over 1 ms (every
    // inner command is far below that); the number of wf1_tick calls comes from INFO commandstats:
    // each call runs ZRANGEBYSCORE once per housekeeping part (5: timers, leases, deadlines, expiry, outbox).
    await probe.config('SET', 'slowlog-log-slower-than', '1000');
    await probe.config('SET', 'slowlog-max-len', '100000');
    await probe.slowlog('RESET');
    const rangesBefore = await commandCalls('zrangebyscore');
    const started = Date.now();
    const worker = await startApp({ connection: redis.url, prefix, worker: {} }, [IdleWorkflow]);
    try {
      await waitFor(async () => (await counts(prefix))['backlog|queued'] === total, 60_000, 50);
      const promoteMs = Date.now() - started;
      const tickCalls = ((await commandCalls('zrangebyscore')) - rangesBefore) / 5;
      const log = (await probe.slowlog('GET', 100_000)) as [number, number, number, string[]][];
      const slowTicks = log
        .filter((entry) => String(entry[3][0]).toLowerCase() === 'fcall' && entry[3][1] === 'wf1_tick')
        .map((entry) => entry[2] / 1000)
        .sort((a, b) => a - b);
      const over = (ms: number) => slowTicks.filter((d) => d > ms).length;
      const slowest = log.reduce((max, entry) => Math.max(max, entry[2] / 1000), 0);
      process.stdout.write(
        `100k backlog: created in ${createMs} ms, promoted by the worker in ${promoteMs} ms with ${tickCalls} wf1_tick calls; ` +
          `calls over 1 ms: ${over(1)}, over 2 ms: ${over(2)}, over 5 ms: ${over(5)}, over 10 ms: ${over(10)}; ` +
          `slowest call ${(slowTicks[slowTicks.length - 1] ?? 0).toFixed(2)} ms (any command: ${slowest.toFixed(2)} ms)\n`,
      );
      // Bounded: at most 50 timers a call (the worker's TICK_BATCH), hence at least 2,000 calls.
      expect(tickCalls).toBeGreaterThanOrEqual(total / 50);
      // Redis time per call: under 1 ms on an idle machine. The bounds leave room for a loaded CI box, where
      // the process running Redis is preempted in the middle of a call.
      expect(over(5)).toBeLessThan(tickCalls * 0.05);
      expect(slowTicks[slowTicks.length - 1] ?? 0).toBeLessThan(100);
      expect(await probe.zcard(`{${prefix}:default:0}:timers`)).toBe(0);
      expect(await probe.zcard(`{${prefix}:default:0}:q:backlog`)).toBe(total);
    } finally {
      await probe.config('SET', 'slowlog-log-slower-than', '10000');
      await probe.slowlog('RESET');
      await worker.close();
      await api.close();
    }
  }, 120_000);

  it('10,000 sleeping runs cost the worker no memory and Redis no commands per run', async () => {
    const prefix = uniquePrefix('sleepers');
    // executionCache off: parked runs then cost the worker nothing; with it (the default) the worker keeps
    // up to maxRuns of them warm, bounded (test/e2e/sticky-executions.e2e.spec.ts)
    const app = await startApp({ connection: redis.url, prefix, executionCache: false, worker: { concurrency: 200 } }, [SleeperWorkflow]);
    try {
      const wakeAt = Date.now() + 120_000;
      const emitMany = async (n: number) => {
        for (let start = 0; start < n; start += 1_000) {
          await Promise.all(Array.from({ length: Math.min(1_000, n - start) }, () => app.client.emit(SleeperWorkflow, { wakeAt })));
        }
      };
      // Warm-up, so that code paths are compiled and pools sized before the baseline.
      await emitMany(500);
      await waitFor(async () => (await counts(prefix))['sleeper|waiting'] === 500, 30_000, 50);
      await sleep(200);
      const heapBefore = heapAfterGc();
      const rssBefore = process.memoryUsage().rss;

      const parkStarted = Date.now();
      await emitMany(10_000);
      await waitFor(async () => (await counts(prefix))['sleeper|waiting'] === 10_500, 60_000, 50);
      const parkMs = Date.now() - parkStarted;
      await sleep(500);
      const heapAfter = heapAfterGc();
      const rssAfter = process.memoryUsage().rss;

      const before = await totalCommands();
      const windowMs = 3_000;
      await sleep(windowMs);
      const commands = (await totalCommands()) - before - 1; // minus the INFO call that ends the window
      const perSecond = (commands * 1000) / windowMs;
      const heapDelta = (heapAfter - heapBefore) / 1024 / 1024;
      const rssDelta = (rssAfter - rssBefore) / 1024 / 1024;
      process.stdout.write(
        `10k sleepers: parked in ${parkMs} ms; worker heapUsed ${(heapBefore / 1048576).toFixed(1)} -> ${(heapAfter / 1048576).toFixed(1)} MB ` +
          `(delta ${heapDelta.toFixed(2)} MB), rss delta ${rssDelta.toFixed(1)} MB; Redis ${perSecond.toFixed(1)} commands/s while they sleep\n`,
      );
      expect(await probe.zcard(`{${prefix}:default:0}:timers`)).toBe(10_500);
      expect(heapDelta).toBeLessThan(5);
      // Counted with the commands functions run inside (INFO commandstats counts those): about a dozen per
      // housekeeping call, one call a second per shard (the run shard and the event shard), none per run.
      expect(perSecond).toBeLessThan(60);
    } finally {
      await app.close();
    }
  }, 120_000);
});
