import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import {
  ChildWorkflowError,
  InvalidArgumentError,
  NonRetriableError,
  RunNotFoundError,
  Workflow,
  type ChildOutcome,
  type WorkflowContext,
  type WorkflowModuleOptions,
} from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { Redis } from 'ioredis';
import { fcallProfile, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

/**
 * Composition, part two (issue 31, items 2-6), each on one Redis and on a 3-primary cluster: waitForAny,
 * sendEvent's id, runWorkflow's onFailure 'continue', setEvent/getEvent, child deadlines.
 */

/** Handler executions, by run id and label. */
const executions = new Map<string, number>();
const bump = (label: string) => executions.set(label, (executions.get(label) ?? 0) + 1);

@Workflow('c2-child', { queue: 'c2-children' })
@Injectable()
class ChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; fail?: boolean; delayMs?: number }>) {
    if (ctx.input.delayMs) await ctx.step.sleep('wait', ctx.input.delayMs);
    if (ctx.input.fail) throw new NonRetriableError(`child ${ctx.input.n} refuses`);
    return ctx.input.n * 2;
  }
}

@Workflow('c2-settled')
@Injectable()
class SettledWorkflow {
  async execute(ctx: WorkflowContext<{ ns: number[]; failAt: number[]; policy: 'fail' | 'continue' }>) {
    bump(`settled:${ctx.run.id}`);
    if (ctx.input.policy === 'fail') {
      try {
        await Promise.all(ctx.input.ns.map((n) => ctx.step.runWorkflow(`c-${n}`, ChildWorkflow, { n, fail: ctx.input.failAt.includes(n), delayMs: n * 40 })));
        return 'all succeeded';
      } catch (error) {
        return { rejected: error instanceof ChildWorkflowError };
      }
    }
    const outcomes: ChildOutcome<number>[] = await Promise.all(
      ctx.input.ns.map((n) =>
        ctx.step.runWorkflow(`c-${n}`, ChildWorkflow, { n, fail: ctx.input.failAt.includes(n), delayMs: n * 40 }, { onFailure: 'continue' }),
      ),
    );
    return outcomes.map((o) => (o.status === 'succeeded' ? { ok: o.output } : { failed: o.error instanceof ChildWorkflowError, message: o.error.message }));
  }
}

@Workflow('c2-two-events')
@Injectable()
class TwoEventsWorkflow {
  async execute(ctx: WorkflowContext<{ key: string; secondTimeoutMs?: number }>) {
    const first = await ctx.step.waitForEvent('first', { event: 'c2.paid', key: ctx.input.key });
    const second = await ctx.step.waitForEvent('second', { event: 'c2.paid', key: ctx.input.key, timeoutMs: ctx.input.secondTimeoutMs ?? 1_500 });
    return { first, second };
  }
}

@Workflow('c2-race')
@Injectable()
class RaceWorkflow {
  async execute(ctx: WorkflowContext<{ childDelayMs: number; childFails?: boolean; sleepMs: number; preSleepMs?: number; key: string }>) {
    const childId = await ctx.step.emitWorkflow('spawn', ChildWorkflow, { n: 5, delayMs: ctx.input.childDelayMs, fail: ctx.input.childFails });
    if (ctx.input.preSleepMs) await ctx.step.sleep('before', ctx.input.preSleepMs);
    const first = await ctx.step.waitForAny('first', [{ runId: childId }, { event: 'c2.go', key: ctx.input.key }, { sleepMs: ctx.input.sleepMs }]);
    bump(`race-after:${ctx.run.id}`);
    // a park after the race: the replay that follows must resolve the race as the first execution did
    await ctx.step.sleep('after', 300);
    return { ...first, childId };
  }
}

@Workflow('c2-bad-race')
@Injectable()
class BadRaceWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.step.waitForAny('bad', [{ sleepMs: 1, event: 'x' } as never]);
  }
}

@Workflow('c2-publisher')
@Injectable()
class PublisherWorkflow {
  async execute(ctx: WorkflowContext<{ key: string; bytes?: number }>) {
    bump(`publisher:${ctx.run.id}`);
    // differs on every execution: a replay that published again would overwrite what readers saw
    await ctx.setEvent('execution', executions.get(`publisher:${ctx.run.id}`));
    await ctx.setEvent('status', { stage: 'waiting' });
    if (ctx.input.bytes) await ctx.setEvent('big', 'x'.repeat(ctx.input.bytes));
    const go = await ctx.step.waitForEvent<{ answer: number }>('go', { event: 'c2.publish', key: ctx.input.key });
    await ctx.setEvent('status', { stage: 'done', answer: go?.answer });
    await ctx.setEvent('answer', go?.answer);
    await ctx.step.sleep('after', 100);
    return 'published';
  }
}

/** In the one-partition queue of its parent: created by the parent's park (the in-shard path). */
@Workflow('c2-solo-kid', { queue: 'c2-solo' })
@Injectable()
class SoloKidWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; delayMs?: number }>) {
    if (ctx.input.delayMs) await ctx.step.sleep('wait', ctx.input.delayMs);
    return ctx.input.n * 2;
  }
}

type DeadlineInput = { solo?: boolean; timeoutMs?: number; inherit?: boolean; childMs: number };

async function runKid(ctx: WorkflowContext<DeadlineInput>): Promise<unknown> {
  const opts = { timeoutMs: ctx.input.timeoutMs, inheritDeadline: ctx.input.inherit };
  try {
    return ctx.input.solo
      ? await ctx.step.runWorkflow('kid', SoloKidWorkflow, { n: 1, delayMs: ctx.input.childMs }, opts)
      : await ctx.step.runWorkflow('kid', ChildWorkflow, { n: 1, delayMs: ctx.input.childMs }, opts);
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
}

@Workflow('c2-deadline-parent', { queue: 'c2-solo' })
@Injectable()
class DeadlineParentWorkflow {
  execute(ctx: WorkflowContext<DeadlineInput>) {
    return runKid(ctx);
  }
}

/** A parent with a whole-run deadline of its own, for inheritDeadline. */
@Workflow('c2-hurried-parent', { queue: 'c2-solo', timeoutMs: 700, maxAttempts: 1 })
@Injectable()
class HurriedParentWorkflow {
  execute(ctx: WorkflowContext<DeadlineInput>) {
    return runKid(ctx);
  }
}

/** A race of the most waits waitForAny takes: one run, 30 events, one sleep. */
@Workflow('c2-wide-race')
@Injectable()
class WideRaceWorkflow {
  async execute(ctx: WorkflowContext<{ key: string }>) {
    const kid = await ctx.step.emitWorkflow('kid', ChildWorkflow, { n: 3, delayMs: 300 });
    const events = Array.from({ length: 30 }, (_, i) => ({ event: 'c2.wide', key: `${ctx.input.key}:${i}` }));
    return ctx.step.waitForAny('wide', [{ runId: kid }, ...events, { sleepMs: 30_000 }]);
  }
}

const WORKFLOWS = [
  WideRaceWorkflow,
  ChildWorkflow,
  SettledWorkflow,
  TwoEventsWorkflow,
  RaceWorkflow,
  BadRaceWorkflow,
  PublisherWorkflow,
  SoloKidWorkflow,
  DeadlineParentWorkflow,
  HurriedParentWorkflow,
];

function compositionSuite(label: string, connect: () => Promise<{ connection: WorkflowModuleOptions['connection']; stop(): Promise<void> }>) {
  describe(label, () => {
    let app: TestApp;
    let stop: () => Promise<void>;

    let connection: unknown;

    beforeAll(async () => {
      const target = await connect();
      stop = target.stop;
      connection = target.connection;
      app = await startApp(
        {
          connection: target.connection,
          prefix: uniquePrefix('c2'),
          queues: { default: { partitions: 2 }, 'c2-children': { partitions: 3 }, 'c2-solo': { partitions: 1 } },
          worker: { concurrency: 40, reaperIntervalMs: 20 },
          shutdownGraceMs: 100,
          // cold replays: the counts of handler executions below prove what a replay does (a warm worker
          // resumes the suspended handler instead; its path is the last test of the waitForAny block)
          executionCache: false,
        } as never,
        WORKFLOWS,
      );
    }, 60_000);

    /** Whether the run is parked at its step `name`. */
    const waitsAt = async (runId: string, name: string) =>
      (await app.client.getRun(runId))?.status === 'waiting' && (await app.client.getRunSteps(runId)).some((s) => s.name === name && s.status === 'waiting');

    afterAll(async () => {
      await app?.close();
      await stop?.();
    });

    describe('sendEvent(event, payload, { key, id })', () => {
      it('delivers a repeated id nothing: the next wait times out instead of receiving it', async () => {
        const handle = await app.client.emit(TwoEventsWorkflow, { key: 'k1' });
        await waitFor(async () => (await handle.getState()).status === 'waiting');
        expect(await app.client.sendEvent('c2.paid', { n: 1 }, { key: 'k1', id: 'delivery-1' })).toBe(1);
        await waitFor(() => waitsAt(handle.id, 'second'));
        expect(await app.client.sendEvent('c2.paid', { n: 2 }, { key: 'k1', id: 'delivery-1' })).toBe(0);
        expect(await handle.result({ timeoutMs: 10_000 })).toEqual({ first: { n: 1 }, second: null });
      });

      it('a repeated id reaches none of the waiters of a fan-out past one page (64 per call)', async () => {
        const handles = await Promise.all(Array.from({ length: 70 }, () => app.client.emit(TwoEventsWorkflow, { key: 'fan', secondTimeoutMs: 2_000 })));
        await waitFor(async () => (await Promise.all(handles.map((h) => h.getState()))).every((r) => r.status === 'waiting'), 20_000);
        expect(await app.client.sendEvent('c2.paid', { n: 1 }, { key: 'fan', id: 'fan-1' })).toBe(70);
        await waitFor(async () => (await Promise.all(handles.map((h) => waitsAt(h.id, 'second')))).every(Boolean), 20_000);
        expect(await app.client.sendEvent('c2.paid', { n: 2 }, { key: 'fan', id: 'fan-1' })).toBe(0);
        const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
        expect(outputs).toEqual(handles.map(() => ({ first: { n: 1 }, second: null })));
      }, 40_000);

      it('refuses an id that is not a non-empty string', async () => {
        await expect(app.client.sendEvent('c2.paid', {}, { id: '' })).rejects.toThrow(InvalidArgumentError);
        await expect(app.client.sendEvent('c2.paid', {}, { id: 42 as never })).rejects.toThrow(/id must be a string/);
      });
    });

    describe('ctx.step.waitForAny(name, [{ runId }, { event, key }, { sleepMs }])', () => {
      const race = (input: { childDelayMs: number; childFails?: boolean; sleepMs: number; preSleepMs?: number }) =>
        app.client.emit(RaceWorkflow, { ...input, key: uniquePrefix('race') });

      it('an event wins: one park, resolved with its index and payload, the same on the replay after it', async () => {
        const handle = await race({ childDelayMs: 8_000, sleepMs: 8_000 });
        await waitFor(() => waitsAt(handle.id, 'first'));
        const { key } = (await handle.getState()).input as { key: string };
        expect(await app.client.sendEvent('c2.go', { go: 1 }, { key })).toBe(1);
        const output = (await handle.result({ timeoutMs: 10_000 })) as { index: number; value: unknown };
        expect(output).toMatchObject({ index: 1, value: { go: 1 } });
        // the replay after 'after' took the recorded winner (the sleep or child would not have won either, but
        // the record is what it read: the race's step is one record, kind 'any')
        expect(executions.get(`race-after:${handle.id}`)).toBe(2);
        const steps = await app.client.getRunSteps(handle.id);
        expect(steps.filter((s) => s.name === 'first')).toEqual([expect.objectContaining({ kind: 'any', status: 'succeeded', result: { go: 1 } })]);
        const history = await app.client.getRunHistory(handle.id);
        // parked once for the race and once for 'after'
        expect(history.filter((e) => e.type === 'parked')).toHaveLength(2);
      });

      it('a child run wins; the event registration is dropped (a later send reaches no one)', async () => {
        const handle = await race({ childDelayMs: 100, sleepMs: 8_000 });
        const output = (await handle.result({ timeoutMs: 10_000 })) as { index: number; value: unknown };
        expect(output).toMatchObject({ index: 0, value: 10 });
        const { key } = (await handle.getState()).input as { key: string };
        expect(await app.client.sendEvent('c2.go', { late: true }, { key })).toBe(0);
      });

      it('a sleep wins; the raced child is left running and finishes on its own', async () => {
        const handle = await race({ childDelayMs: 1_500, sleepMs: 200 });
        const output = (await handle.result({ timeoutMs: 10_000 })) as { index: number; value: unknown; childId: string };
        expect(output).toMatchObject({ index: 2, value: null });
        expect((await app.client.getRun(output.childId))?.status).not.toBe('succeeded');
        expect(await app.client.handle(output.childId).result({ timeoutMs: 10_000 })).toBe(10);
        const { key } = (await handle.getState()).input as { key: string };
        expect(await app.client.sendEvent('c2.go', {}, { key })).toBe(0);
      });

      it('an event sent before the race is reached wins at once, without a park', async () => {
        const handle = await race({ childDelayMs: 8_000, sleepMs: 8_000, preSleepMs: 600 });
        await waitFor(() => waitsAt(handle.id, 'before'));
        const { key } = (await handle.getState()).input as { key: string };
        await app.client.sendEvent('c2.go', { early: true }, { key });
        expect(await handle.result({ timeoutMs: 10_000 })).toMatchObject({ index: 1, value: { early: true } });
      });

      it('a raced child that fails first rejects the race with ChildWorkflowError', async () => {
        const handle = await race({ childDelayMs: 100, childFails: true, sleepMs: 8_000 });
        await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow(/raced by waitForAny\('first'\) failed: child 5 refuses/);
      });

      it('a race of 32 waits: no Redis call over 5 ms (SLOWLOG), the 30 losing event registrations dropped', async () => {
        if (typeof connection !== 'string') return; // SLOWLOG of one server; the cluster runs the same calls
        const redis = new Redis(connection);
        try {
          await startSlowlog(redis, 0);
          const key = uniquePrefix('wide');
          const handle = await app.client.emit(WideRaceWorkflow, { key });
          expect(await handle.result({ timeoutMs: 10_000 })).toEqual({ index: 0, value: 6 });
          const profile = await fcallProfile(redis);
          // eslint-disable-next-line no-console
          console.log(`race of 32 waits, FCALL times (µs): ${JSON.stringify(profile)}`);
          expect((await unexplainedSlowFcalls(redis)).map((entry) => `${entry.args[1]} ${entry.micros} µs`)).toEqual([]);
          expect(profile.wf1_forget_waiter?.calls).toBe(30);
          expect(await app.client.sendEvent('c2.wide', {}, { key: `${key}:7` })).toBe(0);
        } finally {
          await redis.config('SET', 'slowlog-log-slower-than', '10000');
          redis.disconnect();
        }
      });

      it('a worker that keeps the execution warm resumes the race where it parked, with the same outcomes', async () => {
        const warm = await startApp(
          { connection: connection as never, prefix: uniquePrefix('c2w'), queues: { 'c2-children': { partitions: 3 } }, worker: { reaperIntervalMs: 20 }, executionCache: { minRecords: 0 } } as never,
          WORKFLOWS,
        );
        try {
          const key = uniquePrefix('warm');
          const byEvent = await warm.client.emit(RaceWorkflow, { childDelayMs: 8_000, sleepMs: 8_000, key });
          const bySleep = await warm.client.emit(RaceWorkflow, { childDelayMs: 3_000, sleepMs: 200, key: uniquePrefix('warm') });
          await waitFor(async () => (await warm.client.getRun(byEvent.id))?.status === 'waiting');
          await new Promise((resolve) => setTimeout(resolve, 100));
          expect(await warm.client.sendEvent('c2.go', { warm: true }, { key })).toBe(1);
          expect(await byEvent.result({ timeoutMs: 10_000 })).toMatchObject({ index: 1, value: { warm: true } });
          expect(await bySleep.result({ timeoutMs: 10_000 })).toMatchObject({ index: 2, value: null });
          // entered once each: resumed warm, not replayed
          expect(executions.get(`race-after:${byEvent.id}`)).toBe(1);
        } finally {
          await warm.close();
        }
      });

      it('refuses a malformed race before anything is written: the run fails at once with what to fix', async () => {
        const handle = await app.client.emit(BadRaceWorkflow, {});
        await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow(/wait 0 must be exactly one of \{ runId \}, \{ event, key\? \} or \{ sleepMs \}/);
        expect((await handle.getState()).attempt).toBe(1);
        expect(await app.client.getRunSteps(handle.id)).toEqual([]);
      });
    });

    describe('ctx.setEvent(key, value) / client.getEvent(runId, key, { timeoutMs })', () => {
      it('a caller reads the latest value, waits for the next one, and a replay publishes nothing again', async () => {
        const key = uniquePrefix('pub');
        const handle = await app.client.emit(PublisherWorkflow, { key });
        await waitFor(() => waitsAt(handle.id, 'go'));
        expect(await app.client.getEvent(handle.id, 'status')).toEqual({ stage: 'waiting' });
        expect(await app.client.getEvent(handle.id, 'never-set')).toBeUndefined();
        // set only once the run goes on: getEvent waits for it (the done channel announces it; no polling)
        const answer = app.client.getEvent(handle.id, 'answer', { timeoutMs: 10_000 });
        await new Promise((resolve) => setTimeout(resolve, 100));
        await app.client.sendEvent('c2.publish', { answer: 42 }, { key });
        await expect(answer).resolves.toBe(42);
        expect(await app.client.getEvent(handle.id, 'status')).toEqual({ stage: 'done', answer: 42 });
        expect(await handle.result({ timeoutMs: 10_000 })).toBe('published');
        // executed three times (start, after 'go', after 'after'); 'execution' keeps the first's value
        expect(executions.get(`publisher:${handle.id}`)).toBe(3);
        expect(await app.client.getEvent(handle.id, 'execution')).toBe(1);
        const steps = await app.client.getRunSteps(handle.id);
        expect(steps.filter((s) => s.kind === 'set-event').map((s) => s.name)).toEqual(['execution', 'status', 'status', 'answer']);
      });

      it('getEvent waits for a key set later, and gives up with undefined when it is not set in time or the run ends', async () => {
        const key = uniquePrefix('pub');
        const handle = await app.client.emit(PublisherWorkflow, { key });
        await waitFor(() => waitsAt(handle.id, 'go'));
        const started = Date.now();
        expect(await app.client.getEvent(handle.id, 'never-set', { timeoutMs: 300 })).toBeUndefined();
        expect(Date.now() - started).toBeGreaterThanOrEqual(290);
        const waiting = app.client.getEvent(handle.id, 'never-set', { timeoutMs: 20_000 });
        await app.client.sendEvent('c2.publish', { answer: 1 }, { key });
        const ended = Date.now();
        // the run ended without setting it: nothing can set it any more
        await expect(waiting).resolves.toBeUndefined();
        expect(Date.now() - ended).toBeLessThan(10_000);
        await expect(app.client.getEvent('01M97HZW8MBTBW1CXTAJ0TED38.default.0', 'x')).rejects.toThrow(RunNotFoundError);
      });

      it('refuses a value over 64 KiB with a clear error, and publishes nothing', async () => {
        const handle = await app.client.emit(PublisherWorkflow, { key: uniquePrefix('pub'), bytes: 70_000 });
        await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow(/value is 70002 bytes, more than 65536 \(64 KiB\)/);
        expect(await app.client.getEvent(handle.id, 'big')).toBeUndefined();
      });

      it('values are deleted with the run by retention', async () => {
        const short = await startApp(
          { connection: connection as never, prefix: uniquePrefix('c2r'), retention: { succeededMs: 300 }, worker: { reaperIntervalMs: 20 } } as never,
          [PublisherWorkflow],
        );
        try {
          const key = uniquePrefix('pub');
          const handle = await short.client.emit(PublisherWorkflow, { key });
          await waitFor(async () => (await short.client.getEvent(handle.id, 'status')) !== undefined);
          const redis = short.moduleRef.get(WorkflowRedis);
          const published = redis.keys.published(redis.keys.shardRoot(redis.keys.parseRunId(handle.id)!), handle.id);
          expect(await redis.store.client.exists(published)).toBe(1);
          await short.client.sendEvent('c2.publish', { answer: 1 }, { key });
          await handle.result({ timeoutMs: 10_000 });
          await waitFor(async () => (await short.client.getRun(handle.id)) === null, 10_000);
          expect(await redis.store.client.exists(published)).toBe(0);
        } finally {
          await short.close();
        }
      });
    });

    describe('runWorkflow(..., { timeoutMs, inheritDeadline })', () => {
      const kidOf = async (parentId: string) => (await app.client.listRuns({ parentId })).runs[0];

      it.each([
        ['in another shard (created by wf1_emit)', false],
        ["in the parent's shard (created by the parent's park)", true],
      ])('timeoutMs is the child own deadline %s: the child fails with TimeoutError and the parent sees it', async (_where, solo) => {
        const handle = await app.client.emit(DeadlineParentWorkflow, { solo, timeoutMs: 400, childMs: 3_000 });
        expect(await handle.result({ timeoutMs: 10_000 })).toBe("TimeoutError: Child workflow 'kid' did not finish within 400 ms.");
        // not left running: failed by its own deadline, long before its 3 s sleep ends
        await waitFor(async () => (await kidOf(handle.id))?.status === 'failed', 2_500);
        const kid = await kidOf(handle.id);
        expect(kid.error).toMatchObject({ name: 'TimeoutError' });
      });

      it('a child that ends in time is not affected', async () => {
        const handle = await app.client.emit(DeadlineParentWorkflow, { solo: true, timeoutMs: 5_000, childMs: 50 });
        expect(await handle.result({ timeoutMs: 10_000 })).toBe(2);
      });

      it("inheritDeadline: true gives the child its parent's remaining deadline", async () => {
        const handle = await app.client.emit(HurriedParentWorkflow, { inherit: true, childMs: 4_000 });
        await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow(/deadline/);
        await waitFor(async () => (await kidOf(handle.id))?.status === 'failed', 3_000);
        expect((await kidOf(handle.id)).error).toMatchObject({ name: 'TimeoutError' });
      });

      it('by default a child does not inherit: it outlives a parent that timed out', async () => {
        const handle = await app.client.emit(HurriedParentWorkflow, { childMs: 1_500 });
        await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow(/deadline/);
        await waitFor(async () => (await kidOf(handle.id))?.status === 'succeeded', 8_000);
      });
    });

    describe("runWorkflow(..., { onFailure: 'continue' })", () => {
      it('collects every outcome like Promise.allSettled, waking the parent once after the last child', async () => {
        const handle = await app.client.emit(SettledWorkflow, { ns: [1, 2, 3, 4], failAt: [1, 3], policy: 'continue' });
        const output = await handle.result({ timeoutMs: 15_000 });
        expect(output).toEqual([
          { failed: true, message: expect.stringContaining('child 1 refuses') },
          { ok: 4 },
          { failed: true, message: expect.stringContaining('child 3 refuses') },
          { ok: 8 },
        ]);
        // once before the children, once after the last of them: not once per child, not at the first failure
        expect(executions.get(`settled:${handle.id}`)).toBe(2);
        const children = await app.client.listRuns({ parentId: handle.id });
        expect(children.runs.map((r) => r.status).sort()).toEqual(['failed', 'failed', 'succeeded', 'succeeded']);
      });

      it("keeps failing fast by default: the parent wakes at the first failure", async () => {
        const handle = await app.client.emit(SettledWorkflow, { ns: [1, 2, 20], failAt: [1], policy: 'fail' });
        expect(await handle.result({ timeoutMs: 15_000 })).toEqual({ rejected: true });
        // child 20 (sleeping 800 ms) had not finished when the parent went on
        const children = await app.client.listRuns({ parentId: handle.id });
        expect(children.runs.find((r) => (r.input as { n: number }).n === 20)?.status).not.toBe('succeeded');
      });
    });
  });
}

compositionSuite('composition, part two, on one Redis', async () => {
  const redis: TestRedis = await redisUrlForTests();
  return { connection: redis.url, stop: () => redis.stop() };
});

compositionSuite('composition, part two, on a 3-primary Redis Cluster', async () => {
  const cluster: RedisClusterHandle = await startCluster({ primaries: 3 });
  return { connection: { nodes: cluster.nodes } as never, stop: () => cluster.stop() };
});

describe('runInline: waitForAny, setEvent and onFailure continue without Redis', () => {
  it('races in memory: an overridden event or an emitted run wins, else the shortest sleep', async () => {
    const { runInline } = await import('../../lib/index.js');
    const handler = {
      async execute(ctx: WorkflowContext<{ withEvent: boolean }>) {
        const kid = await ctx.step.emitWorkflow('kid', ChildWorkflow, { n: 4 });
        const first = await ctx.step.waitForAny('first', [{ event: 'c2.go' }, { sleepMs: 50 }]);
        const second = await ctx.step.waitForAny('second', [{ sleepMs: 10 }, { runId: kid }]);
        await ctx.setEvent('status', 'raced');
        await ctx.setEvent('status', { first: first.index, second: second.index });
        return { first, second };
      },
    };
    const withEvent = await runInline(handler, { input: { withEvent: true }, eventOverrides: { 'c2.go': { go: true } }, workflows: [new ChildWorkflow()] });
    expect(withEvent.output).toEqual({ first: { index: 0, value: { go: true } }, second: { index: 1, value: 8 } });
    expect(withEvent.events).toEqual({ status: { first: 0, second: 1 } });
    const withoutEvent = await runInline(handler, { input: { withEvent: false }, workflows: [new ChildWorkflow()] });
    expect((withoutEvent.output as { first: unknown }).first).toEqual({ index: 1, value: null });
  });

  it("settles a failed child under onFailure 'continue'", async () => {
    const { runInline } = await import('../../lib/index.js');
    const result = await runInline(new SettledWorkflow(), { input: { ns: [1, 2], failAt: [1], policy: 'continue' }, workflows: [new ChildWorkflow()] });
    expect(result.output).toEqual([{ failed: true, message: expect.stringContaining('child 1 refuses') }, { ok: 4 }]);
  });
});
