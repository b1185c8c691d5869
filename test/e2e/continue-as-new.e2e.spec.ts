/**
 * ctx.continueAsNew: the execution ends as succeeded and the same workflow starts again with new input and
 * an empty history, in one call (lua/rerun.lua, wf1_continue). result() of the first handle, a parent
 * waiting for the first run and cancelRun of the first run all reach the chain's live run.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { CanceledError, Workflow, runInline, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';

const executed: Record<string, number> = {};

type LoopInput = { tag: string; i: number; until: number; hold?: boolean };

@Workflow('can-loop', { queue: 'can-children' })
@Injectable()
class Loop {
  async execute(ctx: WorkflowContext<LoopInput>) {
    const { tag, i, until } = ctx.input;
    await ctx.step.run('work', () => {
      executed[tag] = (executed[tag] ?? 0) + 1;
      return i;
    });
    if (ctx.input.hold && i === until) await ctx.step.waitForEvent('release', { event: 'can.release', key: tag });
    if (i < until) {
      try {
        return await ctx.continueAsNew({ ...ctx.input, i: i + 1 });
      } catch {
        // a handler that swallows the signal still continues
        return 'swallowed';
      }
    }
    return { done: i, steps: (await Promise.resolve(ctx.run.id)).length > 0 };
  }
}

@Workflow('can-parent', { queue: 'can-parents', maxAttempts: 1 })
@Injectable()
class Parent {
  async execute(ctx: WorkflowContext<{ child: LoopInput; key?: string }>) {
    return ctx.step.runWorkflow('child', Loop, ctx.input.child, { idempotencyKey: ctx.input.key });
  }
}

const start = (url: string | object, prefix: string): Promise<TestApp> =>
  startApp(
    { connection: url, prefix, queues: { 'can-parents': { partitions: 2 }, 'can-children': { partitions: 3 } }, worker: { concurrency: 20, reaperIntervalMs: 20 } } as never,
    [Loop, Parent],
  );

describe('ctx.continueAsNew (e2e)', () => {
  const suite = useSuiteRedis();
  let app: TestApp;

  it('ends the run as succeeded with continuedAs, starts the next with an empty history; result() follows the chain', async () => {
    app = await start(suite.redis.url, uniquePrefix('can'));
    suite.apps.push(app);
    const handle = await app.client.emit(Loop, { tag: 'a', i: 0, until: 3 });
    expect(await handle.result({ timeoutMs: 20_000 })).toEqual({ done: 3, steps: true });
    expect(executed.a).toBe(4);

    const first = (await app.client.getRun(handle.id))!;
    expect(first.status).toBe('succeeded');
    expect(first.output).toBeUndefined();
    expect(first.continuedAs).toBeDefined();
    // the chain stays in the first run's shard
    expect(first.continuedAs!.split('.').slice(1)).toEqual(handle.id.split('.').slice(1));
    const second = (await app.client.getRun(first.continuedAs!))!;
    expect(second.continuedFrom).toBe(handle.id);
    expect(second.input).toEqual({ tag: 'a', i: 1, until: 3 });
    // each execution holds its own records only
    const steps = await app.client.getRunSteps(second.id);
    expect(steps.map((s) => [s.name, s.result])).toEqual([['work', 1]]);
    const history = await app.client.getRunHistory(handle.id);
    expect(history.map((e) => e.type)).toContain('continued-as-new');
    // a handle of the middle run follows on as well
    expect(await app.client.handle(second.id).result({ timeoutMs: 5_000 })).toEqual({ done: 3, steps: true });
  }, 30_000);

  it('a parent waiting on a child that continues gets the outcome of the chain (other shard and a joined idempotency key)', async () => {
    const [own, joined] = await Promise.all([
      app.client.run(Parent, { child: { tag: 'b', i: 0, until: 2 }, key: 'child-b' }, { timeoutMs: 20_000 }),
      (async () => {
        // a second parent joins the same child by its key after it has continued
        await waitFor(async () => (executed.b ?? 0) >= 2, 10_000);
        return app.client.run(Parent, { child: { tag: 'ignored', i: 0, until: 0 }, key: 'child-b' }, { timeoutMs: 20_000 });
      })(),
    ]);
    expect(own).toEqual({ done: 2, steps: true });
    expect(joined).toEqual({ done: 2, steps: true });
    expect(executed.b).toBe(3);
    expect(executed.ignored).toBeUndefined();
  }, 30_000);

  it('cancelRun of the first run cancels the live run; result() of the first handle rejects with CanceledError', async () => {
    const handle = await app.client.emit(Loop, { tag: 'c', i: 0, until: 2, hold: true });
    await waitFor(async () => (executed.c ?? 0) === 3, 10_000);
    const live = (await app.client.getRun((await app.client.getRun((await app.client.getRun(handle.id))!.continuedAs!))!.continuedAs!))!;
    await waitFor(async () => (await app.client.getRun(live.id))!.status === 'waiting', 10_000);
    expect(await handle.cancel('enough')).toBe(true);
    expect((await app.client.getRun(live.id))!.status).toBe('canceled');
    expect((await app.client.getRun(handle.id))!.status).toBe('succeeded');
    await expect(handle.result({ timeoutMs: 5_000 })).rejects.toBeInstanceOf(CanceledError);
    expect(await handle.cancel()).toBe(false);
  }, 30_000);

  it('an emit with the idempotency key of a continued run returns the first run, whose result follows the chain', async () => {
    const h1 = await app.client.emit(Loop, { tag: 'd', i: 0, until: 2 }, { idempotencyKey: 'loop-d' });
    await h1.result({ timeoutMs: 20_000 });
    const h2 = await app.client.emit(Loop, { tag: 'd2', i: 0, until: 0 }, { idempotencyKey: 'loop-d' });
    expect(h2.id).toBe(h1.id);
    expect(await h2.result({ timeoutMs: 5_000 })).toEqual({ done: 2, steps: true });
    expect(executed.d2).toBeUndefined();
  }, 30_000);

  it('runInline executes the chain', async () => {
    const result = await runInline(new Loop(), { input: { tag: 'inline', i: 0, until: 4 } });
    expect(result.succeeded).toBe(true);
    expect(result.output).toEqual({ done: 4, steps: true });
    expect(result.continuedAsNew).toBe(4);
    expect(result.steps.map((s) => s.result)).toEqual([4]);
  });
});

describe('ctx.continueAsNew on a Redis Cluster (3 primaries)', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('every execution of a chain stays in the first run\'s shard (one slot per call); a parent in another shard gets the outcome', async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await start({ nodes: cluster.nodes }, uniquePrefix('canc'));
    const runs = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => app.client.emit(Loop, { tag: `cl-${k}`, i: 0, until: 3 })));
    const outputs = await Promise.all(runs.map((h) => h.result({ timeoutMs: 20_000 })));
    expect(outputs).toEqual(runs.map(() => ({ done: 3, steps: true })));
    for (const h of runs) {
      let id: string | undefined = h.id;
      while (id) {
        expect(id.split('.').slice(1)).toEqual(h.id.split('.').slice(1));
        id = (await app.client.getRun(id))!.continuedAs;
      }
    }
    expect(await app.client.run(Parent, { child: { tag: 'cl-parent', i: 0, until: 2 } }, { timeoutMs: 20_000 })).toEqual({ done: 2, steps: true });
  }, 90_000);
});
