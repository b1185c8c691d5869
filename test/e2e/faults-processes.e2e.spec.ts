import { afterAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

async function servers(appendonly: boolean): Promise<{ redis: RedisServerHandle; counters: RedisServerHandle; effects: Redis }> {
  const redis = await startRedis(appendonly ? { appendonly: true, appendfsync: 'always' } : {});
  const counters = await startRedis();
  const effects = redisFor(counters.url);
  cleanup.push(() => redis.stop(), () => counters.stop(), async () => effects.disconnect());
  return { redis, counters, effects };
}

describe('faults with real processes and real servers', () => {
  it('a child\'s outcome reaches its parent on another shard even when the worker dies between the two calls', async () => {
    const { redis, counters, effects } = await servers(false);
    const prefix = uniquePrefix('handoff');
    const env = { REDIS_URL: redis.url, COUNTER_URL: counters.url, PREFIX: prefix, LEASE_MS: '1000' };
    const dying = await startWorkerProcess('chaos-worker', { ...env, KILL_AT_HANDOFF: '1', WORKER_NAME: 'dying' });
    cleanup.push(() => dying.stop(1000));
    const api = await startApp({ connection: redis.url, prefix, worker: false });
    cleanup.push(() => api.close());
    const parent = await api.client.emit('handoff-parent', { n: 21 });
    expect(await dying.exited).toBe('SIGKILL');
    expect(await effects.hget(`${prefix}:effects`, 'child:21')).toBe('1');
    const child = (await api.client.getRunSteps(parent.id))[0].childRunId!;
    expect((await api.client.getRun(child))?.status).toBe('succeeded');
    expect((await api.client.getRun(parent.id))?.status).toBe('waiting');

    const healthy = await startWorkerProcess('chaos-worker', { ...env, WORKER_NAME: 'healthy' });
    cleanup.push(() => healthy.stop(1000));
    expect(await parent.result({ timeoutMs: 15_000 })).toBe(42);
    expect(await effects.hget(`${prefix}:effects`, 'child:21')).toBe('1');
    const woken = (await api.client.getRunHistory(parent.id)).filter((e) => e.type === 'woken');
    expect(woken).toHaveLength(1);
  }, 40_000);

  it('Redis with appendonly/appendfsync always, SIGKILLed under load and restarted: every acknowledged emit completes exactly once', async () => {
    const { redis, effects } = await servers(true);
    const prefix = uniquePrefix('aof');
    const workers = await Promise.all(
      [1, 2].map((n) => startWorkerProcess('chaos-worker', { REDIS_URL: redis.url, COUNTER_URL: effectsUrl(effects), PREFIX: prefix, WORKER_NAME: `w${n}`, LEASE_MS: '2000' })),
    );
    cleanup.push(...workers.map((w) => () => w.stop(2000)));
    const api = await startApp({ connection: redis.url, prefix, worker: false });
    cleanup.push(() => api.close());

    const acknowledged: string[] = [];
    let refused = 0;
    let killed = false;
    let outage: Promise<void> | undefined;
    const emitting = (async () => {
      for (let i = 0; i < 600; i += 1) {
        try {
          const handle = await api.client.emit('chaos', { i }, { idempotencyKey: `k${i}` });
          acknowledged.push(handle.id);
          await new Promise((resolve) => setTimeout(resolve, 3));
        } catch {
          refused += 1;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        if (i === 250 && !killed) {
          killed = true;
          // Emits go on during the outage: those refused were never acknowledged.
          outage = (async () => {
            await redis.kill('SIGKILL');
            await new Promise((resolve) => setTimeout(resolve, 300));
            await redis.restart();
          })();
        }
      }
    })();
    await emitting;
    await outage;
    expect(killed).toBe(true);
    expect(acknowledged.length + refused).toBeGreaterThanOrEqual(600);
    await waitFor(async () => {
      const runs = await Promise.all(acknowledged.map((id) => api.client.getRun(id).catch(() => null)));
      return runs.every((r) => r?.status === 'succeeded');
    }, 60_000, 200);
    for (const id of acknowledged.slice(0, 600)) {
      const succeeded = (await api.client.getRunHistory(id)).filter((e) => e.type === 'succeeded');
      expect(succeeded).toHaveLength(1);
    }
    process.stdout.write(`aof test: ${acknowledged.length} acknowledged emits, ${refused} refused while Redis was down, all succeeded once\n`);
  }, 120_000);

  it('chaos: 2,000 three-step runs, 3 worker processes, one SIGKILLed and restarted every 2 s, one Redis restart: all succeed exactly once', async () => {
    const { redis, counters, effects } = await servers(true);
    const prefix = uniquePrefix('chaos');
    const concurrency = 10;
    // Steps of 40-70 ms keep the runs going for the whole chaos window (about 15 s).
    const env = { REDIS_URL: redis.url, COUNTER_URL: counters.url, PREFIX: prefix, LEASE_MS: '1000', CONCURRENCY: String(concurrency), STEP_MS: '40' };
    const workers: WorkerProcess[] = [];
    for (let n = 0; n < 3; n += 1) workers.push(await startWorkerProcess('chaos-worker', { ...env, WORKER_NAME: `w${n}` }));
    cleanup.push(() => Promise.all(workers.map((w) => w.stop(1000))));
    const api = await startApp({ connection: redis.url, prefix, worker: false });
    cleanup.push(() => api.close());

    const total = 2000;
    const ids = new Map<number, string>();
    const emitAll = async () => {
      for (let i = 0; i < total; i += 1) {
        while (!ids.has(i)) {
          try {
            ids.set(i, (await api.client.emit('chaos', { i }, { idempotencyKey: `run-${i}` })).id);
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
      }
    };
    const emitting = emitAll();
    let kills = 0;
    let redisRestarted = false;
    const started = Date.now();
    const done = async () => {
      if (ids.size < total) return false;
      const stats = await api.client.getStats().catch(() => undefined);
      return stats?.workflows.find((w) => w.name === 'chaos')?.counts.succeeded === total;
    };
    while (!(await done())) {
      if (Date.now() - started > 150_000) throw new Error(`chaos: not done after 150 s (${ids.size} emitted)`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      if (await done()) break;
      const victim = Math.floor(Math.random() * workers.length);
      workers[victim].signal('SIGKILL');
      await workers[victim].exited;
      kills += 1;
      if (!redisRestarted && Date.now() - started > 3000) {
        redisRestarted = true;
        await redis.kill('SIGKILL');
        await redis.restart();
      }
      workers[victim] = await startWorkerProcess('chaos-worker', { ...env, WORKER_NAME: `w${victim}-${kills}` });
    }
    await emitting;
    expect(redisRestarted).toBe(true);
    const counts = await effects.hgetall(`${prefix}:effects`);
    let extra = 0;
    for (let i = 0; i < total; i += 1) {
      for (const step of ['one', 'two', 'three']) {
        const n = Number(counts[`${i}:${step}`] ?? 0);
        expect(n).toBeGreaterThanOrEqual(1);
        extra += n - 1;
      }
    }
    let finalStates = 0;
    for (const id of ids.values()) {
      const history = await api.client.getRunHistory(id);
      finalStates += history.filter((e) => e.type === 'succeeded' || e.type === 'failed' || e.type === 'canceled').length;
    }
    expect(finalStates).toBe(total);
    process.stdout.write(`chaos: ${total} runs, ${kills} worker kills, 1 Redis restart, ${extra} step executions repeated (bound ${(kills + workers.length) * concurrency}: kills and the Redis restart times the concurrency)\n`);
    // A kill repeats at most the steps in flight on that worker; the Redis restart at most those of all 3 workers.
    expect(extra).toBeLessThanOrEqual((kills + workers.length) * concurrency);
  }, 200_000);
});

function effectsUrl(effects: Redis): string {
  return `redis://${effects.options.host}:${effects.options.port}`;
}
