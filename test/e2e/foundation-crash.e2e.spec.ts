/**
 * Crash recovery with real processes: a worker killed with SIGKILL in the middle of step 2 of 3 loses
 * its run to another worker once the lease expires; committed step 1 is not executed again, and the
 * run succeeds exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';
import { compileFixtures, startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const LEASE_MS = 1000;

describe('crash recovery (real worker processes, SIGKILL)', () => {
  let redis: TestRedis;
  let direct: Redis;
  let api: TestApp;
  const workers: WorkerProcess[] = [];
  const prefix = uniquePrefix('crash');

  beforeAll(async () => {
    compileFixtures();
    redis = await redisUrlForTests();
    direct = redisFor(redis.url);
    api = await startApp({ connection: redis.url, prefix, worker: false });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await api?.close();
    direct?.disconnect();
    await redis?.stop();
  });

  it('a worker killed in step 2 of 3: another worker takes over after the lease, step 1 is not run again, the run succeeds once', async () => {
    const env = { REDIS_URL: redis.url, PREFIX: prefix, LEASE_MS: String(LEASE_MS) };
    const doomed = await startWorkerProcess('foundation-worker', { ...env, WORKER_NAME: 'doomed', STALL_IN_STEP2: 'hang' });
    workers.push(doomed);
    const handle = await api.client.emit('three-steps', { id: 'r1', stall: true });
    await waitFor(async () => (await direct.hget(`${prefix}:obs`, 'r1:doomed:enteredStep2')) !== null, 15_000);
    doomed.signal('SIGKILL');
    expect(await doomed.exited).toBe('SIGKILL');
    const killedAt = Date.now();

    const rescuer = await startWorkerProcess('foundation-worker', { ...env, WORKER_NAME: 'rescuer' });
    workers.push(rescuer);
    const output = await handle.result({ timeoutMs: 20_000 });
    const tookMs = Date.now() - killedAt;

    expect(output).toEqual({ one: 'doomed', two: 'rescuer', three: 'rescuer', completedBy: 'rescuer' });
    const effects = await direct.hgetall(`${prefix}:effects`);
    expect(effects).toEqual({ 'r1:one': '1', 'r1:two': '2', 'r1:three': '1' });

    const history = await api.client.getRunHistory(handle.id);
    const types = history.map((e) => e.type);
    // step one committed by the doomed worker; two and three by the rescuer
    expect(types).toEqual(['created', 'claimed', 'step-succeeded', 'lease-expired', 'claimed', 'step-succeeded', 'step-succeeded', 'succeeded']);
    expect(history.map((e) => e.step).filter(Boolean)).toEqual(['one', 'two', 'three']);
    expect(history[1].workerId).toContain(`:${doomed.pid}:`);
    expect(history[4].workerId).toContain(`:${rescuer.pid}:`);
    const run = await api.client.getRun(handle.id);
    expect(run).toMatchObject({ status: 'succeeded', attempt: 2 });
    // The second claim carried a new fencing token: counter 2 plus a fresh random claim id.
    const hash = await direct.hgetall(`{${prefix}:default:0}:r:${handle.id}`);
    expect(hash.fen).toBe('2');
    expect(hash.tok).toMatch(/^2:[0-9a-f]{12}$/);
    process.stdout.write(`crash recovery: run finished ${tookMs} ms after SIGKILL (lease ${LEASE_MS} ms, includes worker boot)\n`);
  });
});
