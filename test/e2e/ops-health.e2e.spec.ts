import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, WorkflowHealthCheckError, WorkflowHealthIndicator, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('health-echo', { queue: 'health' })
@Injectable()
class EchoWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n;
  }
}

describe('WorkflowHealthIndicator (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;
  let admin: Redis;
  let health: WorkflowHealthIndicator;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    admin = redisFor(redis.url);
    app = await startApp({ connection: redis.url, prefix: uniquePrefix('health'), worker: { reaperIntervalMs: 20 } }, [EchoWorkflow]);
    health = app.moduleRef.get(WorkflowHealthIndicator);
  });

  afterAll(async () => {
    if (admin && admin.status !== 'end') admin.disconnect();
    await app?.close();
    await redis?.stop();
  });

  it('is up when Redis answers, the library is loaded and the worker loop ticks', async () => {
    await app.client.run(EchoWorkflow, { n: 1 }, { timeoutMs: 10_000 });
    await waitFor(async () => (await health.isHealthy('workflows')).workflows.status === 'up');
    const result = await health.isHealthy('workflows');
    expect(result).toEqual({
      workflows: {
        status: 'up',
        redis: { status: 'up', latencyMs: expect.any(Number) },
        library: { status: 'up', build: expect.any(Number), loaded: [expect.any(Number)] },
        worker: { status: 'up', id: expect.any(String), activeRuns: 0, concurrency: 10, lastLoopAgoMs: expect.any(Number) },
        memory: expect.objectContaining({ status: 'up', usedBytes: expect.any(Number), maxBytes: 0, policy: 'noeviction' }),
      },
    });
    await expect(health.assertHealthy('wf')).resolves.toMatchObject({ wf: { status: 'up' } });
  });

  it('is down when the library is missing, and up again once the module reloads it', async () => {
    await admin.call('FUNCTION', 'FLUSH');
    const down = await health.isHealthy('workflows');
    expect(down.workflows).toMatchObject({ status: 'down', library: { status: 'down' } });
    expect(String(down.workflows.message)).toContain('is not loaded');
    // the next call that needs the library reloads it ('Function not found')
    await app.client.run(EchoWorkflow, { n: 2 }, { timeoutMs: 10_000 });
    expect((await health.isHealthy()).workflows.status).toBe('up');
  });

  it('is down when the worker loop is stalled (its housekeeping call hangs), and recovers', async () => {
    // The worker's housekeeping call is made to hang here while Redis itself stays fine (the indicator's
    // PING goes over the command connection and is answered).
    const store = app.moduleRef.get(WorkflowRedis).workerStore;
    const realTick = store.tick.bind(store);
    let release!: () => void;
    const hung = new Promise<void>((resolve) => (release = resolve));
    store.tick = async (...args) => {
      await hung;
      return realTick(...args);
    };
    try {
      await waitFor(async () => (await health.isHealthy('workflows', { loopStalledAfterMs: 1_500 })).workflows.status === 'down', 10_000);
      const stalled = await health.isHealthy('workflows', { loopStalledAfterMs: 1_500 });
      expect(stalled.workflows).toMatchObject({
        status: 'down',
        redis: { status: 'up' },
        library: { status: 'up' },
        worker: { status: 'down', message: expect.stringContaining('the worker loop is stalled') },
      });
      const thrown = await health.assertHealthy('workflows', { loopStalledAfterMs: 1_500 }).catch((e: unknown) => e);
      expect(thrown).toBeInstanceOf(WorkflowHealthCheckError);
      expect(thrown).toMatchObject({ isHealthCheckError: true, causes: { workflows: { status: 'down' } } });
      // with the default limit (10 s) the same worker still counts as alive
      expect((await health.isHealthy('workflows')).workflows.status).toBe('up');
    } finally {
      store.tick = realTick;
      release();
    }
    await waitFor(async () => (await health.isHealthy('workflows', { loopStalledAfterMs: 1_500 })).workflows.status === 'up', 10_000);
  });

  it('is down when Redis stops, with the reason, and up again once it is back', async () => {
    if (!redis.server) return; // an external REDIS_URL cannot be stopped
    admin.disconnect();
    await redis.server.kill('SIGKILL');
    const result = await health.isHealthy('workflows', { timeoutMs: 500 });
    expect(result.workflows).toMatchObject({ status: 'down', redis: { status: 'down', message: expect.stringContaining('Redis unreachable') } });
    await expect(health.assertHealthy('workflows', { timeoutMs: 500 })).rejects.toThrow('Workflow health check failed');
    // a restarted server without persistence has no library: the worker reloads it and health is back
    await redis.server.restart();
    await waitFor(async () => (await health.isHealthy('workflows', { timeoutMs: 500 })).workflows.status === 'up', 20_000, 100);
  }, 30_000);

  it('is down once the worker has stopped', async () => {
    await app.close();
    expect((await health.isHealthy('workflows', { timeoutMs: 200 })).workflows).toMatchObject({
      status: 'down',
      worker: { status: 'down', message: expect.stringContaining('not running') },
    });
  });
});
