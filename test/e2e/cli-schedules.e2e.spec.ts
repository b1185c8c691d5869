/**
 * `schedules list|pause|resume|trigger` and `stats --minutes` through the built bin, against a private Redis
 * where an app with a cron trigger runs (ScheduleModule imported, so its next tick is recorded).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import { Workflow, WorkflowClient, WorkflowModule, type RunInfo, type ScheduleInfo, type Throughput, type WorkflowContext, type WorkflowStats } from '../../lib/index.js';
import { buildCliBin, type CliBin } from '../support/cli-bin.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/workflow-app.js';

@Workflow('cli-report', { queue: 'cli', cron: [{ id: 'nightly', expression: '0 3 * * *', timezone: 'UTC', input: { kind: 'nightly' }, catchUp: 'latest' }] })
@Injectable()
class ReportWorkflow {
  async execute(ctx: WorkflowContext<{ kind: string }>) {
    return { kind: ctx.input.kind, scheduledAt: ctx.run.scheduledAt };
  }
}

describe('CLI: schedules and stats --minutes (the built bin, against a private Redis)', () => {
  let redis: TestRedis;
  let app: TestingModule;
  let bin: CliBin;
  const prefix = uniquePrefix('clis');
  const conn = () => ['--redis', redis.url, '--prefix', prefix];
  const cli = (args: string[]) => bin.run([...args, ...conn()]);
  async function json<T>(args: string[]): Promise<T> {
    const exit = await cli([...args, '--json']);
    if (exit.code !== 0) throw new Error(`${args.join(' ')} exited ${exit.code}: ${exit.stderr}`);
    return JSON.parse(exit.stdout) as T;
  }

  beforeAll(async () => {
    [bin, redis] = await Promise.all([buildCliBin(), redisUrlForTests()]);
    app = await Test.createTestingModule({
      imports: [ScheduleModule.forRoot(), WorkflowModule.forRoot({ connection: redis.url, prefix, worker: { reaperIntervalMs: 20 } })],
      providers: [ReportWorkflow],
    }).compile();
    await app.init();
    await waitFor(async () => (await app.get(WorkflowClient).listSchedules())[0]?.next !== undefined);
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
    await bin?.remove();
  });

  it('list shows the next tick; pause and resume change it for every instance; trigger starts one run now', async () => {
    const listed = await cli(['schedules', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^WORKFLOW\s+ID\s+EXPRESSION\s+TIMEZONE\s+PAUSED\s+NEXT\s+LAST\s+WORKERS\n/);
    expect(listed.stdout).toMatch(/\ncli-report\s+nightly\s+0 3 \* \* \*\s+UTC\s+no\s+\d{4}-\d\d-\d\d 03:00:00 UTC \(in \d+h( \d+m)?\)\s+-\s+1\n$/);

    const paused = await cli(['schedules', 'pause', 'cli-report', 'nightly']);
    expect(paused).toMatchObject({ code: 0, stdout: "Schedule 'nightly' of workflow 'cli-report' is paused now.\n", stderr: '' });
    expect((await cli(['schedules', 'pause', 'cli-report', 'nightly'])).stdout).toContain('was paused already; nothing changed.');
    const [info] = await json<ScheduleInfo[]>(['schedules', 'list']);
    expect(info).toMatchObject({ workflow: 'cli-report', id: 'nightly', expression: '0 3 * * *', timezone: 'UTC', catchUp: 'latest', paused: true, workers: 1 });
    expect(info.last).toBeUndefined();

    const triggered = await cli(['schedules', 'trigger', 'cli-report', 'nightly']);
    expect(triggered.code).toBe(0);
    const runId = /^Started run (\S+) of 'cli-report' \(schedule 'nightly'\)\. Follow it with: runs show \1\n$/.exec(triggered.stdout)?.[1];
    expect(runId).toBeDefined();
    const client = app.get(WorkflowClient);
    await waitFor(async () => (await client.getRun(runId!))?.status === 'succeeded');
    const run = (await client.getRun(runId!)) as RunInfo<unknown, { kind: string; scheduledAt: string }>;
    expect(run.output?.kind).toBe('nightly');
    expect((await json<ScheduleInfo[]>(['schedules', 'list']))[0].last).toBe(run.output?.scheduledAt);
    expect((await client.listRuns({ workflow: 'cli-report' })).runs).toHaveLength(1);

    const resumed = await json<{ paused: boolean; changed: boolean }>(['schedules', 'resume', 'cli-report', 'nightly']);
    expect(resumed).toEqual({ workflow: 'cli-report', id: 'nightly', paused: false, changed: true });
    expect((await json<ScheduleInfo[]>(['schedules', 'list']))[0].paused).toBe(false);

    const unknown = await cli(['schedules', 'trigger', 'cli-report', 'hourly']);
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toBe("error: triggerSchedule: workflow 'cli-report' has no cron trigger 'hourly' (its triggers: 'nightly'). Nothing was changed.\n");
    expect((await cli(['schedules', 'pause', 'cli-report'])).code).toBe(2);
  }, 180_000); // 13 spawns of the bin: a few seconds each on a loaded machine

  it('stats --minutes: runs started and finished per minute, from Redis', async () => {
    const stats = await json<WorkflowStats & { throughput: Throughput }>(['stats', '--minutes', '5']);
    expect(stats.workflows[0]).toMatchObject({ name: 'cli-report', leaseExpiries: 0 });
    const minutes = stats.throughput.workflows[0].minutes;
    expect(minutes).toHaveLength(5);
    expect(minutes.reduce((sum, m) => sum + m.started, 0)).toBe(1);
    const table = await cli(['stats', '--minutes', '5']);
    expect(table.stdout).toMatch(/EXPIRED LEASES\n/);
    expect(table.stdout).toMatch(/\nRuns per minute, last 5 minute\(s\) to .* UTC \(Redis clock\)\nMINUTE\s+WORKFLOW\s+STARTED\s+SUCCEEDED\s+FAILED\s+CANCELED\n\d\d:\d\d\s+cli-report\s+1\s+1\s+0\s+0\n$/);
    expect((await cli(['stats', '--minutes', '61'])).code).toBe(2);
  }, 90_000);
});
