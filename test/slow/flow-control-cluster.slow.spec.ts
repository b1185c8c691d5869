/**
 * Fairness (docs/flow-control.md) on a 3-primary Redis Cluster at the size issue 29 names: a key with 5,000
 * queued runs delays a key with 5 runs by a few claims, not by its backlog. Both keys are in one shard of a
 * queue of 8 partitions (the small key is chosen to hash where the big one does: keys of other partitions
 * would not wait for each other at all). The quick version, 2,000 runs, is in
 * test/e2e/flow-control.cluster.e2e.spec.ts.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { Workflow, type WorkflowContext, type WorkflowModuleOptions } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const BIG = Number(process.env.FLOW_FAIR_N ?? 5_000);
const PARTITIONS = 8;
let probe: Cluster;
let log = '';
const at = (name: string) => `{${log}}:${name}`;

@Workflow('clf-fair-big', { queue: 'clf-fair', concurrency: { key: (input: { tenant: string }) => input.tenant, limit: 1000 }, fairness: true })
@Injectable()
class FairSync {
  async execute(ctx: WorkflowContext<{ tenant: string }>) {
    await probe.rpush(at('order'), ctx.input.tenant);
  }
}

/** The partition of a flow key (lib/client/emit-targets.ts). */
const partitionOf = (workflow: string, key: string) => createHash('sha1').update(`${workflow}\0flow\0${key}`).digest().readUInt32BE(0) % PARTITIONS;

describe(`fairness on a 3-primary Redis Cluster with ${BIG.toLocaleString('en-US')} runs of one key`, () => {
  let cluster: RedisClusterHandle;
  const apps: TestApp[] = [];
  const prefix = uniquePrefix('clfair');
  const options = (worker: boolean) =>
    ({
      connection: { nodes: cluster.nodes },
      prefix,
      cron: false,
      queues: { 'clf-fair': { partitions: PARTITIONS } },
      worker: worker ? { concurrency: 4, reaperIntervalMs: 20 } : false,
    }) as unknown as WorkflowModuleOptions & { connection: string };

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    probe = new Cluster(cluster.nodes);
    log = prefix;
  }, 60_000);

  afterAll(async () => {
    for (const app of apps) await app.close();
    probe?.disconnect();
    await cluster?.stop();
  });

  it(`a key with ${BIG.toLocaleString('en-US')} queued runs delays one with 5 by a few claims, over three workers`, async () => {
    const small = Array.from({ length: 100 }, (_, i) => `small${i}`).find((key) => partitionOf('clf-fair-big', key) === partitionOf('clf-fair-big', 'big'))!;
    const producer = await startApp(options(false), [FairSync]);
    apps.push(producer);
    const started = Date.now();
    const bigIds: string[] = [];
    for (let chunk = 0; chunk < BIG / 500; chunk++) {
      bigIds.push(...(await Promise.all(Array.from({ length: 500 }, () => producer.client.emit(FairSync, { tenant: 'big' })))).map((h) => h.id));
    }
    const smalls = await Promise.all(Array.from({ length: 5 }, () => producer.client.emit(FairSync, { tenant: small })));
    const emitted = Date.now() - started;
    // one shard holds both keys (a run id ends with its queue and partition)
    const shards = new Set([...bigIds, ...smalls.map((h) => h.id)].map((id) => id.split('.').slice(1).join('.')));
    expect([...shards]).toHaveLength(1);
    for (let i = 0; i < 3; i++) apps.push(await startApp(options(true), [FairSync]));
    await Promise.all(smalls.map((h) => h.result({ timeoutMs: 60_000 })));
    await waitFor(async () => (await probe.llen(at('order'))) === BIG + 5, 120_000, 100);
    const order = await probe.lrange(at('order'), 0, -1);
    const last = order.lastIndexOf(small);
    console.log(`emitted ${BIG} + 5 runs in ${emitted} ms, drained in ${Date.now() - started - emitted} ms; the small key's last run was number ${last + 1} (shard ${[...shards][0]})`);
    // the big key's runs and the small key's alternate: without fairness its runs come after the big backlog
    expect(last).toBeLessThan(20);
    expect(order.filter((tenant) => tenant === 'big')).toHaveLength(BIG);
  }, 240_000);
});
