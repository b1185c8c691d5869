/**
 * The worker's fast paths keep every guarantee: a step's record is in Redis before the next step starts and
 * by the end of the turn in which the workflow got its result; the last step lands with the completion; and
 * a worker with a backlog refills the slot of a completing run in the same call instead of claiming again.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { currentStep, Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { uniquePrefix } from '../support/redis-server.js';
import { monitorCommands } from '../support/redis-monitor.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

const suite = useSuiteRedis();
let stepsKeyOf: (runId: string) => string = () => '';

@Workflow('fp-ordered')
@Injectable()
class OrderedWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const a = await ctx.step.run('a', () => ctx.input.n + 1);
    // Step b looks into Redis: a's record must already be there.
    const aStoredBeforeB = await ctx.step.run('b', async () => (await suite.direct.hexists(stepsKeyOf(ctx.run.id), '0:a')) === 1);
    return { a, aStoredBeforeB };
  }
}

@Workflow('fp-slow-tail')
@Injectable()
class SlowTailWorkflow {
  async execute(ctx: WorkflowContext<{ ms: number }>) {
    const a = await ctx.step.run('a', () => 'done');
    // Code after the last step that waits on something else: the step must not wait for the run to end.
    await new Promise((resolve) => setTimeout(resolve, ctx.input.ms));
    return a;
  }
}

@Workflow('fp-one')
@Injectable()
class OneStepWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('only', () => ctx.input.n * 2);
  }
}

@Workflow('fp-naps')
@Injectable()
class NapWorkflow {
  async execute(ctx: WorkflowContext<{ ms: number }>) {
    await ctx.step.run('before', () => 1);
    await ctx.step.sleep('nap', ctx.input.ms);
    return 'rested';
  }
}

@Workflow('fp-kid')
@Injectable()
class KidWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n * 10;
  }
}

@Workflow('fp-fan')
@Injectable()
class FanWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const kids = await Promise.all([1, 2, 3].map((k) => ctx.step.runWorkflow(`kid-${k}`, KidWorkflow, { n: ctx.input.n + k })));
    return kids;
  }
}

/** The status index of fp-kid runs that succeeded, in the test's own prefix. */
let kidsSucceeded = '';

/** A child waited for beside a step that is still running: the step looks for the child's outcome. */
@Workflow('fp-kid-beside-step')
@Injectable()
class KidBesideStepWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const [kid, kidDoneFirst] = await Promise.all([
      ctx.step.runWorkflow('kid', KidWorkflow, { n: ctx.input.n }),
      ctx.step.run('watch', async () => {
        for (const deadline = Date.now() + 5_000; Date.now() < deadline; ) {
          if ((await suite.direct.zcard(kidsSucceeded)) > 0) return true;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return false;
      }),
    ]);
    return { kid, kidDoneFirst };
  }
}

@Workflow('fp-sleepy-kid')
@Injectable()
class SleepyKidWorkflow {
  async execute(ctx: WorkflowContext<{ ms: number }>) {
    await ctx.step.sleep('nap', ctx.input.ms);
    return 'kid done';
  }
}

/** Waits for a child (created by its park) at most `timeoutMs`. */
@Workflow('fp-impatient', { maxAttempts: 1 })
@Injectable()
class ImpatientWorkflow {
  async execute(ctx: WorkflowContext<{ timeoutMs: number; kidMs: number }>) {
    try {
      return await ctx.step.runWorkflow('kid', SleepyKidWorkflow, { ms: ctx.input.kidMs }, { timeoutMs: ctx.input.timeoutMs });
    } catch (error) {
      return `${(error as Error).name}: ${(error as Error).message}`;
    }
  }
}

const syncThrows = new Map<string, number>();

/** The shapes a step function comes in, each through the step path without async/await. */
@Workflow('fp-step-shapes', { maxAttempts: 1 })
@Injectable()
class StepShapesWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const id = ctx.run.id;
    // Throws synchronously on its first attempt: retried like a rejection.
    const retried = await ctx.step.run(
      'sync-throw',
      () => {
        const seen = (syncThrows.get(id) ?? 0) + 1;
        syncThrows.set(id, seen);
        if (seen === 1) throw new Error('first attempt fails');
        return seen;
      },
      { retries: 1 },
    );
    // A thenable that is not a native promise.
    const thenable = await ctx.step.run('thenable', () => ({ then: (resolve: (v: number) => void) => resolve(ctx.input.n * 10) }) as unknown as Promise<number>);
    // The step's context, read synchronously and after an await.
    const syncKey = await ctx.step.run('sync-key', () => currentStep()?.idempotencyKey);
    const asyncKey = await ctx.step.run('async-key', async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return currentStep()?.idempotencyKey;
    });
    // Two steps in one turn: both deferred, both committed.
    const [left, right] = await Promise.all([ctx.step.run('left', () => 'l'), ctx.step.run('right', async () => 'r')]);
    return { retried, thenable, syncKey, asyncKey, left, right };
  }
}

async function monitorFcalls(url: string, during: () => Promise<void>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { source, args } of await monitorCommands(url, during)) {
    if (source !== 'lua' && /^fcall$/i.test(args[0])) counts[args[1]] = (counts[args[1]] ?? 0) + 1;
  }
  return counts;
}

describe('worker fast paths (e2e, private redis-server)', () => {
  it("commits a step before the next one starts, and the last step with the run's completion", async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_order'), worker: { concurrency: 4 } }, [OrderedWorkflow]);
    suite.apps.push(app);
    const keys = app.moduleRef.get(WorkflowRedis).keys;
    stepsKeyOf = (runId) => keys.steps(keys.shardRoot({ queue: 'default', partition: 0 }), runId);
    let id = '';
    const fcalls = await monitorFcalls(suite.redis.url, async () => {
      const handle = await app.client.emit(OrderedWorkflow, { n: 1 });
      id = handle.id;
      expect(await handle.result({ timeoutMs: 10_000 })).toEqual({ a: 2, aStoredBeforeB: true });
    });
    // a: its own commit (before b started); b: with the completion.
    expect(fcalls.wf1_commit_step).toBe(1);
    expect(fcalls.wf1_complete).toBe(1);
    expect((await app.client.getRunSteps(id)).map((s) => [s.name, s.status, s.result])).toEqual([
      ['a', 'succeeded', 2],
      ['b', 'succeeded', true],
    ]);
  });

  it('commits a step by the end of the turn when the run goes on waiting for something that is not a step', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_tail'), worker: { concurrency: 4 } }, [SlowTailWorkflow]);
    suite.apps.push(app);
    const handle = await app.client.emit(SlowTailWorkflow, { ms: 1_500 });
    await waitFor(async () => (await app.client.getRunSteps(handle.id)).some((s) => s.name === 'a' && s.status === 'succeeded'), 1_000, 10);
    expect((await handle.getState()).status).toBe('running');
    expect(await handle.result({ timeoutMs: 10_000 })).toBe('done');
  });

  it('a worker with a backlog refills the slot of a completing run in the same call, not with a claim per run', async () => {
    const prefix = uniquePrefix('fp_refill');
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [OneStepWorkflow]);
    suite.apps.push(producer);
    const handles = await Promise.all(Array.from({ length: 40 }, (_, n) => producer.client.emit(OneStepWorkflow, { n })));
    let worker: TestApp | undefined;
    const fcalls = await monitorFcalls(suite.redis.url, async () => {
      worker = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 2, reaperIntervalMs: 20 } }, [OneStepWorkflow]);
      suite.apps.push(worker);
      const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 })));
      expect(results).toEqual(Array.from({ length: 40 }, (_, n) => n * 2));
    });
    process.stdout.write(`refill: 40 queued one-step runs, concurrency 2: FCALLs ${JSON.stringify(fcalls)}\n`);
    expect(fcalls.wf1_complete).toBe(40);
    // Without the refill every run needs its own claim (40); with it, the first claim and the claims
    // that housekeeping ticks make as a safety net.
    expect(fcalls.wf1_claim).toBeLessThanOrEqual(8);
    expect(fcalls.wf1_commit_step ?? 0).toBe(0);
    for (const h of handles.slice(0, 5)) {
      expect((await producer.client.getRunHistory(h.id)).filter((e) => e.type === 'claimed')).toHaveLength(1);
    }
  });

  it('a run that is only created, claimed once and succeeds writes no history list; its history reads the same', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_hist'), worker: { concurrency: 2 } }, [OneStepWorkflow, NapWorkflow]);
    suite.apps.push(app);
    const keys = app.moduleRef.get(WorkflowRedis).keys;
    const root = keys.shardRoot({ queue: 'default', partition: 0 });

    const plain = await app.client.emit(OneStepWorkflow, { n: 4 });
    expect(await plain.result({ timeoutMs: 10_000 })).toBe(8);
    expect(await suite.direct.exists(keys.history(root, plain.id))).toBe(0);
    const run = (await app.client.getRun(plain.id))!;
    const history = await app.client.getRunHistory(plain.id);
    expect(history.map((e) => e.type)).toEqual(['created', 'claimed', 'step-succeeded', 'succeeded']);
    expect(history[0]).toMatchObject({ at: run.createdAt, data: { status: 'queued' } });
    expect(history[1]).toMatchObject({ at: run.startedAt, attempt: 1, workerId: run.workerId });
    expect(history[3]).toMatchObject({ at: run.finishedAt });

    // A run that goes on to something else writes the implied entries first, with their own times.
    const napping = await app.client.emit(NapWorkflow, { ms: 300 });
    await waitFor(async () => (await napping.getState()).status === 'waiting', 5_000, 10);
    expect(await suite.direct.lrange(keys.history(root, napping.id), 0, -1)).toHaveLength(3);
    expect(await napping.result({ timeoutMs: 10_000 })).toBe('rested');
    const napped = await app.client.getRunHistory(napping.id);
    const started = (await app.client.getRun(napping.id))!;
    expect(napped.filter((e) => e.type !== 'step-succeeded').map((e) => e.type)).toEqual(['created', 'claimed', 'parked', 'woken', 'claimed', 'succeeded']);
    expect(napped[0]).toMatchObject({ at: started.createdAt });
    expect(napped.filter((e) => e.type === 'claimed')[0]).toMatchObject({ at: started.startedAt, attempt: 1 });
  });

  it('steps that return a value, throw synchronously, return a thenable or read currentStep() after an await behave as async ones', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_shapes'), worker: { concurrency: 8 } }, [StepShapesWorkflow]);
    suite.apps.push(app);
    // Several runs at once, so that one end-of-turn flush serves several executions.
    const handles = await Promise.all(Array.from({ length: 6 }, (_, n) => app.client.emit(StepShapesWorkflow, { n })));
    for (const [n, handle] of handles.entries()) {
      expect(await handle.result({ timeoutMs: 10_000 })).toEqual({
        retried: 2,
        thenable: n * 10,
        syncKey: `${handle.id}:0:sync-key`,
        asyncKey: `${handle.id}:0:async-key`,
        left: 'l',
        right: 'r',
      });
      const steps = await app.client.getRunSteps(handle.id);
      expect(steps.map((s) => [s.name, s.status, s.attempts])).toEqual([
        ['sync-throw', 'succeeded', 2],
        ['thenable', 'succeeded', 1],
        ['sync-key', 'succeeded', 1],
        ['async-key', 'succeeded', 1],
        ['left', 'succeeded', 1],
        ['right', 'succeeded', 1],
      ]);
    }
  });

  it('a parent creates its children in its own shard with the call that parks it', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_fan'), worker: { concurrency: 8 } }, [FanWorkflow, KidWorkflow]);
    suite.apps.push(app);
    let id = '';
    const seen = await monitorCommands(suite.redis.url, async () => {
      const handle = await app.client.emit(FanWorkflow, { n: 1 });
      id = handle.id;
      expect(await handle.result({ timeoutMs: 10_000 })).toEqual([20, 30, 40]);
    });
    const fcalls = seen.filter((c) => c.source !== 'lua' && /^fcall$/i.test(c.args[0]));
    // One emit (the parent's); the park carries the three children.
    expect(fcalls.filter((c) => c.args[1] === 'wf1_emit')).toHaveLength(1);
    const parks = fcalls.filter((c) => c.args[1] === 'wf1_park');
    expect(parks).toHaveLength(1);
    expect(parks[0].args.filter((arg) => arg === 'spawn')).toHaveLength(3);
    const children = await app.client.listRuns({ parentId: id });
    expect(children.runs.map((run) => [run.workflow, run.status, run.parentId])).toEqual(Array(3).fill(['fp-kid', 'succeeded', id]));
  });

  it('a child waited for beside a step still running starts at once, not when the run parks', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_beside'), worker: { concurrency: 4 } }, [KidBesideStepWorkflow, KidWorkflow]);
    suite.apps.push(app);
    const keys = app.moduleRef.get(WorkflowRedis).keys;
    kidsSucceeded = keys.statusIndex(keys.shardRoot({ queue: 'default', partition: 0 }), 'fp-kid', 'succeeded');
    const handle = await app.client.emit(KidBesideStepWorkflow, { n: 4 });
    expect(await handle.result({ timeoutMs: 15_000 })).toEqual({ kid: 40, kidDoneFirst: true });
  });

  it("a child created by the parent's park and waited for with timeoutMs times the wait out; the child fails at its own deadline", async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('fp_impatient'), worker: { concurrency: 4, reaperIntervalMs: 50 } }, [
      ImpatientWorkflow,
      SleepyKidWorkflow,
    ]);
    suite.apps.push(app);
    const handle = await app.client.emit(ImpatientWorkflow, { timeoutMs: 300, kidMs: 1_500 });
    expect(await handle.result({ timeoutMs: 10_000 })).toBe("TimeoutError: Child workflow 'kid' did not finish within 300 ms.");
    const [kid] = (await app.client.listRuns({ parentId: handle.id })).runs;
    expect(kid.status).not.toBe('succeeded');
    // timeoutMs is the child's own deadline too (issue 31): it fails at it instead of going on
    await expect(app.client.handle(kid.id).result({ timeoutMs: 10_000 })).rejects.toThrow('The run passed its whole-run deadline');
    // A child that finishes within the time: its output.
    expect(await app.client.run(ImpatientWorkflow, { timeoutMs: 5_000, kidMs: 50 }, { timeoutMs: 10_000 })).toBe('kid done');
  });
});
