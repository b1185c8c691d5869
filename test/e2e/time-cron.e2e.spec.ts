import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger, type Provider } from '@nestjs/common';
import { ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import { Workflow, WorkflowClient, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, sleep, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, runsInShard, waitFor } from '../support/workflow-app.js';

let redis: TestRedis;
let probe: Redis;
const gateKey = uniquePrefix('gate');

@Workflow('every-second', { cron: [{ id: 'each-second', expression: '* * * * * *', input: { from: 'cron' } }] })
@Injectable()
class EverySecondWorkflow {
  async execute(ctx: WorkflowContext<{ from: string }>) {
    return ctx.input.from;
  }
}

/** Holds its one slot until the test opens the gate. */
@Workflow('busy-cron', { maxConcurrency: 1, cron: [{ expression: '* * * * * *', timezone: 'Europe/Paris' }] })
@Injectable()
class BusyCronWorkflow {
  async execute() {
    await waitFor(async () => (await probe.get(gateKey)) === 'open', 20_000, 10);
    return 'done';
  }
}

async function buildApp(prefix: string, providers: Provider[], opts: { schedule?: boolean; cron?: boolean } = {}): Promise<TestingModule> {
  return Test.createTestingModule({
    imports: [
      ...(opts.schedule === false ? [] : [ScheduleModule.forRoot()]),
      WorkflowModule.forRoot({ connection: redis.url, prefix, cron: opts.cron, worker: { reaperIntervalMs: 20 } }),
    ],
    providers,
  }).compile();
}

describe('cron triggers (e2e, real Redis, @nestjs/schedule)', () => {
  beforeAll(async () => {
    redis = await redisUrlForTests();
    probe = redisFor(redis.url);
  });

  afterAll(async () => {
    probe?.disconnect();
    await redis?.stop();
  });

  it('starts one run per tick across two instances of the app, and stops its jobs on shutdown', async () => {
    const prefix = uniquePrefix('cron');
    const apps = [await buildApp(prefix, [EverySecondWorkflow]), await buildApp(prefix, [EverySecondWorkflow])];
    // Spy before init: the jobs start on bootstrap and may tick right away.
    const emitted = apps.map((app) => {
      const keys: string[] = [];
      const client = app.get(WorkflowClient);
      const emit = client.emit.bind(client);
      jest.spyOn(client, 'emit').mockImplementation(async (workflow: any, input: any, opts: any) => {
        keys.push(opts?.idempotencyKey);
        return emit(workflow, input, opts);
      });
      return keys;
    });
    await Promise.all(apps.map((app) => app.init()));
    expect(apps[0].get(SchedulerRegistry).doesExist('cron', 'workflow:every-second:each-second')).toBe(true);
    await sleep(5_000);
    await Promise.all(apps.map((app) => app.close()));
    for (const app of apps) expect(app.get(SchedulerRegistry).getCronJobs().size).toBe(0);

    const ticks = new Set([...emitted[0], ...emitted[1]]);
    // Both instances fired (about) every tick, yet each tick started exactly one run.
    expect(emitted[0].length).toBeGreaterThanOrEqual(4);
    expect(emitted[1].length).toBeGreaterThanOrEqual(4);
    expect(ticks.size).toBeGreaterThanOrEqual(4);
    expect(ticks.size).toBeLessThanOrEqual(6);
    for (const key of ticks) expect(key).toMatch(/^cron:each-second:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);

    const apiOnly = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url, prefix, worker: false })],
    }).compile();
    await apiOnly.init();
    const client = apiOnly.get(WorkflowClient);
    const runIds = new Set<string>();
    for (const key of ticks) {
      const run = await client.findRun('every-second', key);
      expect(run).toMatchObject({ workflow: 'every-second', input: { from: 'cron' }, idempotencyKey: key });
      runIds.add(run!.id);
    }
    expect(runIds.size).toBe(ticks.size);
    const created = await runsInShard(probe, `{${prefix}:default:0}`, 'every-second');
    expect(created).toBe(ticks.size);

    // The jobs are gone: no run is started after shutdown.
    await sleep(1_300);
    expect(await runsInShard(probe, `{${prefix}:default:0}`, 'every-second')).toBe(created);
    await apiOnly.close();
  }, 30_000);

  it('skips a tick, with a log line, while the workflow is at its maxConcurrency', async () => {
    const prefix = uniquePrefix('cronbusy');
    const logs: string[] = [];
    const spy = jest.spyOn(Logger.prototype, 'log').mockImplementation(function (this: Logger, message: any) {
      logs.push(String(message));
    });
    const app = await buildApp(prefix, [BusyCronWorkflow]);
    await app.init();
    try {
      const runs = () => runsInShard(probe, `{${prefix}:default:0}`, 'busy-cron');
      await waitFor(async () => (await runs()) === 1, 10_000);
      await sleep(3_500);
      expect(await runs()).toBe(1);
      const skips = logs.filter((l) => l.includes("Cron trigger '* * * * * *@Europe/Paris' of workflow 'busy-cron' skipped the tick"));
      expect(skips.length).toBeGreaterThanOrEqual(2);
      expect(skips[0]).toContain('at its maxConcurrency of 1');
      await probe.set(gateKey, 'open');
      // Once the slot is free, the next tick starts a run again.
      await waitFor(async () => (await runs()) >= 2, 10_000);
    } finally {
      await app.close();
      spy.mockRestore();
    }
  }, 30_000);

  it('refuses to start when a workflow declares cron but ScheduleModule is not imported', async () => {
    const app = await buildApp(uniquePrefix('cronmissing'), [EverySecondWorkflow], { schedule: false });
    await expect(app.init()).rejects.toThrow(/ScheduleModule\.forRoot\(\)/);
    await app.close();
  });

  it('registers no trigger with cron: false', async () => {
    const app = await buildApp(uniquePrefix('cronoff'), [EverySecondWorkflow], { cron: false });
    await app.init();
    expect(app.get(SchedulerRegistry).getCronJobs().size).toBe(0);
    await app.close();
  });

  it('refuses an invalid expression at start', async () => {
    @Workflow('bad-cron', { cron: [{ expression: 'every minute' }] })
    @Injectable()
    class BadCronWorkflow {
      async execute() {}
    }
    const app = await buildApp(uniquePrefix('cronbad'), [BadCronWorkflow]);
    await expect(app.init()).rejects.toThrow(/cron trigger 'every minute@local'/);
    await app.close();
  });
});
