/**
 * Schedules at run time, against a real Redis with two instances of the app (each with its own
 * ScheduleModule, as two processes would be): a pause made through any client holds on every instance,
 * triggerSchedule starts one run with `ctx.run.scheduledAt`, and `catchUp: 'latest'` starts the latest
 * tick missed while both instances were stopped, once.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger, type Provider } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  InvalidArgumentError,
  UnknownWorkflowError,
  Workflow,
  WorkflowClient,
  WorkflowModule,
  type RunInfo,
  type WorkflowContext,
} from '../../lib/index.js';
import { redisUrlForTests, sleep, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/workflow-app.js';

let redis: TestRedis;

@Workflow('sched-each-second', { cron: [{ id: 'each-second', expression: '* * * * * *', input: { from: 'cron' } }] })
@Injectable()
class EachSecondWorkflow {
  async execute(ctx: WorkflowContext<{ from: string }>) {
    return { from: ctx.input.from, scheduledAt: ctx.run.scheduledAt ?? null };
  }
}

@Workflow('sched-catch-up', { cron: [{ id: 'two-seconds', expression: '*/2 * * * * *', catchUp: 'latest' }] })
@Injectable()
class CatchUpWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.run.scheduledAt ?? null;
  }
}

@Workflow('sched-no-catch-up', { cron: [{ id: 'two-seconds', expression: '*/2 * * * * *' }] })
@Injectable()
class NoCatchUpWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.run.scheduledAt ?? null;
  }
}

async function instance(prefix: string, providers: Provider[]): Promise<TestingModule> {
  const app = await Test.createTestingModule({
    imports: [ScheduleModule.forRoot(), WorkflowModule.forRoot({ connection: redis.url, prefix, worker: { reaperIntervalMs: 20 } })],
    providers,
  }).compile();
  await app.init();
  return app;
}

async function apiClient(prefix: string): Promise<{ client: WorkflowClient; close: () => Promise<void> }> {
  const app = await Test.createTestingModule({ imports: [WorkflowModule.forRoot({ connection: redis.url, prefix, worker: false })] }).compile();
  await app.init();
  return { client: app.get(WorkflowClient), close: () => app.close() };
}

async function allRuns(client: WorkflowClient, workflow: string): Promise<RunInfo[]> {
  return (await client.listRuns({ workflow, limit: 1000 })).runs;
}

/** The tick a cron run was started for: the time in its idempotency key. */
const tickOf = (run: RunInfo) => Date.parse(/^cron:[^:]+:(.{24})/.exec(run.idempotencyKey ?? '')?.[1] ?? 'x');

describe('schedules at run time (e2e, real Redis, two instances)', () => {
  beforeAll(async () => {
    redis = await redisUrlForTests();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('pause holds on every instance; resume; trigger starts one run with scheduledAt; list shows the state', async () => {
    const prefix = uniquePrefix('sched');
    const apps = [await instance(prefix, [EachSecondWorkflow]), await instance(prefix, [EachSecondWorkflow])];
    const api = await apiClient(prefix);
    const { client } = api;
    try {
      await waitFor(async () => (await allRuns(client, 'sched-each-second')).length >= 2, 10_000);
      // ctx.run.scheduledAt is the tick's scheduled time: the one its idempotency key names.
      const ticked = (await allRuns(client, 'sched-each-second')).find((r) => r.status === 'succeeded');
      expect(ticked).toBeDefined();
      expect(ticked!.output).toEqual({ from: 'cron', scheduledAt: new Date(tickOf(ticked!)).toISOString() });

      expect(await client.pauseSchedule('sched-each-second', 'each-second')).toBe(true);
      expect(await client.pauseSchedule('sched-each-second', 'each-second')).toBe(false);
      await sleep(1_200); // a tick that asked Redis before the pause may still be starting its run
      const paused = (await allRuns(client, 'sched-each-second')).length;
      await sleep(3_000);
      expect((await allRuns(client, 'sched-each-second')).length).toBe(paused);

      const [listed] = await client.listSchedules();
      expect(listed).toMatchObject({ workflow: 'sched-each-second', id: 'each-second', expression: '* * * * * *', catchUp: 'none', paused: true, workers: 2 });
      expect(Date.parse(listed.next!)).toBeGreaterThan(Date.now() - 2_000);
      expect(Date.parse(listed.last!)).toBeLessThan(Date.now() - 2_500);

      // Trigger works while paused: one run per call, with the input of the trigger, scheduledAt = now.
      const before = Date.now();
      const handle = await client.triggerSchedule('sched-each-second', 'each-second');
      const output = (await handle.result({ timeoutMs: 10_000 })) as { from: string; scheduledAt: string };
      expect(output.from).toBe('cron');
      expect(Math.abs(Date.parse(output.scheduledAt) - before)).toBeLessThan(2_000);
      expect((await allRuns(client, 'sched-each-second')).length).toBe(paused + 1);
      expect((await client.listSchedules())[0].last).toBe(output.scheduledAt);

      await expect(client.pauseSchedule('sched-each-second', 'nope')).rejects.toThrow(InvalidArgumentError);
      await expect(client.pauseSchedule('sched-each-second', 'nope')).rejects.toThrow("workflow 'sched-each-second' has no cron trigger 'nope' (its triggers: 'each-second')");
      await expect(client.triggerSchedule('no-such-workflow', 'each-second')).rejects.toThrow(UnknownWorkflowError);

      expect(await client.resumeSchedule('sched-each-second', 'each-second')).toBe(true);
      await waitFor(async () => (await allRuns(client, 'sched-each-second')).length >= paused + 3, 10_000);
      expect((await client.listSchedules())[0].paused).toBe(false);
      // Still one run per tick across both instances.
      const ticks = (await allRuns(client, 'sched-each-second')).map((r) => r.idempotencyKey);
      expect(new Set(ticks).size).toBe(ticks.length);
    } finally {
      await Promise.all(apps.map((app) => app.close()));
      await api.close();
    }
  }, 40_000);

  it("catchUp 'latest' starts the latest tick missed while both instances were stopped, once; 'none' starts none", async () => {
    const prefix = uniquePrefix('catchup');
    const providers = [CatchUpWorkflow, NoCatchUpWorkflow];
    const logs: string[] = [];
    const spy = jest.spyOn(Logger.prototype, 'log').mockImplementation(function (this: Logger, message: any) {
      logs.push(String(message));
    });
    const api = await apiClient(prefix);
    const { client } = api;
    try {
      let apps = [await instance(prefix, providers), await instance(prefix, providers)];
      await waitFor(async () => (await allRuns(client, 'sched-catch-up')).length >= 1 && (await allRuns(client, 'sched-no-catch-up')).length >= 1, 10_000);
      await Promise.all(apps.map((app) => app.close()));
      const stoppedAt = Date.now();
      // Three or more ticks pass with no instance; restart just after a tick, so that mounting ends before the next.
      await sleep(6_000);
      await sleep(2_000 - (Date.now() % 2_000) + 100);
      const restartAt = Date.now();
      apps = await Promise.all([instance(prefix, providers), instance(prefix, providers)]);
      try {
        const missedTick = restartAt - (restartAt % 2_000);
        await waitFor(async () => (await allRuns(client, 'sched-catch-up')).some((r) => tickOf(r) === missedTick), 5_000);
        await sleep(500);
        const inGap = (runs: RunInfo[]) => runs.filter((r) => tickOf(r) > stoppedAt && tickOf(r) < restartAt);
        const caughtUp = inGap(await allRuns(client, 'sched-catch-up'));
        expect(caughtUp.map((r) => r.idempotencyKey)).toEqual([`cron:two-seconds:${new Date(missedTick).toISOString()}`]);
        await waitFor(async () => (await client.getRun(caughtUp[0].id))?.status === 'succeeded', 5_000);
        expect((await client.getRun(caughtUp[0].id))?.output).toBe(new Date(missedTick).toISOString());
        expect(inGap(await allRuns(client, 'sched-no-catch-up'))).toEqual([]);
        expect(logs.filter((l) => l.includes("Cron trigger 'two-seconds' of workflow 'sched-catch-up' catches up on the tick of")).length).toBeGreaterThanOrEqual(1);
        expect(logs.some((l) => l.includes("workflow 'sched-no-catch-up' catches up"))).toBe(false);
        // The regular ticks go on after it.
        await waitFor(async () => (await allRuns(client, 'sched-catch-up')).some((r) => tickOf(r) > restartAt), 5_000);
      } finally {
        await Promise.all(apps.map((app) => app.close()));
      }
    } finally {
      spy.mockRestore();
      await api.close();
    }
  }, 40_000);
});
