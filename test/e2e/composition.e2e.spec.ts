import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import {
  CanceledError,
  ChildWorkflowError,
  NonDeterminismError,
  NonRetriableError,
  OnFailure,
  Workflow,
  type OnFailureContext,
  type WorkflowContext,
} from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

let counters: Redis;
const key = uniquePrefix('composition');
const bump = (name: string) => counters.hincrby(key, name, 1);
const count = async (name: string) => Number((await counters.hget(key, name)) ?? 0);

@Workflow('double', { queue: 'children' })
@Injectable()
class DoubleWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; fail?: boolean; delayMs?: number }>) {
    await bump(`double:${ctx.run.parentId}:${ctx.input.n}`);
    if (ctx.input.delayMs) await new Promise((resolve) => setTimeout(resolve, ctx.input.delayMs));
    if (ctx.input.fail) throw new NonRetriableError(`child ${ctx.input.n} refuses`);
    return ctx.input.n * 2;
  }
}

@Workflow('sum-of-doubles')
@Injectable()
class SumWorkflow {
  async execute(ctx: WorkflowContext<{ ns: number[]; failAt?: number }>) {
    await bump(`sum-executions:${ctx.run.id}`);
    const doubled = await Promise.all(
      ctx.input.ns.map((n) => ctx.step.runWorkflow(`double-${n}`, DoubleWorkflow, { n, fail: n === ctx.input.failAt })),
    );
    return doubled.reduce((a, b) => a + b, 0);
  }
}

@Workflow('catches-child')
@Injectable()
class CatchesChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    try {
      await ctx.step.runWorkflow('failing-child', 'double', { n: ctx.input.n, fail: true });
      return 'not reached';
    } catch (error) {
      return { caught: error instanceof ChildWorkflowError, message: (error as Error).message, cause: ((error as Error).cause as Error)?.message };
    }
  }
}

@Workflow('approval')
@Injectable()
class ApprovalWorkflow {
  async execute(ctx: WorkflowContext<{ orderId: string; timeoutMs?: number; twice?: boolean }>) {
    const first = await ctx.step.waitForEvent<{ by: string }>('approval', {
      event: 'order.approved',
      key: ctx.input.orderId,
      timeoutMs: ctx.input.timeoutMs,
    });
    if (!ctx.input.twice) return { first };
    const second = await ctx.step.waitForEvent<{ by: string }>('approval-2', { event: 'order.approved', key: ctx.input.orderId });
    return { first, second };
  }
}

@Workflow('saga', { maxAttempts: 1 })
@Injectable()
class SagaWorkflow {
  async execute(ctx: WorkflowContext<{ id: string; failAtEnd?: boolean; waitForCancel?: boolean }>) {
    const id = ctx.input.id;
    await ctx.step.run('reserve', async (s) => {
      await bump(`reserve:${id}`);
      await counters.hset(key, `reserve-key:${id}:${await count(`reserve:${id}`)}`, s.idempotencyKey);
      return 'reserved';
    }, { compensate: async () => { await counters.rpush(`${key}:order:${id}`, 'release'); } });
    await ctx.step.run('charge', () => bump(`charge:${id}`), {
      compensate: async () => { await counters.rpush(`${key}:order:${id}`, 'refund'); },
    });
    if (ctx.input.waitForCancel) await ctx.step.sleep('wait', 60_000);
    if (ctx.input.failAtEnd && (await counters.hget(key, `fix:${id}`)) !== '1') throw new Error('shipping failed');
    return 'shipped';
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<{ id: string }>) {
    await counters.rpush(`${key}:order:${ctx.input.id}`, `onFailure:${ctx.error.name}`);
  }
}

@Workflow('long-running')
@Injectable()
class LongRunningWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    await ctx.step.run('long', async (s) => {
      await bump(`long-started:${ctx.input.id}`);
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, 30_000);
        s.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          void counters.hset(key, `long-aborted:${ctx.input.id}`, String(Date.now()));
          reject(s.signal.reason);
        });
      });
    });
    return 'finished';
  }
}

@Workflow('hooked-sleeper')
@Injectable()
class HookedSleeperWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    await ctx.step.sleep('long', 60_000);
    return 'woke';
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<{ id: string }>) {
    await counters.rpush(`${key}:hook:${ctx.input.id}`, `${ctx.error.name}:${ctx.error.message}`);
  }
}

@Workflow('thousand')
@Injectable()
class ThousandChildrenWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const doubled = await Promise.all(Array.from({ length: ctx.input.n }, (_, i) => ctx.step.runWorkflow(`c-${i}`, DoubleWorkflow, { n: i })));
    return doubled.reduce((a, b) => a + b, 0);
  }
}

@Workflow('sleep-beside-step')
@Injectable()
class SleepBesideStepWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    const [slow] = await Promise.all([
      ctx.step.run('slow', async () => {
        await bump(`slow:${ctx.input.id}`);
        await new Promise((resolve) => setTimeout(resolve, 300));
        return 'slow done';
      }),
      ctx.step.sleep('short', 50),
    ]);
    return slow;
  }
}

@Workflow('tree-leaf', { queue: 'children' })
@Injectable()
class LeafWorkflow {
  async execute(ctx: WorkflowContext<{ path: string; sleepMs?: number }>) {
    await bump(`leaf:${ctx.input.path}`);
    if (ctx.input.sleepMs) await ctx.step.sleep('rest', ctx.input.sleepMs);
    return 1;
  }
}

@Workflow('tree-middle')
@Injectable()
class MiddleWorkflow {
  async execute(ctx: WorkflowContext<{ path: string; sleepMs?: number }>) {
    await ctx.step.run('count', () => bump(`middle:${ctx.input.path}`));
    const leaves = await Promise.all(
      Array.from({ length: 10 }, (_, i) => ctx.step.runWorkflow(`leaf-${i}`, LeafWorkflow, { path: `${ctx.input.path}.${i}`, sleepMs: ctx.input.sleepMs })),
    );
    return leaves.reduce((a, b) => a + b, 0);
  }
}

@Workflow('tree-root')
@Injectable()
class RootWorkflow {
  async execute(ctx: WorkflowContext<{ sleepMs?: number; tag?: string }>) {
    const counts = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        ctx.step.runWorkflow(`middle-${i}`, MiddleWorkflow, { path: `${ctx.input.tag ?? ''}${i}`, sleepMs: ctx.input.sleepMs }),
      ),
    );
    return counts.reduce((a, b) => a + b, 0);
  }
}

let childChoice = 'double';
@Workflow('switches-child', { maxAttempts: 2, backoff: { type: 'fixed', delayMs: 1_000 } })
@Injectable()
class SwitchesChildWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    await ctx.step.runWorkflow('the-child', childChoice, childChoice === 'double' ? { n: 1 } : { path: 'x' });
    if (ctx.run.attempt === 1) throw new Error('fail the first attempt');
    return 'done';
  }
}

@Workflow('emits-child')
@Injectable()
class EmitsChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const id = await ctx.step.emitWorkflow('fire', DoubleWorkflow, { n: ctx.input.n });
    await ctx.step.run('after', () => bump(`emits-after:${ctx.run.id}`));
    return id;
  }
}

describe('composition: children, fan-out/fan-in, events, cancellation, sagas (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    counters = redisFor(redis.url);
    app = await startApp(
      { connection: redis.url, prefix: uniquePrefix('comp'), worker: { concurrency: 50, reaperIntervalMs: 20 } },
      [DoubleWorkflow, SumWorkflow, CatchesChildWorkflow, ApprovalWorkflow, SagaWorkflow, LongRunningWorkflow, LeafWorkflow, MiddleWorkflow, RootWorkflow, SwitchesChildWorkflow, EmitsChildWorkflow, HookedSleeperWorkflow, ThousandChildrenWorkflow, SleepBesideStepWorkflow],
    );
  });

  afterAll(async () => {
    await app?.close();
    counters?.disconnect();
    await redis?.stop();
  });

  it('fans out to children on another queue and is woken once when all have finished', async () => {
    const handle = await app.client.emit(SumWorkflow, { ns: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });
    expect(await handle.result({ timeoutMs: 15_000 })).toBe(110);
    for (let n = 1; n <= 10; n += 1) expect(await count(`double:${handle.id}:${n}`)).toBe(1);
    const history = await app.client.getRunHistory(handle.id);
    const wakeUps = history.filter((e) => e.type === 'woken' || e.type === 'resumed');
    expect(wakeUps.length).toBeLessThanOrEqual(1);
    // executed at most twice: once to start the children, once after the fan-in
    expect(await count(`sum-executions:${handle.id}`)).toBeLessThanOrEqual(2);
    const steps = await app.client.getRunSteps(handle.id);
    expect(steps).toHaveLength(10);
    expect(steps.every((s) => s.kind === 'child' && s.status === 'succeeded')).toBe(true);
  });

  it('fans out to 1,000 children and fans in once', async () => {
    const handle = await app.client.emit(ThousandChildrenWorkflow, { n: 1000 });
    expect(await handle.result({ timeoutMs: 60_000 })).toBe(999 * 1000);
    const history = await app.client.getRunHistory(handle.id);
    expect(history.filter((e) => e.type === 'parked')).toHaveLength(1);
    expect(history.filter((e) => e.type === 'woken' || e.type === 'resumed').length).toBeLessThanOrEqual(1);
    expect((await app.client.listRuns({ parentId: handle.id, limit: 1000 })).runs).toHaveLength(1000);
  }, 90_000);

  it('parks only once no step of the run is in flight', async () => {
    const handle = await app.client.emit(SleepBesideStepWorkflow, { id: 'p1' });
    expect(await handle.result({ timeoutMs: 10_000 })).toBe('slow done');
    expect(await count('slow:p1')).toBe(1);
    const types = (await app.client.getRunHistory(handle.id)).map((e) => e.type);
    // the slow step committed before the run parked for the sleep
    expect(types.indexOf('step-succeeded')).toBeLessThan(types.indexOf('parked'));
  });

  it('rejects Promise.all with ChildWorkflowError as soon as one child fails', async () => {
    const handle = await app.client.emit(SumWorkflow, { ns: [1, 2, 3], failAt: 2 });
    const error = await handle.result({ timeoutMs: 15_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(ChildWorkflowError);
    expect(error.message).toContain('child 2 refuses');
  });

  it('lets the parent catch a failed child, with the child error as cause', async () => {
    const output = await app.client.run(CatchesChildWorkflow, { n: 7 }, { timeoutMs: 15_000 });
    expect(output).toEqual({ caught: true, message: expect.stringContaining('child 7 refuses'), cause: 'child 7 refuses' });
  });

  it('emitWorkflow starts a child once and returns its id at once', async () => {
    const handle = await app.client.emit(EmitsChildWorkflow, { n: 21 });
    const childId = (await handle.result({ timeoutMs: 15_000 })) as string;
    expect(await app.client.handle(childId).result({ timeoutMs: 15_000 })).toBe(42);
    expect((await app.client.getRun(childId))?.parentId).toBe(handle.id);
  });

  it('completes a 3-level tree (1 → 10 → 100) with every run exactly once', async () => {
    const total = await app.client.run(RootWorkflow, {}, { timeoutMs: 30_000 });
    expect(total).toBe(100);
    for (let i = 0; i < 10; i += 1) {
      expect(await count(`middle:${i}`)).toBe(1);
      for (let j = 0; j < 10; j += 1) expect(await count(`leaf:${i}.${j}`)).toBe(1);
    }
  });

  it('cancels a whole tree of 111 runs when the root is canceled', async () => {
    const root = await app.client.emit(RootWorkflow, { sleepMs: 60_000, tag: 'c' });
    await waitFor(async () => (await counters.hkeys(key)).filter((k) => k.startsWith('leaf:c')).length === 100, 20_000);
    expect(await app.client.cancelRun(root.id, { reason: 'test' })).toBe(true);
    await expect(root.result({ timeoutMs: 5_000 })).rejects.toBeInstanceOf(CanceledError);
    const statuses: string[] = [];
    const pending = [root.id];
    while (pending.length > 0) {
      const id = pending.pop()!;
      statuses.push((await app.client.getRun(id))!.status);
      for (const step of await app.client.getRunSteps(id)) if (step.childRunId) pending.push(step.childRunId);
    }
    expect(statuses).toHaveLength(111);
    expect(statuses.every((s) => s === 'canceled')).toBe(true);
  });

  it('waitForEvent parks the run, and sendEvent wakes it with the payload', async () => {
    const handle = await app.client.emit(ApprovalWorkflow, { orderId: 'o-1' });
    await waitFor(async () => (await handle.getState()).status === 'waiting');
    expect((await handle.getState()).waitingFor).toEqual({ events: [{ event: 'order.approved', key: 'o-1' }] });
    expect(await app.client.sendEvent('order.approved', { by: 'alice' }, { key: 'o-2' })).toBe(0);
    expect(await app.client.sendEvent('order.approved', { by: 'bob' }, { key: 'o-1' })).toBe(1);
    expect(await handle.result({ timeoutMs: 10_000 })).toEqual({ first: { by: 'bob' } });
  });

  it('waitForEvent resolves to null on timeout', async () => {
    const output = await app.client.run(ApprovalWorkflow, { orderId: 'o-timeout', timeoutMs: 200 }, { timeoutMs: 10_000 });
    expect(output).toEqual({ first: null });
  });

  it('does not miss an event sent while the run is on its way to the wait (raced many times)', async () => {
    const handles = await Promise.all(Array.from({ length: 40 }, (_, i) => app.client.emit(ApprovalWorkflow, { orderId: `race-${i}`, twice: true })));
    // Send at once, racing the runs to their first wait; then the second event after a pause.
    await Promise.all(handles.map((_, i) => app.client.sendEvent('order.approved', { by: `first-${i}` }, { key: `race-${i}` })));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await Promise.all(handles.map((_, i) => app.client.sendEvent('order.approved', { by: `second-${i}` }, { key: `race-${i}` })));
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 })));
    outputs.forEach((output, i) => expect(output).toEqual({ first: { by: `first-${i}` }, second: { by: `second-${i}` } }));
  });

  it('cancels a run without compensations at once and aborts its worker within a second', async () => {
    const handle = await app.client.emit(LongRunningWorkflow, { id: 'c1' });
    await waitFor(async () => (await count('long-started:c1')) === 1);
    const before = Date.now();
    expect(await handle.cancel('no longer needed')).toBe(true);
    expect((await handle.getState()).status).toBe('canceled');
    await waitFor(async () => (await counters.hget(key, 'long-aborted:c1')) !== null, 2_000);
    expect(Number(await counters.hget(key, 'long-aborted:c1')) - before).toBeLessThan(1_000);
    const error = await handle.result({ timeoutMs: 5_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(CanceledError);
    expect(error.message).toContain('no longer needed');
    expect(await handle.cancel()).toBe(false);
  });

  it('a run without compensations is canceled at once, and its @OnFailure still runs once with a CanceledError', async () => {
    const handle = await app.client.emit(HookedSleeperWorkflow, { id: 'h1' });
    await waitFor(async () => (await handle.getState()).status === 'waiting');
    expect(await app.client.cancelRun(handle.id, { reason: 'user left' })).toBe(true);
    expect((await handle.getState()).status).toBe('canceled');
    await waitFor(async () => (await app.client.getRunHistory(handle.id)).some((e) => e.type === 'on-failure-ran'), 5_000);
    expect(await counters.lrange(`${key}:hook:h1`, 0, -1)).toEqual(['CanceledError:The run was canceled: user left']);
    expect((await handle.getState()).status).toBe('canceled');
    expect(await handle.cancel()).toBe(false);
  });

  it('runs compensations in reverse order, then @OnFailure, when a saga fails', async () => {
    const handle = await app.client.emit(SagaWorkflow, { id: 's1', failAtEnd: true });
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('shipping failed');
    expect(await counters.lrange(`${key}:order:s1`, 0, -1)).toEqual(['refund', 'release', 'onFailure:Error']);
    const steps = await app.client.getRunSteps(handle.id);
    expect(steps.map((s) => [s.name, s.status])).toEqual([['reserve', 'compensated'], ['charge', 'compensated']]);
    const history = (await app.client.getRunHistory(handle.id)).map((e) => e.type);
    expect(history).toContain('compensating');
  });

  it('a canceled saga goes through compensating, then is canceled with CanceledError in @OnFailure', async () => {
    const handle = await app.client.emit(SagaWorkflow, { id: 's2', waitForCancel: true });
    await waitFor(async () => (await handle.getState()).status === 'waiting');
    expect(await app.client.cancelRun(handle.id)).toBe(true);
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(CanceledError);
    expect(await counters.lrange(`${key}:order:s2`, 0, -1)).toEqual(['refund', 'release', 'onFailure:CanceledError']);
    expect((await app.client.getRunHistory(handle.id)).map((e) => e.type)).toContain('canceling');
  });

  it('retryRun runs a failed saga again: compensated steps run again with a new idempotency key', async () => {
    const handle = await app.client.emit(SagaWorkflow, { id: 's3', failAtEnd: true });
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('shipping failed');
    await counters.hset(key, 'fix:s3', '1');
    const again = await app.client.retryRun(handle.id);
    expect(again.id).toBe(handle.id);
    expect(await again.result({ timeoutMs: 10_000 })).toBe('shipped');
    expect(await count('reserve:s3')).toBe(2);
    const firstKey = await counters.hget(key, 'reserve-key:s3:1');
    const secondKey = await counters.hget(key, 'reserve-key:s3:2');
    expect(firstKey).toBe(`${handle.id}:0:reserve`);
    expect(secondKey).toBe(`${handle.id}:0:reserve:1`);
    const run = await app.client.getRun(handle.id);
    expect(run).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect((await app.client.getRunHistory(handle.id)).map((e) => e.type)).toContain('retried');
    await expect(app.client.retryRun(handle.id)).rejects.toThrow('only failed or canceled runs can be retried');
  });

  it('fails with NonDeterminismError when a replay asks for a different child under a recorded step name', async () => {
    childChoice = 'double';
    const handle = await app.client.emit(SwitchesChildWorkflow, { id: 'nd' });
    await waitFor(async () => (await app.client.getRunHistory(handle.id)).some((e) => e.type === 'retrying'), 10_000);
    childChoice = 'tree-leaf';
    const error = await handle.result({ timeoutMs: 10_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect(error.message).toContain('child:double');
  });
});
