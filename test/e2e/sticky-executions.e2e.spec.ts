/**
 * Sticky executions (the executionCache option) with real worker processes and real servers: the warm
 * path is taken (a run's handler body is entered once across its wakes), the cache is bounded (evicted
 * runs replay cold, correctly), and a warm worker killed with SIGKILL, a Redis restarted mid-run, and wakes
 * that land on another worker (the warm one stopped with SIGSTOP, then its stale execution met again) each
 * finish the run once with every committed step executed once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { compileFixtures, startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

let counters: RedisServerHandle;
let effects: Redis;

beforeAll(async () => {
  compileFixtures();
  counters = await startRedis();
  effects = redisFor(counters.url);
  cleanup.push(() => counters.stop(), async () => effects.disconnect());
}, 120_000);

interface Setup {
  redis: RedisServerHandle;
  prefix: string;
  api: TestApp;
  env: Record<string, string>;
  worker(name: string, extra?: Record<string, string>): Promise<WorkerProcess>;
}

async function setup(name: string, redisOptions: Parameters<typeof startRedis>[0] = {}): Promise<Setup> {
  const redis = await startRedis(redisOptions);
  const prefix = uniquePrefix(name);
  cleanup.push(() => redis.stop());
  const api = await startApp({ connection: redis.url, prefix, worker: false });
  cleanup.push(() => api.close());
  const env = { REDIS_URL: redis.url, COUNTER_URL: counters.url, PREFIX: prefix, LEASE_MS: '1000', WINDOW_MS: '300' };
  return {
    redis,
    prefix,
    api,
    env,
    worker: async (workerName, extra = {}) => {
      const w = await startWorkerProcess('sticky-worker', { ...env, WORKER_NAME: workerName, ...extra });
      cleanup.push(() => w.stop(1000));
      return w;
    },
  };
}

const sum = (steps: number) => (steps * (steps - 1)) / 2;

/** How many times each step of the run executed, and the entries into its handler body per worker. */
async function counts(prefix: string, runId: string, steps: number) {
  const executed = await effects.hgetall(`${prefix}:effects`);
  const perStep = [...Array(steps).keys()].map((i) => Number(executed[`${runId}:${i}`] ?? 0));
  const entered = Object.fromEntries(
    Object.entries(await effects.hgetall(`${prefix}:entered`))
      .filter(([key]) => key.startsWith(`${runId}:`))
      .map(([key, value]) => [key.slice(runId.length + 1), Number(value)]),
  );
  return { perStep, entered, repeated: perStep.filter((n) => n > 1).length, missing: perStep.filter((n) => n === 0).length };
}

async function stepsDone(prefix: string, runId: string): Promise<number> {
  const executed = await effects.hgetall(`${prefix}:effects`);
  return Object.keys(executed).filter((key) => key.startsWith(`${runId}:`)).length;
}

describe('sticky executions (real processes, real servers)', () => {
  it('the warm path is taken: 20 wakes enter the handler body once; with the cache off every wake replays', async () => {
    const warm = await setup('sticky-warm');
    await warm.worker('w');
    const handle = await warm.api.client.emit('loop', { steps: 100, every: 5, sleepMs: 1 });
    expect(await handle.result({ timeoutMs: 20_000 })).toBe(sum(100));
    const c = await counts(warm.prefix, handle.id, 100);
    expect(c.entered).toEqual({ w: 1 });
    expect(c.perStep.every((n) => n === 1)).toBe(true);
    const worker = (await warm.api.client.getStats()).workers.list[0];
    expect(worker.executionCache).toMatchObject({ maxRuns: 1000 });

    const cold = await setup('sticky-cold');
    await cold.worker('w', { CACHE: 'off' });
    const replayed = await cold.api.client.emit('loop', { steps: 100, every: 5, sleepMs: 1 });
    expect(await replayed.result({ timeoutMs: 20_000 })).toBe(sum(100));
    const r = await counts(cold.prefix, replayed.id, 100);
    expect(r.entered).toEqual({ w: 21 });
    expect(r.perStep.every((n) => n === 1)).toBe(true);
    expect((await cold.api.client.getStats()).workers.list[0].executionCache).toBeUndefined();
  }, 60_000);

  it('a cache of one run: interleaved runs evict each other, replay cold, and still run every step once', async () => {
    const s = await setup('sticky-evict');
    await s.worker('w', { MAX_RUNS: '1' });
    const handles = await Promise.all([0, 1, 2].map(() => s.api.client.emit('loop', { steps: 40, every: 2, sleepMs: 5 })));
    for (const handle of handles) expect(await handle.result({ timeoutMs: 20_000 })).toBe(sum(40));
    let entries = 0;
    for (const handle of handles) {
      const c = await counts(s.prefix, handle.id, 40);
      expect(c.perStep.every((n) => n === 1)).toBe(true);
      entries += c.entered.w;
    }
    // three runs, 20 wakes each, one warm execution at a time: most wakes replay
    expect(entries).toBeGreaterThan(10);
  }, 60_000);

  it('the warm worker SIGKILLed mid-run: the other worker finishes the run once, committed steps not run again', async () => {
    const s = await setup('sticky-kill');
    const a = await s.worker('a');
    const b = await s.worker('b');
    const handle = await s.api.client.emit('loop', { steps: 60, every: 3, sleepMs: 100, stepMs: 5 });
    await waitFor(async () => (await stepsDone(s.prefix, handle.id)) >= 15, 20_000);
    const owner = Object.keys((await counts(s.prefix, handle.id, 60)).entered)[0];
    const [doomed, survivor] = owner === 'a' ? [a, 'b'] : [b, 'a'];
    doomed.signal('SIGKILL');
    expect(await doomed.exited).toBe('SIGKILL');
    expect(await handle.result({ timeoutMs: 30_000 })).toBe(sum(60));
    const c = await counts(s.prefix, handle.id, 60);
    expect(c.missing).toBe(0);
    // a step in flight at the kill may run again (as without the cache); a committed one never does
    expect(c.repeated).toBeLessThanOrEqual(1);
    expect(c.entered[owner]).toBe(1);
    expect(c.entered[survivor]).toBeGreaterThanOrEqual(1);
    expect(await effects.hget(`${s.prefix}:by`, `${handle.id}:59`)).toBe(survivor);
    expect((await s.api.client.getRun(handle.id))?.status).toBe('succeeded');
  }, 60_000);

  it('Redis SIGKILLed and restarted mid-run (appendfsync always): the run finishes once, committed steps not run again', async () => {
    const s = await setup('sticky-restart', { appendonly: true, appendfsync: 'always' });
    await s.worker('w', { LEASE_MS: '2000' });
    const handle = await s.api.client.emit('loop', { steps: 60, every: 3, sleepMs: 50, stepMs: 5 });
    await waitFor(async () => (await stepsDone(s.prefix, handle.id)) >= 15, 20_000);
    await s.redis.kill('SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await s.redis.restart();
    expect(await handle.result({ timeoutMs: 30_000 })).toBe(sum(60));
    const c = await counts(s.prefix, handle.id, 60);
    expect(c.missing).toBe(0);
    expect(c.repeated).toBeLessThanOrEqual(1);
    expect((await s.api.client.getRun(handle.id))?.status).toBe('succeeded');
  }, 60_000);

  it('wakes that land on another worker (the warm one stopped), then back on a worker whose warm execution is stale: once, in order', async () => {
    const s = await setup('sticky-move');
    const workers = { a: await s.worker('a'), b: await s.worker('b') };
    const handle = await s.api.client.emit('loop', { steps: 60, every: 2, sleepMs: 150 });
    await waitFor(async () => (await stepsDone(s.prefix, handle.id)) >= 4, 20_000);
    // the worker that claimed the run keeps it warm: its wakes go to it while it answers
    const before = await stepsDone(s.prefix, handle.id);
    await waitFor(async () => (await stepsDone(s.prefix, handle.id)) >= before + 4, 20_000);
    const entered = Object.keys((await counts(s.prefix, handle.id, 60)).entered);
    expect(entered).toHaveLength(1);
    const first = entered[0] as 'a' | 'b';
    const other = first === 'a' ? 'b' : 'a';

    workers[first].signal('SIGSTOP');
    await waitFor(async () => (await effects.hvals(`${s.prefix}:by`)).includes(other), 20_000);
    const moved = await stepsDone(s.prefix, handle.id);
    await waitFor(async () => (await stepsDone(s.prefix, handle.id)) >= moved + 4, 20_000);
    workers[first].signal('SIGCONT');
    workers[other].signal('SIGSTOP');
    // the first worker still holds its execution of the run, now stale: it must replay instead
    const back = await stepsDone(s.prefix, handle.id);
    await waitFor(async () => (await stepsDone(s.prefix, handle.id)) >= back + 4, 20_000);
    workers[other].signal('SIGCONT');
    expect(await handle.result({ timeoutMs: 30_000 })).toBe(sum(60));
    const c = await counts(s.prefix, handle.id, 60);
    expect(c.missing).toBe(0);
    // a stop that catches a step in flight may repeat that step once per move (as without the cache)
    expect(c.repeated).toBeLessThanOrEqual(2);
    expect(c.entered[first]).toBeGreaterThanOrEqual(2);
    expect(c.entered[other]).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
