import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('ops-ok', { queue: 'ops' })
@Injectable()
class OkWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    await ctx.step.run('one', () => ctx.input.n);
    return ctx.input.n;
  }
}

@Workflow('ops-fail', { queue: 'ops', maxAttempts: 1 })
@Injectable()
class FailWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; pass?: boolean }>) {
    if (!ctx.input.pass) throw new Error(`no ${ctx.input.n}`);
    return 'ok';
  }
}

@Workflow('ops-sleep', { queue: 'ops' })
@Injectable()
class SleepWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    await ctx.step.sleep('nap', 60_000);
    return ctx.input.n;
  }
}

describe('operations: history, listings, stats, retention, worker registry (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;
  let api: TestApp;
  const prefix = uniquePrefix('ops');

  beforeAll(async () => {
    redis = await redisUrlForTests();
    app = await startApp(
      {
        connection: redis.url,
        prefix,
        queues: { ops: { partitions: 3 } },
        retention: { succeededMs: 60_000, failedMs: 60_000, canceledMs: 60_000 },
        worker: { concurrency: 20, reaperIntervalMs: 20 },
      },
      [OkWorkflow, FailWorkflow, SleepWorkflow],
    );
    api = await startApp({ connection: redis.url, prefix, worker: false, queues: { ops: { partitions: 3 } } });
  });

  afterAll(async () => {
    await api?.close();
    await app?.close();
    await redis?.stop();
  });

  it('records every transition in the run history, in order, with server times', async () => {
    const handle = await app.client.emit(FailWorkflow, { n: 1 });
    await handle.result({ timeoutMs: 10_000 }).catch(() => undefined);
    const history = await app.client.getRunHistory(handle.id);
    expect(history.map((e) => e.type)).toEqual(['created', 'claimed', 'failed']);
    expect(history[1]).toMatchObject({ attempt: 1, workerId: expect.any(String) });
    expect(history[2].error).toMatchObject({ name: 'Error', message: 'no 1' });
    const times = history.map((e) => Date.parse(e.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it('counts runs by status per workflow and queue after mixed outcomes, from an API-only app', async () => {
    const ok = await Promise.all([1, 2, 3, 4, 5].map((n) => app.client.emit(OkWorkflow, { n })));
    const failed = await Promise.all([1, 2, 3].map((n) => app.client.emit(FailWorkflow, { n: 10 + n })));
    const sleeping = await Promise.all([1, 2].map((n) => app.client.emit(SleepWorkflow, { n })));
    await Promise.all(ok.map((h) => h.result({ timeoutMs: 10_000 })));
    await Promise.all(failed.map((h) => h.result({ timeoutMs: 10_000 }).catch(() => undefined)));
    await waitFor(async () => (await Promise.all(sleeping.map((h) => h.getState()))).every((r) => r.status === 'waiting'));
    await api.client.cancelRun(sleeping[0].id);
    // a failed run retried: it passes this time
    await api.client.retryRun(failed[0].id);

    const stats = await api.client.getStats();
    const byName = Object.fromEntries(stats.workflows.map((w) => [w.name, w]));
    await waitFor(async () => (await api.client.getRun(failed[0].id))?.status === 'failed');
    const after = Object.fromEntries((await api.client.getStats()).workflows.map((w) => [w.name, w]));
    expect(after['ops-ok'].counts).toMatchObject({ succeeded: 5, queued: 0, running: 0 });
    expect(after['ops-fail'].counts).toMatchObject({ failed: 4 }); // 1 (history test) + 3, the retried one failed again
    expect(after['ops-sleep'].counts).toMatchObject({ waiting: 1, canceled: 1 });
    expect(byName['ops-ok'].queue).toBe('ops');
    const ops = stats.queues.find((q) => q.name === 'ops')!;
    expect(ops.counts.succeeded).toBe(5);
    expect(stats.workers.alive).toBe(1);
    expect(stats.workers.list[0]).toMatchObject({ queues: ['ops'], workflows: ['ops-ok', 'ops-fail', 'ops-sleep'], concurrency: 20 });
  });

  it('lists workflows with their options, workers and counts', async () => {
    const workflows = await api.client.listWorkflows();
    expect(workflows.map((w) => w.name)).toEqual(['ops-fail', 'ops-ok', 'ops-sleep']);
    const meta = await api.client.getWorkflowMeta('ops-fail');
    expect(meta).toMatchObject({ name: 'ops-fail', queue: 'ops', options: { maxAttempts: 1 } });
    expect(meta!.workers).toHaveLength(1);
    expect(await api.client.getWorkflowMeta('nope')).toBeNull();
  });

  it('pages newest first with a stable cursor that neither skips nor repeats while runs arrive', async () => {
    const first = await Promise.all(Array.from({ length: 25 }, (_, n) => app.client.emit(OkWorkflow, { n: 100 + n })));
    await Promise.all(first.map((h) => h.result({ timeoutMs: 10_000 })));
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await api.client.listRuns({ workflow: 'ops-ok', limit: 7, cursor });
      seen.push(...page.runs.map((r) => r.id));
      cursor = page.cursor;
      pages += 1;
      // new runs arrive between pages; they are newer than the cursor and do not show up on later pages
      if (pages === 2) await Promise.all([1, 2, 3].map((n) => app.client.emit(OkWorkflow, { n: 200 + n })));
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (const h of first) expect(seen).toContain(h.id);
    expect([...seen].sort().reverse()).toEqual(seen);
    expect(seen.length).toBe(30);
  });

  it('filters by status and by parent', async () => {
    const failed = await api.client.listRuns({ workflow: 'ops-fail', status: 'failed' });
    expect(failed.runs.length).toBe(4);
    expect(failed.runs.every((r) => r.status === 'failed')).toBe(true);
    const waiting = await api.client.listRuns({ status: 'waiting' });
    expect(waiting.runs.map((r) => r.workflow)).toEqual(['ops-sleep']);
    await expect(api.client.listRuns({ status: 'nope' as never })).rejects.toThrow('unknown status');
    expect((await api.client.listRuns({ parentId: waiting.runs[0].id })).runs).toEqual([]);
  });

  it("lists a workflow's runs of every status together, newest first, one per page", async () => {
    // ops-sleep holds a waiting and a canceled run (see the counts test); a delayed one is scheduled
    const scheduled = await app.client.emit(SleepWorkflow, { n: 3 }, { delayMs: 60_000 });
    const listed: { id: string; status: string }[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.client.listRuns({ workflow: 'ops-sleep', limit: 1, cursor });
      listed.push(...page.runs);
      cursor = page.cursor;
    } while (cursor);
    expect(listed.map((r) => r.status).sort()).toEqual(['canceled', 'scheduled', 'waiting']);
    expect(listed[0].id).toBe(scheduled.id);
    expect(listed.map((r) => r.id)).toEqual([...new Set(listed.map((r) => r.id))].sort().reverse());
  });
});

describe('retention: finished runs expire with their steps, history, index entries and idempotency keys', () => {
  it('drops everything of a run after its retention, and counts follow', async () => {
    const redis = await redisUrlForTests();
    const prefix = uniquePrefix('ret');
    const app = await startApp(
      { connection: redis.url, prefix, retention: { succeededMs: 300, failedMs: 300, canceledMs: 300 }, worker: { reaperIntervalMs: 20 } },
      [OkWorkflow, FailWorkflow],
    );
    try {
      const ok = await app.client.emit(OkWorkflow, { n: 1 }, { idempotencyKey: 'k1' });
      const bad = await app.client.emit(FailWorkflow, { n: 2 });
      await ok.result({ timeoutMs: 10_000 });
      await bad.result({ timeoutMs: 10_000 }).catch(() => undefined);
      expect((await app.client.findRun('ops-ok', 'k1'))?.id).toBe(ok.id);
      await waitFor(async () => (await app.client.getRun(ok.id)) === null && (await app.client.getRun(bad.id)) === null, 5_000);
      expect(await app.client.getRunSteps(ok.id)).toEqual([]);
      expect(await app.client.getRunHistory(ok.id)).toEqual([]);
      expect(await app.client.findRun('ops-ok', 'k1')).toBeNull();
      expect((await app.client.listRuns({})).runs).toEqual([]);
      const stats = await app.client.getStats();
      for (const w of stats.workflows) expect(Object.values(w.counts).every((n) => n === 0)).toBe(true);
      // the same key starts a new run once the old one expired
      const again = await app.client.emit(OkWorkflow, { n: 3 }, { idempotencyKey: 'k1' });
      expect(again.id).not.toBe(ok.id);
      await again.result({ timeoutMs: 10_000 });
    } finally {
      await app.close();
      await redis.stop();
    }
  });
});
