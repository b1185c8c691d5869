import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { OnFailure, TimeoutError, Workflow, type OnFailureContext, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { redisUrlForTests, sleep, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, runsInShard, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

let redis: TestRedis;
let probe: Redis;
const k = uniquePrefix('limits');

// Atomically counts the executing steps and keeps the highest count seen.
const ENTER = `local c = redis.call('INCR', KEYS[1])
if c > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], c) end
return c`;

@Workflow('one-at-a-time', { maxConcurrency: 1 })
@Injectable()
class OneAtATimeWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    await ctx.step.run('exclusive', async () => {
      await probe.eval(ENTER, 2, `${k}:current`, `${k}:peak`);
      await sleep(15);
      await probe.decr(`${k}:current`);
    });
    await probe.rpush(`${k}:done`, ctx.input.i);
    return ctx.input.i;
  }
}

@Workflow('ordered')
@Injectable()
class OrderedWorkflow {
  async execute(ctx: WorkflowContext<{ label: string }>) {
    await probe.rpush(`${k}:order`, ctx.input.label);
  }
}

@Workflow('keyed')
@Injectable()
class KeyedWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n;
  }
}

@Workflow('slow', { timeoutMs: 400, maxAttempts: 5 })
@Injectable()
class SlowWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    await probe.hincrby(`${k}:slow`, `attempt:${ctx.input.id}`, 1);
    // Stuck in a step (a call that never answers) until the run's signal is aborted.
    await ctx.step.run('hang', (s) => new Promise((_, reject) => s.signal.addEventListener('abort', () => reject(s.signal.reason))));
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<{ id: string }>) {
    await probe.hincrby(`${k}:slow`, `onFailure:${ctx.input.id}`, 1);
    await probe.hset(`${k}:slow`, `error:${ctx.input.id}`, ctx.error.name);
  }
}

@Workflow('quick')
@Injectable()
class QuickWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.run.attempt;
  }
}

const ALL = [OneAtATimeWorkflow, OrderedWorkflow, KeyedWorkflow, SlowWorkflow, QuickWorkflow];

/** Claims a run as a worker that then dies: it never renews its lease nor finishes the run. */
async function claimAsDeadWorker(app: TestApp, workflow: string, leaseMs: number, timeoutMs = 0) {
  const store = app.moduleRef.get(WorkflowRedis).store;
  const [run] = await store.claim({ queue: 'default', partition: 0 }, 'dead-worker', 1, leaseMs, 'deadbeef', [
    { name: workflow, maxConcurrency: 0, maxAttempts: 3, timeoutMs },
  ], 60_000);
  return run;
}

describe('concurrency limits, priorities, idempotency keys and deadlines (e2e, real Redis)', () => {
  beforeAll(async () => {
    redis = await redisUrlForTests();
    probe = redisFor(redis.url);
  });

  afterAll(async () => {
    probe?.disconnect();
    await redis?.stop();
  });

  it('maxConcurrency: 1 holds across 2 workers x concurrency 10 with 20 runs queued', async () => {
    const prefix = uniquePrefix('maxc');
    const api = await startApp({ connection: redis.url, prefix, worker: false }, ALL);
    const handles = [];
    for (let i = 0; i < 20; i += 1) handles.push(await api.client.emit(OneAtATimeWorkflow, { i }));
    const workers = await Promise.all([0, 1].map(() => startApp({ connection: redis.url, prefix, worker: { concurrency: 10, reaperIntervalMs: 20 } }, ALL)));
    try {
      const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
      expect(outputs).toEqual([...Array(20).keys()]);
      expect(await probe.get(`${k}:peak`)).toBe('1');
      // The waiting runs start in the order they were emitted.
      expect((await probe.lrange(`${k}:done`, 0, -1)).map(Number)).toEqual([...Array(20).keys()]);

      // Runs emitted while others execute: every emit wakes both workers, whose claims race.
      const more = [];
      for (let i = 20; i < 40; i += 1) {
        more.push(await api.client.emit(OneAtATimeWorkflow, { i }));
        await sleep(7);
      }
      await Promise.all(more.map((h) => h.result({ timeoutMs: 20_000 })));
      expect(await probe.get(`${k}:peak`)).toBe('1');
      const claimedBy = new Set<string>();
      for (const h of [...handles, ...more]) {
        for (const e of await api.client.getRunHistory(h.id)) if (e.type === 'claimed') claimedBy.add(e.workerId!);
      }
      // Which worker wins each race is up to timing; usually both take part.
      process.stdout.write(`maxConcurrency 1: runs claimed by ${claimedBy.size} worker(s), peak ${await probe.get(`${k}:peak`)}\n`);
    } finally {
      await Promise.all(workers.map((w) => w.close()));
      await api.close();
    }
  }, 30_000);

  it('refuses an emit of a maxConcurrency workflow to another queue', async () => {
    const api = await startApp({ connection: redis.url, prefix: uniquePrefix('maxcq'), worker: false }, ALL);
    try {
      await expect(api.client.emit(OneAtATimeWorkflow, { i: 0 }, { queue: 'elsewhere' })).rejects.toThrow(
        "Workflow 'one-at-a-time' has maxConcurrency, so all its runs live in queue 'default'; emit it without the queue option.",
      );
    } finally {
      await api.close();
    }
  });

  it('claims higher-priority runs first', async () => {
    const prefix = uniquePrefix('prio');
    const api = await startApp({ connection: redis.url, prefix, worker: false }, ALL);
    for (const [label, priority] of [['a0', 0], ['b5', 5], ['c-3', -3], ['d10', 10], ['e0', 0]] as const) {
      await api.client.emit(OrderedWorkflow, { label }, { priority });
    }
    const worker = await startApp({ connection: redis.url, prefix, worker: { concurrency: 1 } }, ALL);
    try {
      await waitFor(async () => (await probe.llen(`${k}:order`)) === 5, 10_000);
      expect(await probe.lrange(`${k}:order`, 0, -1)).toEqual(['d10', 'b5', 'a0', 'e0', 'c-3']);
    } finally {
      await worker.close();
      await api.close();
    }
  });

  it('an idempotency key starts one run, also when two processes race on a partitioned queue', async () => {
    const prefix = uniquePrefix('ikey');
    const queues = { default: { partitions: 4 } };
    const a = await startApp({ connection: redis.url, prefix, queues, worker: false }, ALL);
    const b = await startApp({ connection: redis.url, prefix, queues, worker: false }, ALL);
    try {
      for (const key of ['order-1', 'order-2', 'order-3']) {
        const handles = await Promise.all(
          [...Array(10).keys()].map((n) => (n % 2 === 0 ? a : b).client.emit(KeyedWorkflow, { n }, { idempotencyKey: key })),
        );
        expect(new Set(handles.map((h) => h.id)).size).toBe(1);
        const found = await b.client.findRun('keyed', key);
        expect(found).toMatchObject({ id: handles[0].id, idempotencyKey: key, workflow: 'keyed' });
      }
      let runs = 0;
      for (let p = 0; p < 4; p += 1) runs += await runsInShard(probe, `{${prefix}:default:${p}}`, 'keyed');
      expect(runs).toBe(3);
      // Keys are per workflow.
      const other = await a.client.emit(OrderedWorkflow, { label: 'x' }, { idempotencyKey: 'order-1' });
      expect(other.id).not.toBe((await a.client.findRun('keyed', 'order-1'))!.id);
      expect(await a.client.findRun('keyed', 'never-used')).toBeNull();

      // The second emit starts nothing: the first run executes once.
      const worker = await startApp({ connection: redis.url, prefix, queues }, ALL);
      const first = await a.client.emit(KeyedWorkflow, { n: 1 }, { idempotencyKey: 'once' });
      expect(await first.result({ timeoutMs: 5_000 })).toBe(1);
      const again = await b.client.emit(KeyedWorkflow, { n: 2 }, { idempotencyKey: 'once' });
      expect(again.id).toBe(first.id);
      expect(await again.result({ timeoutMs: 5_000 })).toBe(1);
      await worker.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('timeoutMs fails a run with TimeoutError and runs @OnFailure', async () => {
    const prefix = uniquePrefix('timeout');
    const app = await startApp({ connection: redis.url, prefix }, ALL);
    try {
      const handle = await app.client.emit(SlowWorkflow, { id: 'live' });
      const error = await handle.result({ timeoutMs: 5_000 }).catch((e) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect((await handle.getState()).status).toBe('failed');
      expect(await probe.hget(`${k}:slow`, 'onFailure:live')).toBe('1');
      expect(await probe.hget(`${k}:slow`, 'error:live')).toBe('TimeoutError');
    } finally {
      await app.close();
    }
  });

  it('timeoutMs fails a run whose worker died, and another worker runs its @OnFailure', async () => {
    const prefix = uniquePrefix('timeoutdead');
    const api = await startApp({ connection: redis.url, prefix, worker: false }, ALL);
    const handle = await api.client.emit(SlowWorkflow, { id: 'dead' });
    const claimed = await claimAsDeadWorker(api, 'slow', 60_000, 400);
    expect(claimed.id).toBe(handle.id);
    const worker = await startApp({ connection: redis.url, prefix }, ALL);
    try {
      // a generous wait: the deadline's timing is checked below on the server's clock (a full npm test on 2
      // busy cores once took over 5 s to start the second worker and run the @OnFailure)
      const error = await handle.result({ timeoutMs: 20_000 }).catch((e) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect(await probe.hget(`${k}:slow`, 'onFailure:dead')).toBe('1');
      const history = await api.client.getRunHistory(handle.id);
      const timedOut = history.find((e) => e.type === 'timed-out')!;
      expect(Date.parse(timedOut.at) - claimed.serverNow).toBeGreaterThanOrEqual(400);
      expect(Date.parse(timedOut.at) - claimed.serverNow).toBeLessThan(400 + 300);
    } finally {
      await worker.close();
      await api.close();
    }
  });

  it('takes back an expired lease within about reaperIntervalMs (default 100 ms), with the live worker already idle', async () => {
    const prefix = uniquePrefix('lease');
    // The fleet's config: leases of 300 ms. The live worker is up and idle before the other worker claims.
    const live = await startApp({ connection: redis.url, prefix, worker: { leaseMs: 300 } }, ALL);
    try {
      await sleep(300);
      // A workflow the live worker does not have, so that only the dead worker ever claims it.
      const store = live.moduleRef.get(WorkflowRedis).store;
      const shard = { queue: 'default', partition: 0 };
      const ids: string[] = [];
      for (let i = 0; i < 3; i += 1) {
        const runId = live.moduleRef.get(WorkflowRedis).keys.newRunId(shard);
        await store.emit(shard, { runId, workflow: 'orphan', queue: 'default', input: 'null', priority: 0 });
        const [claimed] = await store.claim(shard, 'dead-worker', 1, 300, 'deadbeef', [{ name: 'orphan', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 60_000);
        expect(claimed.id).toBe(runId);
        ids.push(runId);
        await sleep(137);
      }
      const lateness: number[] = [];
      for (const id of ids) {
        await waitFor(async () => (await live.client.getRunHistory(id)).some((e) => e.type === 'lease-expired'), 3_000);
        const history = await live.client.getRunHistory(id);
        const claimedAt = Date.parse(history.find((e) => e.type === 'claimed')!.at);
        lateness.push(Date.parse(history.find((e) => e.type === 'lease-expired')!.at) - (claimedAt + 300));
      }
      process.stdout.write(`expired leases taken back ${lateness.join(', ')} ms after their deadline\n`);
      for (const ms of lateness) {
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThan(100);
      }
    } finally {
      await live.close();
    }
  });
});
