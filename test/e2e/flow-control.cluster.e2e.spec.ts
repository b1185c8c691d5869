import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { Workflow, type WorkflowContext, type WorkflowModuleOptions } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { sleep, uniquePrefix } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

// Flow control on a 3-primary Redis Cluster: keyed runs spread over 8 partitions (so over all three nodes),
// each key's runs in one shard, where its limits are counted (lua/includes/01-flow.lua).
let probe: Cluster;
let log = '';
const at = (name: string) => `{${log}}:${name}`;

@Workflow('clf-customer', { queue: 'clf-keyed', concurrency: { key: (input: { customer: string }) => input.customer, limit: 1 } })
@Injectable()
class PerCustomer {
  async execute(ctx: WorkflowContext<{ customer: string }>) {
    if ((await probe.hincrby(at('active'), ctx.input.customer, 1)) > 1) await probe.incr(at('overlaps'));
    await sleep(3);
    await probe.hincrby(at('active'), ctx.input.customer, -1);
  }
}

@Workflow('clf-partner', { queue: 'clf-keyed', rateLimit: { key: (input: { account: string }) => input.account, limit: 20, periodMs: 1000 } })
@Injectable()
class PartnerCalls {
  async execute(ctx: WorkflowContext<{ account: string }>) {
    await probe.rpush(at(`starts:${ctx.input.account}`), String(Date.now()));
  }
}

@Workflow('clf-profile', { queue: 'clf-keyed', debounce: { key: (input: { user: string }) => input.user, periodMs: 1500 } })
@Injectable()
class ProfileChanged {
  async execute(ctx: WorkflowContext<{ user: string; version: number }>) {
    return ctx.input.version;
  }
}

@Workflow('clf-fair', { queue: 'clf-keyed', concurrency: { key: (input: { tenant: string }) => input.tenant, limit: 1000 }, fairness: true })
@Injectable()
class FairSync {
  async execute(ctx: WorkflowContext<{ tenant: string }>) {
    await probe.rpush(at('order'), ctx.input.tenant);
  }
}

@Workflow('clf-fair-big', { queue: 'clf-fair', concurrency: { key: (input: { tenant: string }) => input.tenant, limit: 1000 }, fairness: true })
@Injectable()
class FairBacklog {
  async execute(ctx: WorkflowContext<{ tenant: string }>) {
    await probe.rpush(at('backlog-order'), ctx.input.tenant);
  }
}

/** The partition of a flow key (lib/client/emit-targets.ts). */
const partitionOf = (workflow: string, key: string, partitions: number) =>
  createHash('sha1').update(`${workflow}\0flow\0${key}`).digest().readUInt32BE(0) % partitions;

const sharedQueueWorkflow = (name: string) => {
  @Workflow(name, { queue: 'clf-partner' })
  @Injectable()
  class SharedQueue {
    async execute() {
      const active = await probe.incr(at('queue-active'));
      await probe.eval(`local m = tonumber(redis.call('GET', KEYS[1]) or '0') if ${active} > m then redis.call('SET', KEYS[1], ${active}) end`, 1, at('queue-max'));
      await sleep(5);
      await probe.decr(at('queue-active'));
    }
  }
  return SharedQueue;
};
const QueueA = sharedQueueWorkflow('clf-queue-a');
const QueueB = sharedQueueWorkflow('clf-queue-b');
const QueueC = sharedQueueWorkflow('clf-queue-c');

describe('flow control on a 3-primary Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  const apps: TestApp[] = [];
  const prefix = uniquePrefix('clf');

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    probe = new Cluster(cluster.nodes);
    log = prefix;
    const options = {
      connection: { nodes: cluster.nodes },
      prefix,
      queues: { 'clf-keyed': { partitions: 8 }, 'clf-partner': { concurrency: 5 } },
      worker: { concurrency: 20, reaperIntervalMs: 20 },
    } as unknown as WorkflowModuleOptions & { connection: string };
    for (let i = 0; i < 3; i++) apps.push(await startApp(options, [PerCustomer, PartnerCalls, ProfileChanged, FairSync, QueueA, QueueB, QueueC]));
  }, 60_000);

  afterAll(async () => {
    for (const app of apps) await app.close();
    probe?.disconnect();
    await cluster?.stop();
  });

  it('per-key concurrency: 500 runs over 25 keys with limit 1 never overlap, and all finish', async () => {
    const handles = await Promise.all(Array.from({ length: 500 }, (_, n) => apps[n % 3].client.emit(PerCustomer, { customer: `c${Math.floor(n / 20)}` })));
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 60_000 })));
    expect(Number(await probe.get(at('overlaps')))).toBe(0);
  }, 90_000);

  it('rate limit: at most 20 starts of a key in any second, while another key proceeds', async () => {
    const busy = await Promise.all(Array.from({ length: 45 }, () => apps[0].client.emit(PartnerCalls, { account: 'busy' })));
    const quiet = await Promise.all(Array.from({ length: 5 }, () => apps[1].client.emit(PartnerCalls, { account: 'quiet' })));
    await Promise.all(quiet.map((h) => h.result({ timeoutMs: 10_000 })));
    const quietDoneAt = Date.now();
    await Promise.all(busy.map((h) => h.result({ timeoutMs: 10_000 })));
    const starts = (await probe.lrange(at('starts:busy'), 0, -1)).map(Number).sort((x, y) => x - y);
    expect(starts).toHaveLength(45);
    for (let i = 0; i + 20 < starts.length; i++) expect(starts[i + 20] - starts[i]).toBeGreaterThanOrEqual(950);
    expect(quietDoneAt).toBeLessThan(starts[20]);
  }, 30_000);

  it('debounce: 100 emits within the period give one run with the last input', async () => {
    const handles = [];
    for (let version = 1; version <= 100; version++) handles.push(await apps[version % 3].client.emit(ProfileChanged, { user: 'u1', version }));
    expect(new Set(handles.map((h) => h.id)).size).toBe(1);
    expect(await handles[0].result({ timeoutMs: 10_000 })).toBe(100);
  }, 30_000);

  it('fairness: a key with 2,000 queued runs delays one with 5 by a few claims', async () => {
    // emitted while the workflow's workers are busy with the big key's first runs; the small key hashes to the
    // big key's partition ('small' did not: its runs never waited for the big key's, with or without fairness)
    const smallKey = Array.from({ length: 100 }, (_, i) => `small${i}`).find((key) => partitionOf('clf-fair', key, 8) === partitionOf('clf-fair', 'big', 8))!;
    for (let chunk = 0; chunk < 4; chunk++) await Promise.all(Array.from({ length: 500 }, () => apps[0].client.emit(FairSync, { tenant: 'big' })));
    const small = await Promise.all(Array.from({ length: 5 }, () => apps[1].client.emit(FairSync, { tenant: smallKey })));
    const before = await probe.llen(at('order'));
    await Promise.all(small.map((h) => h.result({ timeoutMs: 30_000 })));
    const order = await probe.lrange(at('order'), 0, -1);
    // the small key's runs execute a few claims after their emit (the 60 slots of three workers busy with the big key finish first), not after the big key's backlog
    expect(order.lastIndexOf(smallKey) - before).toBeLessThan(Math.min(250, (2000 - before) / 2 + 10));
  }, 60_000);

  it('fairness: a key with 5,000 runs queued before any worker starts delays one with 5 by a few claims, over three workers', async () => {
    // Apps of their own (another prefix, queue 'clf-fair' of 8 partitions), the runs emitted with no worker.
    // Both keys in one shard: keys of other partitions would not wait for each other at all.
    const options = (worker: boolean) =>
      ({
        connection: { nodes: cluster.nodes },
        prefix: `${prefix}b`,
        cron: false,
        queues: { 'clf-fair': { partitions: 8 } },
        worker: worker ? { concurrency: 4, reaperIntervalMs: 20 } : false,
      }) as unknown as WorkflowModuleOptions & { connection: string };
    const small = Array.from({ length: 100 }, (_, i) => `small${i}`).find((key) => partitionOf('clf-fair-big', key, 8) === partitionOf('clf-fair-big', 'big', 8))!;
    const producer = await startApp(options(false), [FairBacklog]);
    apps.push(producer);
    const ids: string[] = [];
    for (let chunk = 0; chunk < 10; chunk++) {
      ids.push(...(await Promise.all(Array.from({ length: 500 }, () => producer.client.emit(FairBacklog, { tenant: 'big' })))).map((h) => h.id));
    }
    const smalls = await Promise.all(Array.from({ length: 5 }, () => producer.client.emit(FairBacklog, { tenant: small })));
    // a run id ends with its queue and partition
    expect(new Set([...ids, ...smalls.map((h) => h.id)].map((id) => id.split('.').slice(1).join('.'))).size).toBe(1);
    for (let i = 0; i < 3; i++) apps.push(await startApp(options(true), [FairBacklog]));
    await Promise.all(smalls.map((h) => h.result({ timeoutMs: 30_000 })));
    await waitFor(async () => (await probe.llen(at('backlog-order'))) === 5005, 60_000, 100);
    const order = await probe.lrange(at('backlog-order'), 0, -1);
    // the keys' runs alternate; without fairness the small key's runs come after about 1,000 of the big one's
    expect(order.lastIndexOf(small)).toBeLessThan(20);
  }, 90_000);

  it('queues.<name>.concurrency of 5 shared by three workflows is never exceeded across 3 workers', async () => {
    const handles = await Promise.all(Array.from({ length: 300 }, (_, i) => apps[i % 3].client.emit([QueueA, QueueB, QueueC][i % 3], {})));
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
    expect(Number(await probe.get(at('queue-max')))).toBe(5);
  }, 60_000);
});
