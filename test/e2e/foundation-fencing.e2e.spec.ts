/**
 * Fencing with real processes: a worker that stalls past its lease (paused with SIGSTOP, or its event
 * loop blocked) while another worker completes the run cannot commit anything afterwards. Its signals
 * are aborted, its next step throws LeaseLostError, its slot is freed, and the new owner's results stand.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';
import { compileFixtures, startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const LEASE_MS = 1000;

function processState(pid: number): string {
  // Third field of /proc/<pid>/stat: 'T' for a stopped process.
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[0];
}

describe('fencing (real worker processes)', () => {
  let redis: TestRedis;
  let direct: Redis;
  let api: TestApp;
  const workers: WorkerProcess[] = [];
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wf-fencing-'));

  beforeAll(async () => {
    compileFixtures();
    redis = await redisUrlForTests();
    direct = redisFor(redis.url);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await api?.close();
    direct?.disconnect();
    await redis?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it.each(['stop', 'block'] as const)(
    'a worker stalled past its lease (%s) cannot commit or complete; the new owner results stand; its slot is freed',
    async (mode) => {
      const prefix = uniquePrefix(`fence_${mode}`);
      await api?.close();
      api = await startApp({ connection: redis.url, prefix, worker: false });
      const releaseFile = path.join(tmp, `release-${mode}`);
      const env = { REDIS_URL: redis.url, PREFIX: prefix, LEASE_MS: String(LEASE_MS), RELEASE_FILE: releaseFile };
      const obs = async (field: string) => direct.hget(`${prefix}:obs`, `r:stale:${field}`);

      const stale = await startWorkerProcess('foundation-worker', { ...env, WORKER_NAME: 'stale', STALL_IN_STEP2: mode });
      workers.push(stale);
      const handle = await api.client.emit('three-steps', { id: 'r', stall: true });
      await waitFor(async () => (await obs('enteredStep2')) !== null, 15_000);
      if (mode === 'stop') await waitFor(() => processState(stale.pid) === 'T', 5_000);

      const owner = await startWorkerProcess('foundation-worker', { ...env, WORKER_NAME: 'owner' });
      workers.push(owner);
      const output = await handle.result({ timeoutMs: 20_000 });
      expect(output).toEqual({ one: 'stale', two: 'owner', three: 'owner', completedBy: 'owner' });
      const stepsBefore = await api.client.getRunSteps(handle.id);
      const historyBefore = await api.client.getRunHistory(handle.id);

      // Wake the stale worker: its step 2 returns and tries to commit under the old token.
      if (mode === 'stop') stale.signal('SIGCONT');
      else writeFileSync(releaseFile, 'go');
      await waitFor(async () => (await obs('step3Error')) !== null, 15_000);
      expect(await obs('resumedStep2')).not.toBeNull();
      expect(await obs('step2Error')).toBe('LeaseLostError');
      expect(await obs('step3Error')).toBe('LeaseLostError');
      await waitFor(async () => (await obs('step2SignalAborted')) !== null && (await obs('ctxSignalAborted')) !== null, 5_000);
      expect(await obs('ctxSignalAborted')).toBe('LeaseLostError');
      expect(await obs('step2SignalAborted')).toBe('LeaseLostError');

      // Nothing the stale worker did after its lease was lost landed.
      expect(await api.client.getRunSteps(handle.id)).toEqual(stepsBefore);
      expect(await api.client.getRunHistory(handle.id)).toEqual(historyBefore);
      expect(stepsBefore.map((s) => [s.name, s.result])).toEqual([
        ['one', { by: 'stale' }],
        ['two', { by: 'owner' }],
        ['three', { by: 'owner' }],
      ]);
      expect(historyBefore.filter((e) => e.type === 'succeeded')).toHaveLength(1);
      expect(await api.client.getRun(handle.id)).toMatchObject({ status: 'succeeded', output });
      const effects = await direct.hgetall(`${prefix}:effects`);
      expect(effects['r:three-after-loss']).toBeUndefined();
      expect(effects['r:one']).toBe('1');

      // The stale worker (concurrency 1) freed its slot: with the owner gone, it executes the next run.
      await owner.stop();
      const next = await api.client.emit('three-steps', { id: 'after' });
      expect(await next.result({ timeoutMs: 15_000 })).toMatchObject({ completedBy: 'stale' });
      await stale.stop();
    },
    60_000,
  );

  it('the fencing token is a growing counter plus a random claim id, compared whole', async () => {
    const prefix = uniquePrefix('token');
    await api?.close();
    api = await startApp({ connection: redis.url, prefix, worker: false });
    const wr = api.moduleRef.get(WorkflowRedis);
    const shard = { queue: 'manual', partition: 0 };
    const spec = [{ name: 'manual-wf', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }];
    const runId = wr.keys.newRunId(shard);
    await wr.store.emit(shard, { runId, workflow: 'manual-wf', queue: 'manual', input: '{"a":1}', priority: 0 });

    const [first] = await wr.store.claim(shard, 'w1', 1, 30_000, 'aaaaaaaaaaaa', spec, 60_000);
    expect(first.token).toBe('1:aaaaaaaaaaaa');
    expect(await wr.store.release(shard, 'test', [{ id: runId, token: first.token }])).toBe(1);
    const [second] = await wr.store.claim(shard, 'w2', 1, 30_000, 'bbbbbbbbbbbb', spec, 60_000);
    expect(second.token).toBe('2:bbbbbbbbbbbb');

    // Same counter with another claim id, or another counter with the same claim id: both refused.
    for (const token of ['2:aaaaaaaaaaaa', '1:bbbbbbbbbbbb', '3:bbbbbbbbbbbb', '2', 'bbbbbbbbbbbb', first.token]) {
      expect(await wr.store.commitStep(shard, runId, token, '0:x', 'S', '{"s":"succeeded"}')).toEqual({ ok: false, reason: 'STALE_TOKEN' });
      expect(await wr.store.complete(shard, runId, token, '1', 1000)).toEqual({ ok: false, reason: 'STALE_TOKEN' });
      expect(await wr.store.heartbeat(shard, 30_000, [{ id: runId, token }])).toEqual([runId]);
    }
    expect(await wr.store.commitStep(shard, runId, second.token, '0:x', 'S', '{"s":"succeeded"}')).toMatchObject({ ok: true });

    // A lease that expired refuses commits even before any other worker claimed the run.
    await wr.store.release(shard, 'test', [{ id: runId, token: second.token }]);
    const [third] = await wr.store.claim(shard, 'w3', 1, 1, 'cccccccccccc', spec, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await wr.store.commitStep(shard, runId, third.token, '1:x', 'S', '{"s":"succeeded"}')).toEqual({ ok: false, reason: 'LEASE_EXPIRED' });
    expect(await direct.hkeys(`{${prefix}:manual:0}:s:${runId}`)).toEqual(['0:x']);
  });
});
