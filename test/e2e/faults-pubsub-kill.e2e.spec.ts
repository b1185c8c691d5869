import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('pk-quick', { queue: 'pk' })
@Injectable()
class QuickWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    return ctx.input.i;
  }
}

describe('faults: pub/sub connections cut while runs complete (CLIENT KILL TYPE pubsub)', () => {
  let redis: RedisServerHandle;
  let admin: Redis;
  let worker: TestApp;
  let api: TestApp;
  const prefix = uniquePrefix('pk');
  const partitions = 16;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    admin = redisFor(redis.url);
    worker = await startApp({ connection: redis.url, prefix, queues: { pk: { partitions } }, worker: { concurrency: 50, reaperIntervalMs: 20 } }, [QuickWorkflow]);
    api = await startApp({ connection: redis.url, prefix, queues: { pk: { partitions } }, worker: false });
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await api?.close();
    await worker?.close();
    admin?.disconnect();
    await redis?.stop();
  });

  it('tells its reconnect listeners (which re-read run states) only once the subscriptions are back: a message published at that moment arrives', async () => {
    const engine = api.moduleRef.get(WorkflowRedis);
    const channel = engine.keys.doneChannel(engine.keys.shardRoot({ queue: 'pk', partition: 0 }));
    const received: string[] = [];
    await engine.subscriber.subscribe(channel, (message) => received.push(message));
    // What a completion does when it lands right as a waiter re-reads after the reconnect.
    let published = 0;
    const stop = engine.subscriber.onReconnect(() => {
      published += 1;
      void admin.spublish(channel, `probe-${published}`);
    });
    try {
      for (let cut = 0; cut < 3; cut += 1) {
        const reconnected = published + 1;
        expect(Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))).toBeGreaterThan(0);
        await waitFor(() => published >= reconnected, 5_000);
        await waitFor(() => received.includes(`probe-${reconnected}`), 2_000).catch(() => undefined);
      }
    } finally {
      stop();
    }
    expect(received.filter((m) => m.startsWith('probe-'))).toEqual(Array.from({ length: published }, (_, i) => `probe-${i + 1}`));
  });

  it('no result() wait misses a completion published around a reconnect of the subscriber', async () => {
    let cutting = true;
    let cuts = 0;
    const cutter = (async () => {
      while (cutting) {
        await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 40));
        cuts += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
      }
    })();
    // Apps join during the cuts, as API processes starting in an outage would: each subscribes to every
    // shard's done channel afresh while its subscriber connection is being cut.
    const waits: Promise<{ i: number; output?: unknown; error?: string }>[] = [];
    const until = Date.now() + 4_000;
    for (let i = 0; Date.now() < until; ) {
      const joined = await startApp({ connection: redis.url, prefix, queues: { pk: { partitions } }, worker: false });
      apps.push(joined);
      for (let k = 0; k < 4 * partitions; k += 1, i += 1) {
        const client = k % 2 === 0 ? joined.client : api.client;
        const n = i;
        const handle = await client.emit(QuickWorkflow, { i: n });
        waits.push(handle.result({ timeoutMs: 15_000 }).then((output) => ({ i: n, output }), (error: Error) => ({ i: n, error: error.message })));
      }
    }
    const results = await Promise.all(waits);
    cutting = false;
    await cutter;
    const missed = results.filter((r) => r.error !== undefined);
    process.stdout.write(`pubsub kill: ${cuts} subscriber connections cut, ${results.length} waits, ${missed.length} missed\n`);
    expect(cuts).toBeGreaterThan(10);
    expect(missed).toEqual([]);
    expect(results.every((r) => r.output === r.i)).toBe(true);
  }, 60_000);
});
