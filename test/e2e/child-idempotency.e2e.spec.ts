import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { CanceledError, ChildWorkflowError, NonRetriableError, Workflow, type WorkflowContext } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

// A child started with an idempotency key that already names a run: every parent waiting on that run
// gets its outcome, whenever it started waiting (lua/includes/04-child-waiters.lua).

let counters: Redis;
const countersKey = uniquePrefix('child-idem');
const bump = (name: string) => counters.hincrby(countersKey, name, 1);
const count = async (name: string) => Number((await counters.hget(countersKey, name)) ?? 0);

type ChildInput = { tag: string; hold?: boolean; fail?: boolean };

@Workflow('ci-once', { queue: 'ci-children' })
@Injectable()
class OnceChild {
  async execute(ctx: WorkflowContext<ChildInput>) {
    await ctx.step.run('count', () => bump(`executed:${ctx.input.tag}`));
    if (ctx.input.hold) await ctx.step.waitForEvent('release', { event: 'ci.release', key: ctx.input.tag });
    if (ctx.input.fail) throw new NonRetriableError(`child ${ctx.input.tag} refuses`);
    return { tag: ctx.input.tag, by: ctx.run.parentId };
  }
}

type ParentInput = { key: string; child: ChildInput; queue?: string };

/** On its own queue (2 partitions): its children live in another shard. */
@Workflow('ci-parent', { queue: 'ci-parents', maxAttempts: 1 })
@Injectable()
class Parent {
  async execute(ctx: WorkflowContext<ParentInput>) {
    return ctx.step.runWorkflow('child', OnceChild, ctx.input.child, { idempotencyKey: ctx.input.key, queue: ctx.input.queue });
  }
}

/** On a one-partition queue where it starts its child too: parent and child in one shard. */
@Workflow('ci-parent-here', { queue: 'ci-one', maxAttempts: 1 })
@Injectable()
class ParentHere {
  async execute(ctx: WorkflowContext<ParentInput>) {
    return ctx.step.runWorkflow('child', OnceChild, ctx.input.child, { idempotencyKey: ctx.input.key, queue: 'ci-one' });
  }
}

const options = (prefix: string, url: string, extra: object = {}) =>
  ({
    connection: url,
    prefix,
    queues: { 'ci-parents': { partitions: 2 }, 'ci-children': { partitions: 3 } },
    worker: { concurrency: 50, reaperIntervalMs: 20 },
    ...extra,
  }) as never;

describe('children started with an idempotency key that names an existing run (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    counters = redisFor(redis.url);
    app = await startApp(options(uniquePrefix('ci'), redis.url), [OnceChild, Parent, ParentHere]);
  }, 30_000);

  afterAll(async () => {
    await app?.close();
    counters?.disconnect();
    await redis?.stop();
  });

  it.each([
    ['in another shard', Parent, 'done-other'],
    ['in the parent\'s shard', ParentHere, 'done-here'],
  ])('a second parent gets the outcome of a child that already finished (%s)', async (_, ParentClass, tag) => {
    const first = await app.client.run(ParentClass, { key: tag, child: { tag } }, { timeoutMs: 10_000 });
    const second = await app.client.run(ParentClass, { key: tag, child: { tag } }, { timeoutMs: 10_000 });
    expect(second).toEqual(first);
    expect(await count(`executed:${tag}`)).toBe(1);
  });

  it('parents in this and other shards that join a running child all get its outcome, once it ends', async () => {
    const tag = 'running';
    const child = { tag, hold: true };
    const first = await app.client.emit(Parent, { key: tag, child, queue: 'ci-one' });
    await waitFor(async () => (await count(`executed:${tag}`)) === 1);
    const others = await Promise.all([
      ...Array.from({ length: 3 }, () => app.client.emit(Parent, { key: tag, child, queue: 'ci-one' })),
      ...Array.from({ length: 3 }, () => app.client.emit(ParentHere, { key: tag, child })),
    ]);
    const handles = [first, ...others];
    await waitFor(async () => (await Promise.all(handles.map((h) => h.getState()))).every((s) => s.status === 'waiting'));
    await app.client.sendEvent('ci.release', null, { key: tag }); // the child may not be waiting yet: it gets the event then
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 10_000 })));
    expect(outputs).toEqual(handles.map(() => ({ tag, by: first.id })));
    expect(await count(`executed:${tag}`)).toBe(1);
  });

  it('a parent whose key names a run a client emitted waits for that run', async () => {
    const tag = 'client-emitted';
    const child = { tag, hold: true };
    const emitted = await app.client.emit(OnceChild, child, { idempotencyKey: tag });
    await waitFor(async () => (await emitted.getState()).status === 'waiting');
    const parent = await app.client.emit(Parent, { key: tag, child });
    await waitFor(async () => (await parent.getState()).status === 'waiting');
    await app.client.sendEvent('ci.release', null, { key: tag });
    expect(await parent.result({ timeoutMs: 10_000 })).toEqual({ tag });
    expect(await emitted.result({ timeoutMs: 1_000 })).toEqual({ tag });
    expect(await count(`executed:${tag}`)).toBe(1);
  });

  it('120 parents waiting on one child (more than one housekeeping chunk) are all woken', async () => {
    const tag = 'many';
    const child = { tag, hold: true };
    const handles = await Promise.all(Array.from({ length: 120 }, (_, i) => app.client.emit(i % 2 ? Parent : ParentHere, { key: tag, child, queue: 'ci-one' })));
    await waitFor(async () => (await Promise.all(handles.map((h) => h.getState()))).every((s) => s.status === 'waiting'), 15_000);
    await app.client.sendEvent('ci.release', null, { key: tag }); // the child may not be waiting yet: it gets the event then
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 })));
    expect(new Set(outputs.map((o) => JSON.stringify(o))).size).toBe(1);
    expect(await count(`executed:${tag}`)).toBe(1);
  }, 40_000);

  it('every parent of a failed child gets ChildWorkflowError, whenever it came', async () => {
    const tag = 'fails';
    const child = { tag, hold: true, fail: true };
    const before = await app.client.emit(Parent, { key: tag, child, queue: 'ci-one' });
    await waitFor(async () => (await count(`executed:${tag}`)) === 1);
    const during = await app.client.emit(ParentHere, { key: tag, child });
    await waitFor(async () => (await during.getState()).status === 'waiting');
    await app.client.sendEvent('ci.release', null, { key: tag });
    for (const handle of [before, during]) await expect(handle.result({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(ChildWorkflowError);
    const after = await app.client.emit(Parent, { key: tag, child, queue: 'ci-one' });
    const error = await after.result({ timeoutMs: 10_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(ChildWorkflowError);
    expect(error.message).toContain('child fails refuses');
    expect(await count(`executed:${tag}`)).toBe(1);
  });

  it('canceling a parent that joined another parent\'s child leaves that child running', async () => {
    const tag = 'joined-cancel';
    const child = { tag, hold: true };
    const owner = await app.client.emit(Parent, { key: tag, child });
    await waitFor(async () => (await owner.getState()).status === 'waiting');
    const childId = (await app.client.getRunSteps(owner.id))[0].childRunId!;
    await waitFor(async () => (await app.client.getRun(childId))?.status === 'waiting');
    const joined = await app.client.emit(Parent, { key: tag, child });
    await waitFor(async () => (await joined.getState()).status === 'waiting');
    expect(await joined.cancel('not needed')).toBe(true);
    await expect(joined.result({ timeoutMs: 5_000 })).rejects.toBeInstanceOf(CanceledError);
    expect((await app.client.getRun(childId))?.status).toBe('waiting');
    await app.client.sendEvent('ci.release', null, { key: tag });
    expect(await owner.result({ timeoutMs: 10_000 })).toEqual({ tag, by: owner.id });
  });

  it('after the child\'s retention the key names no run: the next parent starts a fresh child', async () => {
    const short = await startApp(options(uniquePrefix('ci-short'), redis.url, { retention: { succeededMs: 100 } }), [OnceChild, Parent]);
    try {
      const tag = 'expires';
      await short.client.run(Parent, { key: tag, child: { tag } }, { timeoutMs: 10_000 });
      const childId = (await short.client.findRun(OnceChild, tag))!.id;
      await waitFor(async () => (await short.client.getRun(childId)) === null, 5_000);
      const again = await short.client.run(Parent, { key: tag, child: { tag } }, { timeoutMs: 10_000 });
      expect(again).toEqual({ tag, by: expect.any(String) });
      expect(await count(`executed:${tag}`)).toBe(2);
    } finally {
      await short.close();
    }
  });
});

describe('children named by an idempotency key, parents and child on other nodes (Redis Cluster, 3 primaries)', () => {
  let redis: TestRedis;
  let cluster: RedisClusterHandle;
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    counters = redisFor(redis.url);
    cluster = await startCluster({ primaries: 3 });
    app = await startApp({ ...(options(uniquePrefix('cic'), '') as object), connection: { nodes: cluster.nodes } } as never, [OnceChild, Parent]);
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
    counters?.disconnect();
    await redis?.stop();
  });

  it('parents that come before and after the child finished all get its outcome', async () => {
    const tag = 'cluster-running';
    const child = { tag, hold: true };
    const early = await Promise.all(Array.from({ length: 4 }, () => app.client.emit(Parent, { key: tag, child })));
    await waitFor(async () => (await Promise.all(early.map((h) => h.getState()))).every((s) => s.status === 'waiting'));
    await app.client.sendEvent('ci.release', null, { key: tag }); // the child may not be waiting yet: it gets the event then
    const outputs = await Promise.all(early.map((h) => h.result({ timeoutMs: 10_000 })));
    const late = await Promise.all(Array.from({ length: 4 }, () => app.client.run(Parent, { key: tag, child }, { timeoutMs: 10_000 })));
    expect(new Set([...outputs, ...late].map((o) => JSON.stringify(o))).size).toBe(1);
    expect(await count(`executed:${tag}`)).toBe(1);
  });
});
