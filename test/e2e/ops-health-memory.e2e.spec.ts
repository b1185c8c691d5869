import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Redis } from 'ioredis';
import { Workflow, WorkflowHealthIndicator, type WorkflowContext } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('memory-echo', { queue: 'memory' })
@Injectable()
class EchoWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n;
  }
}

const MAXMEMORY = 8 * 1024 * 1024;
const usedMemory = async (redis: Redis) => Number(/used_memory:(\d+)/.exec(String(await redis.info('memory')))![1]);

/**
 * The health indicator reads Redis memory against maxmemory and the eviction policy: down before Redis
 * refuses writes (at `memoryThreshold` of maxmemory), and down when the policy may evict workflow keys.
 * Private servers with a small maxmemory, filled with a key of our own.
 */
describe('WorkflowHealthIndicator: Redis memory (e2e)', () => {
  let server: RedisServerHandle;
  let admin: Redis;
  let app: TestApp;
  let health: WorkflowHealthIndicator;

  beforeAll(async () => {
    server = await startRedis({ args: ['--maxmemory', String(MAXMEMORY), '--maxmemory-policy', 'noeviction'] });
    admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    app = await startApp({ connection: server.url, prefix: uniquePrefix('health_mem') }, [EchoWorkflow]);
    health = app.moduleRef.get(WorkflowHealthIndicator);
  });

  afterAll(async () => {
    admin?.disconnect();
    await app?.close();
    await server?.stop();
  });

  it('reports used memory, maxmemory and the policy, and is up below the threshold with noeviction', async () => {
    await waitFor(async () => (await health.isHealthy('workflows')).workflows.status === 'up');
    const { workflows } = await health.isHealthy('workflows');
    expect(workflows.memory).toEqual({
      status: 'up',
      node: `127.0.0.1:${server.port}`,
      usedBytes: expect.any(Number),
      maxBytes: MAXMEMORY,
      usedRatio: expect.any(Number),
      policy: 'noeviction',
      threshold: 0.9,
      nodes: [{ node: `127.0.0.1:${server.port}`, usedBytes: expect.any(Number), maxBytes: MAXMEMORY, policy: 'noeviction' }],
    });
  });

  it('turns down past the threshold, while Redis still accepts writes, and up again once memory is freed', async () => {
    // fill to just past 92 % of maxmemory with a key outside the module's namespace, in small pieces (a
    // command's own bytes count too)
    const chunk = 'x'.repeat(32 * 1024);
    const fillers: string[] = [];
    while ((await usedMemory(admin)) < MAXMEMORY * 0.92) {
      fillers.push(`filler:${fillers.length}`);
      await admin.set(fillers[fillers.length - 1], chunk);
    }
    const ratio = (await usedMemory(admin)) / MAXMEMORY;
    expect(ratio).toBeGreaterThan(0.9);
    expect(ratio).toBeLessThan(1);

    const { workflows } = await health.isHealthy('workflows');
    expect(workflows).toMatchObject({ status: 'down', redis: { status: 'up' }, memory: { status: 'down', policy: 'noeviction' } });
    expect(String(workflows.message)).toMatch(/Redis at 127\.0\.0\.1:\d+ uses 9\d % of maxmemory \(.* MiB of 8\.0 MiB, threshold 90 %\); at 100 % it refuses every workflow write: raise maxmemory, shorten retention, or add shards/);
    // not yet refused: the indicator is down before the outage, not with it
    await expect(app.client.run(EchoWorkflow, { n: 7 }, { timeoutMs: 10_000 })).resolves.toBe(7);
    // the threshold is an option
    expect((await health.isHealthy('workflows', { memoryThreshold: 0.99 })).workflows.memory).toMatchObject({ status: 'up' });
    await expect(health.isHealthy('workflows', { memoryThreshold: 1.5 })).rejects.toThrow('memoryThreshold must be a share of maxmemory above 0 and at most 1');

    // past 100 % Redis refuses the module's writes, as the indicator said it would
    // (maxmemory lowered under what is used: the same as filling it, without racing the freed query buffers)
    await admin.config('SET', 'maxmemory', String((await usedMemory(admin)) - 256 * 1024));
    await expect(app.client.emit(EchoWorkflow, { n: 8 })).rejects.toThrow(/OOM/);
    await admin.config('SET', 'maxmemory', String(MAXMEMORY));

    await admin.del(...fillers);
    expect((await health.isHealthy('workflows')).workflows.status).toBe('up');
  });

  it('is down when the eviction policy may delete workflow keys (allkeys-* and volatile-*), saying what to set', async () => {
    for (const policy of ['allkeys-lru', 'volatile-ttl']) {
      await admin.config('SET', 'maxmemory-policy', policy);
      const { workflows } = await health.isHealthy('workflows');
      expect(workflows).toMatchObject({ status: 'down', memory: { status: 'down', policy } });
      expect(String(workflows.message)).toContain(
        `has maxmemory-policy ${policy}, which lets Redis delete workflow keys (runs, indexes, event logs) when memory is full: set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)`,
      );
    }
    // without maxmemory Redis never evicts, whatever the policy: used memory is reported, healthy
    await admin.config('SET', 'maxmemory', '0');
    const { workflows } = await health.isHealthy('workflows');
    expect(workflows.memory).toMatchObject({ status: 'up', maxBytes: 0, policy: 'volatile-ttl', usedBytes: expect.any(Number) });
    expect(workflows.memory).not.toHaveProperty('usedRatio');
    await admin.config('SET', 'maxmemory', String(MAXMEMORY));
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
  });
});

describe('WorkflowHealthIndicator: Redis memory on a cluster (e2e)', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await startApp({ connection: { nodes: cluster.nodes }, prefix: uniquePrefix('health_mem_cl') } as never, [EchoWorkflow]);
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('reads every primary, and is down when one of them may evict', async () => {
    const health = app.moduleRef.get(WorkflowHealthIndicator);
    const primaries = await cluster.primaries();
    expect((await health.isHealthy('workflows')).workflows.memory).toMatchObject({ status: 'up', nodes: expect.any(Array) });
    expect(((await health.isHealthy('workflows')).workflows.memory as { nodes: unknown[] }).nodes).toHaveLength(primaries.length);

    const one = new Redis(primaries[1].port, primaries[1].host);
    try {
      await one.config('SET', 'maxmemory', String(512 * 1024 * 1024));
      await one.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const { workflows } = await health.isHealthy('workflows');
      expect(workflows).toMatchObject({ status: 'down', memory: { status: 'down' } });
      expect(String(workflows.message)).toContain(`Redis at ${primaries[1].host}:${primaries[1].port} has maxmemory-policy allkeys-lru`);
    } finally {
      one.disconnect();
    }
  }, 30_000);
});
