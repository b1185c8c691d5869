import { afterAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { startCluster } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, waitFor } from '../support/workflow-app.js';

/** Held until the test releases it, so that every run completes after the failover. */
let release!: () => void;
const gate = new Promise<void>((resolve) => (release = resolve));

@Workflow('cfw-gated', { queue: 'cfw', maxAttempts: 5, backoff: { type: 'fixed', delayMs: 100 } })
@Injectable()
class GatedWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    await ctx.step.run('gate', () => gate);
    return ctx.input.i;
  }
}

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

describe('Redis Cluster failover: result() waits', () => {
  it('every wait started before a primary fails over gets its run outcome (subscriptions survive the failover)', async () => {
    const cluster = await startCluster({ primaries: 3, replicasPerPrimary: 1 });
    cleanup.push(() => cluster.stop());
    const options = { connection: { nodes: cluster.nodes.slice(0, 3) }, prefix: uniquePrefix('cfw'), queues: { cfw: { partitions: 6 } } };
    const worker = await startApp({ ...options, worker: { concurrency: 40, leaseMs: 5000, reaperIntervalMs: 20 } } as never, [GatedWorkflow]);
    cleanup.push(() => worker.close());
    // The waits live in an app of their own (no worker), as an API process's would.
    const api = await startApp({ ...options, worker: false } as never);
    cleanup.push(() => api.close());

    const total = 36;
    const handles = await Promise.all(Array.from({ length: total }, (_, i) => api.client.emit(GatedWorkflow, { i })));
    const outcomes = handles.map((h) => h.result({ timeoutMs: 30_000 }).then((output) => ({ output }), (error: Error) => ({ error: error.message })));
    // every run holds its step (so each shard's subscriptions are in place) before the failover
    await waitFor(async () => (await Promise.all(handles.map((h) => h.getState()))).every((r) => r.status === 'running'), 20_000, 100);

    // the victim is the primary that serves the most of the queue's six shards
    const direct = new Cluster(cluster.nodes.slice(0, 3));
    cleanup.push(async () => direct.disconnect());
    await new Promise((resolve) => direct.once('ready', resolve));
    const slots = await Promise.all(Array.from({ length: 6 }, (_, partition) => direct.cluster('KEYSLOT', `{${options.prefix}:cfw:${partition}}`)));
    const owners = slots.map((slot) => (direct as unknown as { slots: string[][] }).slots[Number(slot)][0]);
    direct.disconnect();
    const busiest = [...new Set(owners)].sort((a, b) => owners.filter((o) => o === b).length - owners.filter((o) => o === a).length)[0];
    const victim = { port: Number(busiest.split(':').pop()) };
    await cluster.kill(victim.port);
    await waitFor(async () => {
      const now = await cluster.primaries().catch(() => []);
      return now.length === 3 && !now.some((p) => p.port === victim.port);
    }, 30_000, 200);
    // the clients' subscribers move to the promoted replica before the runs finish
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    release();

    await waitFor(async () => (await Promise.all(handles.map((h) => api.client.getRun(h.id).catch(() => null)))).every((r) => r?.status === 'succeeded'), 40_000, 250);
    const results = await Promise.all(outcomes);
    const missed = results.filter((r) => 'error' in r);
    process.stdout.write(`cluster failover: ${missed.length} of ${total} result() waits missed their run's completion\n`);
    expect(missed).toEqual([]);
    expect(results).toEqual(handles.map((_, i) => ({ output: i })));

    // The channels ioredis subscribes to again at its next reset: each once (it kept a copy per retried
    // SSUBSCRIBE: 768 entries for 6 channels after this failover). Its private state: skipped if it moves.
    const remembered = (api.moduleRef.get(WorkflowRedis).connections.subscriber as unknown as { shardedSubscribers?: { channels?: Map<number, string[]> } })
      .shardedSubscribers?.channels;
    if (remembered instanceof Map) {
      const channels = [...remembered.values()].flat();
      expect(channels.length).toBe(new Set(channels).size);
    }
  }, 150_000);
});
