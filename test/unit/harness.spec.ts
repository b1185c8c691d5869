import { afterAll, describe, expect, it } from '@jest/globals';
import { Cluster, Redis } from 'ioredis';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';

describe('test harness: private redis-server', () => {
  let server: RedisServerHandle | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it('starts, survives SIGKILL with appendfsync always, restarts, stops', async () => {
    server = await startRedis({ appendonly: true, appendfsync: 'always' });
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    const key = `${uniquePrefix('harness')}:k`;

    const c1 = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await c1.connect();
    await c1.set(key, 'v1');
    expect(await c1.get(key)).toBe('v1');

    const pid = server.pid;
    await server.kill('SIGKILL');
    c1.disconnect();

    await server.restart();
    expect(server.pid).not.toBe(pid);
    const c2 = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      expect(await c2.get(key)).toBe('v1');
    } finally {
      c2.disconnect();
    }
  });

  it('uniquePrefix is unique and key-safe', () => {
    const a = uniquePrefix('my test/1');
    expect(a).toMatch(/^t_my_test_1_[0-9a-f]{8}$/);
    expect(uniquePrefix('x')).not.toBe(uniquePrefix('x'));
  });
});

describe('test harness: private redis cluster', () => {
  let cluster: RedisClusterHandle | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('creates a 3-primary cluster and routes keys through ioredis Cluster', async () => {
    cluster = await startCluster({ primaries: 3, replicasPerPrimary: 0 });
    expect(cluster.nodes).toHaveLength(3);
    expect(await cluster.primaries()).toHaveLength(3);

    const client = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    try {
      const p = uniquePrefix('cluster');
      const keys = Array.from({ length: 20 }, (_, i) => `${p}:${i}`);
      for (const k of keys) await client.set(k, k);
      for (const k of keys) expect(await client.get(k)).toBe(k);
      // hash-tagged keys share a slot, so a multi-key op works
      await client.mset(`{${p}}:a`, '1', `{${p}}:b`, '2');
      expect(await client.mget(`{${p}}:a`, `{${p}}:b`)).toEqual(['1', '2']);
    } finally {
      await client.quit();
    }
  });
});
