/**
 * Two deployments of different code on one Redis, as real processes (test/fixtures/versioned-worker.ts):
 * a rolling deploy with runs sleeping across it, ctx.patched keeping old runs on the old path, pinned runs
 * claimed only by workers of their version, and a stranded pinned run moved by retryRun's onVersion.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Redis } from 'ioredis';
import type { RunHandle } from '../../lib/index.js';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { compileFixtures, startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const cleanup: (() => Promise<unknown>)[] = [];
// The worker processes run compiled code: compiled once here, outside any test's own timeout.
beforeAll(() => void compileFixtures(), 240_000);
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

async function server(): Promise<{ redis: RedisServerHandle; direct: Redis }> {
  const redis = await startRedis();
  const direct = redisFor(redis.url);
  cleanup.push(() => redis.stop(), async () => direct.disconnect());
  return { redis, direct };
}

async function worker(url: string, prefix: string, version: string, code: string): Promise<WorkerProcess> {
  const process = await startWorkerProcess('versioned-worker', { REDIS_URL: url, PREFIX: prefix, APP_VERSION: version, CODE: code });
  cleanup.push(() => process.stop(3000));
  return process;
}

async function api(url: string, prefix: string, version: string): Promise<TestApp> {
  const app = await startApp({ connection: url, prefix, version, worker: false });
  cleanup.push(() => app.close());
  return app;
}

const emitMany = (app: TestApp, workflow: string, n: number, sleepMs: number) =>
  Promise.all(Array.from({ length: n }, () => app.client.emit(workflow, { sleepMs })));

describe('versions with real worker processes of two deployments', () => {
  it('a rolling deploy: patched runs finish across it on the path they started on; pinned runs only ever run on their version; a stranded one is moved', async () => {
    const { redis, direct } = await server();
    const prefix = uniquePrefix('rolling');
    const effects = async (id: string) => {
      const all = await direct.hgetall(`${prefix}:effects`);
      return Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith(`${id}:`)).map(([k, v]) => [k.slice(id.length + 1), v]));
    };
    const old = await worker(redis.url, prefix, 'v1', 'old');
    const apiV1 = await api(redis.url, prefix, 'v1');
    // Old orders sleep across the whole deploy; old reports wake while both deployments run.
    const oldOrders = await emitMany(apiV1, 'order', 4, 12_000);
    const oldReports = await emitMany(apiV1, 'report', 4, 1_500);
    await waitFor(async () => (await Promise.all([...oldOrders, ...oldReports].map((r) => r.getState()))).every((s) => s.status === 'waiting'), 15_000);

    // The new deployment starts beside the old one.
    const next = await worker(redis.url, prefix, 'v2', 'new');
    const apiV2 = await api(redis.url, prefix, 'v2');
    const newReports = await emitMany(apiV2, 'report', 4, 300);
    const outputs = async (runs: RunHandle[]) => Promise.all(runs.map((r) => r.result({ timeoutMs: 20_000 })));

    // Both deployments drain side by side: each report finishes on the deployment of its version only,
    // although the other one had free slots all along.
    expect(await outputs(oldReports)).toEqual(oldReports.map(() => 'v1/old'));
    expect(await outputs(newReports)).toEqual(newReports.map(() => 'v2/new'));
    for (const run of oldReports) expect(await effects(run.id)).toEqual({ gather: 'v1/old', render: 'v1/old' });
    for (const run of newReports) expect(await effects(run.id)).toEqual({ gather: 'v2/new', 'render-v2': 'v2/new' });
    for (const run of [...oldReports, ...newReports]) {
      const info = (await run.getState())!;
      expect(info.pinned).toBe(true);
    }

    // The old deployment stops while the old orders still sleep: they wake on the new code. (New orders
    // are emitted once it is gone: an old worker could not replay a run that took the patch's new path.)
    await old.stop(3000);
    const newOrders = await emitMany(apiV2, 'order', 4, 300);
    expect(await outputs(newOrders)).toEqual(newOrders.map(() => ({ charged: '1200 cents' })));
    expect(await outputs(oldOrders)).toEqual(oldOrders.map(() => ({ charged: '12 dollars' })));
    for (const run of oldOrders) {
      // charged by the old code, shipped by the new, which kept the old path for it (no NonDeterminismError)
      expect(await effects(run.id)).toEqual({ 'charge-dollars': 'v1/old', ship: 'v2/new' });
      const info = (await run.getState())!;
      expect(info.version).toBe('v1');
      expect(info.pinned).toBeUndefined();
      expect((await apiV2.client.getRunSteps(run.id)).map((s) => s.name)).not.toContain('patched:cents');
    }
    for (const run of newOrders) {
      expect(await effects(run.id)).toEqual({ 'charge-cents': 'v2/new', ship: 'v2/new' });
      expect((await run.getState())!.version).toBe('v2');
      const steps = await apiV2.client.getRunSteps(run.id);
      expect(steps.find((s) => s.name === 'patched:cents')).toMatchObject({ kind: 'patch', status: 'succeeded' });
    }

    // A report emitted by an old API process after the old workers are gone: pinned to v1, which no live
    // worker serves. It stays queued (the v2 worker never claims it), and getStats says why.
    const stranded = await apiV1.client.emit('report', { sleepMs: 10 });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await stranded.getState()).status).toBe('queued');
    const stats = await apiV2.client.getStats();
    const report = stats.workflows.find((w) => w.name === 'report')!;
    expect(report.versioning).toBe('pinned');
    expect(report.versions?.find((v) => v.version === 'v1')).toMatchObject({ pinned: 1, pinnedReady: 1, workers: 0, heldBack: 1 });
    expect(stats.workers.versions).toEqual([{ version: 'v2', workers: 1 }]);
    expect(await effects(stranded.id)).toEqual({});
    // ... until it is moved to the current version: then the v2 deployment executes it, on its code.
    await apiV2.client.retryRun(stranded.id, { onVersion: 'current' });
    expect(await stranded.result({ timeoutMs: 10_000 })).toBe('v2/new');
    expect((await stranded.getState()).version).toBe('v2');
    expect((await apiV2.client.getRunHistory(stranded.id)).map((e) => e.type)).toContain('version-moved');
    expect(next.output()).not.toMatch(/NonDeterminismError/);
  }, 90_000);

  it('without the patch, the same deploy fails the old runs with NonDeterminismError (what patched prevents)', async () => {
    const { redis } = await server();
    const prefix = uniquePrefix('unguarded');
    const old = await worker(redis.url, prefix, 'v1', 'old');
    const apiV1 = await api(redis.url, prefix, 'v1');
    const run = await apiV1.client.emit('order', { sleepMs: 1_500 });
    await waitFor(async () => (await run.getState()).status === 'waiting', 10_000);
    await old.stop(3000);
    await worker(redis.url, prefix, 'v2', 'unguarded');
    await expect(run.result({ timeoutMs: 15_000 })).rejects.toMatchObject({ name: 'NonDeterminismError' });
  }, 40_000);

  it('a run that took a patch\'s new path, met by a worker whose code predates the patch, is retried for a newer worker instead of failing', async () => {
    const { redis } = await server();
    const prefix = uniquePrefix('overlap');
    const next = await worker(redis.url, prefix, 'v2', 'new');
    const apiV2 = await api(redis.url, prefix, 'v2');
    const run = await apiV2.client.emit('order', { sleepMs: 1_000 });
    await waitFor(async () => (await run.getState()).status === 'waiting', 10_000);
    await next.stop(3000);
    // An old worker still running during the overlap wakes the run: its code charges in dollars.
    const old = await worker(redis.url, prefix, 'v1', 'old');
    await waitFor(async () => (await apiV2.client.getRunHistory(run.id)).some((e) => e.type === 'retrying' || e.type === 'failed'), 15_000);
    await old.stop(3000);
    await worker(redis.url, prefix, 'v2', 'new');
    expect(await run.result({ timeoutMs: 20_000 })).toEqual({ charged: '1200 cents' });
    const failures = (await apiV2.client.getRunHistory(run.id)).filter((e) => e.error?.name === 'NonDeterminismError');
    expect(failures.length).toBeGreaterThan(0);
    expect(failures[0].error?.message).toContain("took the new path of patch 'cents'");
  }, 120_000);
});
