/**
 * Operations on a real Redis through the client: retryRuns / cancelRuns (filters, limits, repeats, bad
 * input), pauseWorkflow / resumeWorkflow (nothing claimed while paused, woken runs too; delayedBy;
 * listings), ctx.setProgress (RunInfo.progress, its size limit, runInline).
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import {
  InvalidArgumentError,
  PayloadError,
  UnknownWorkflowError,
  Workflow,
  runInline,
  type RunEvent,
  type WorkflowContext,
} from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

let partnerDown = true;

@Workflow('ops-flaky', { queue: 'ops', maxAttempts: 1 })
@Injectable()
class FlakyWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('call', () => {
      if (partnerDown) throw new Error('partner down');
      return ctx.input.n;
    });
  }
}

@Workflow('ops-sleep', { queue: 'ops' })
@Injectable()
class SleepWorkflow {
  async execute(ctx: WorkflowContext<{ ms: number }>) {
    await ctx.step.sleep('nap', ctx.input.ms);
    return 'woke';
  }
}

@Workflow('ops-progress', { queue: 'ops' })
@Injectable()
class ProgressWorkflow {
  async execute(ctx: WorkflowContext<{ big?: boolean }>) {
    await ctx.setProgress(0.25);
    await ctx.setProgress({ done: 3, total: 4, note: 'rows' });
    let refused = '';
    try {
      await ctx.setProgress({ blob: 'x'.repeat(5000) });
    } catch (error) {
      refused = `${(error as Error).name}: ${(error as Error).message}`;
    }
    await ctx.step.waitForEvent('go', { event: 'ops-go', timeoutMs: 60_000 });
    return refused;
  }
}

const historyCount = (history: RunEvent[], type: string) => history.filter((e) => e.type === type).length;

describe('operations: bulk retry and cancel, pause and resume, progress', () => {
  const suite = useSuiteRedis();
  const prefix = uniquePrefix('ops');
  let app: TestApp;

  it('starts', async () => {
    // housekeeping ticks 5 s apart (its claim is a safety net): a resumed run that starts sooner was claimed on
    // the notice the resume sends
    app = await startApp({ connection: suite.redis.url, prefix, cron: false, worker: { reaperIntervalMs: 5_000 } }, [FlakyWorkflow, SleepWorkflow, ProgressWorkflow]);
    suite.apps.push(app);
  });

  it('retryRuns retries failed runs in a window, up to a limit, each once however often it is repeated', async () => {
    const client = app.client;
    const before = await Promise.all([1, 2, 3].map((n) => client.emit(FlakyWorkflow, { n })));
    await new Promise((resolve) => setTimeout(resolve, 30));
    const boundary = new Date();
    await new Promise((resolve) => setTimeout(resolve, 30));
    const after = await Promise.all([4, 5, 6].map((n) => client.emit(FlakyWorkflow, { n })));
    const all = [...before, ...after];
    await Promise.all(all.map((h) => h.result({ timeoutMs: 10_000 }).catch(() => undefined)));
    // paused: the retried runs stay queued, so each retry can be counted
    await client.pauseWorkflow('ops-flaky');

    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'failed', since: new Date(Date.now() + 60_000) })).toBe(0);
    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'failed', until: new Date(boundary.getTime() - 60_000) })).toBe(0);
    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'canceled' })).toBe(0);
    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'failed', until: boundary, limit: 2 })).toBe(2);
    const states = async () => Promise.all(all.map((h) => h.getState()));
    // oldest first, only runs created before `until`
    expect((await states()).map((r) => r.status)).toEqual(['queued', 'queued', 'failed', 'failed', 'failed', 'failed']);
    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'failed', since: boundary })).toBe(3);
    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'failed' })).toBe(1);
    expect(await client.retryRuns({ workflow: 'ops-flaky', status: 'failed' })).toBe(0);
    const runs = await states();
    expect(runs.map((r) => [r.status, r.delayedBy])).toEqual(all.map(() => ['queued', 'paused']));
    for (const h of all) expect(historyCount(await client.getRunHistory(h.id), 'retried')).toBe(1);

    partnerDown = false;
    await client.resumeWorkflow('ops-flaky');
    expect(await Promise.all(all.map((h) => h.result({ timeoutMs: 10_000 })))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('retryRuns and cancelRuns refuse bad filters and change nothing', async () => {
    const client = app.client;
    const refused = async (call: Promise<unknown>, type: new (...args: never[]) => Error, message: RegExp) => {
      const error = await call.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(type);
      expect((error as Error).message).toMatch(message);
    };
    await refused(client.retryRuns({ workflow: 'ops-flaky', status: 'succeeded' as 'failed' }), InvalidArgumentError, /status must be 'failed' or 'canceled'/);
    await refused(client.retryRuns({ workflow: 'nope', status: 'failed' }), UnknownWorkflowError, /no workflow 'nope' is registered/);
    await refused(client.retryRuns({ workflow: '', status: 'failed' }), InvalidArgumentError, /workflow must be/);
    await refused(client.retryRuns({ workflow: 'ops-flaky', status: 'failed', limit: 0 }), InvalidArgumentError, /limit must be a whole number/);
    await refused(client.retryRuns({ workflow: 'ops-flaky', status: 'failed', since: new Date('x') }), InvalidArgumentError, /since must be a valid Date/);
    await refused(
      client.retryRuns({ workflow: 'ops-flaky', status: 'failed', since: new Date(2_000), until: new Date(1_000) }),
      InvalidArgumentError,
      /since .* is after until/,
    );
    await refused(client.cancelRuns({ workflow: 'ops-flaky', status: 'failed' as 'queued' }), InvalidArgumentError, /status must be one of scheduled, queued, running, waiting/);
    await refused(client.cancelRuns(null as never), InvalidArgumentError, /needs a filter/);
    await refused(client.pauseWorkflow('nope'), UnknownWorkflowError, /no workflow 'nope'/);
  });

  it('cancelRuns cancels waiting runs of a workflow (a repeat cancels nothing more); other statuses are left alone', async () => {
    const client = app.client;
    const sleeping = await Promise.all([1, 2, 3].map(() => client.emit(SleepWorkflow, { ms: 3_600_000 })));
    await waitFor(async () => (await Promise.all(sleeping.map((h) => h.getState()))).every((r) => r.status === 'waiting'));
    expect(await client.cancelRuns({ workflow: 'ops-sleep', status: 'queued' })).toBe(0);
    expect(await client.cancelRuns({ workflow: 'ops-sleep', limit: 2, reason: 'bulk test' })).toBe(2);
    expect(await client.cancelRuns({ workflow: 'ops-sleep' })).toBe(1);
    expect(await client.cancelRuns({ workflow: 'ops-sleep' })).toBe(0);
    for (const h of sleeping) {
      const run = await h.getState();
      expect(run.status).toBe('canceled');
      expect(historyCount(await client.getRunHistory(h.id), 'canceled')).toBe(1);
    }
    expect((await sleeping[0].getState()).error?.message).toBe('The run was canceled: bulk test');
  });

  it('a paused workflow: emits accepted, nothing claimed, woken runs wait too; listings say paused; resume claims at once', async () => {
    const client = app.client;
    const napper = await client.emit(SleepWorkflow, { ms: 300 });
    await waitFor(async () => (await napper.getState()).status === 'waiting');
    await client.pauseWorkflow('ops-sleep');
    await client.pauseWorkflow('ops-sleep'); // repeated: no change
    const fresh = await Promise.all([1, 2].map(() => client.emit(SleepWorkflow, { ms: 1 })));
    await new Promise((resolve) => setTimeout(resolve, 800));
    // the sleeper woke (its timer is due) but is not claimed; the new runs are not claimed
    for (const h of [napper, ...fresh]) expect(await h.getState()).toMatchObject({ status: 'queued', delayedBy: 'paused' });
    const stats = await client.getStats();
    expect(stats.workflows.find((w) => w.name === 'ops-sleep')).toMatchObject({ paused: true, queueDepth: 3 });
    expect(stats.workflows.find((w) => w.name === 'ops-progress')?.paused).toBeUndefined();
    expect((await client.getWorkflowMeta('ops-sleep'))?.pausedAt).toEqual(expect.any(String));
    const listed = await client.listRuns({ workflow: 'ops-sleep', status: 'queued' });
    expect(listed.runs.map((r) => r.delayedBy)).toEqual(['paused', 'paused', 'paused']);

    const resumedAt = Date.now();
    await client.resumeWorkflow('ops-sleep');
    await Promise.all([napper, ...fresh].map((h) => h.result({ timeoutMs: 10_000 })));
    // told at once (the shard's workers get a notice), not found at a later poll
    expect(Date.now() - resumedAt).toBeLessThan(2_500);
    expect((await client.getWorkflowMeta('ops-sleep'))?.pausedAt).toBeUndefined();
    expect((await napper.getState()).delayedBy).toBeUndefined();
  });

  it('ctx.setProgress: the latest value in getRun and listRuns; a value over 4 KiB is refused with a clear error', async () => {
    const client = app.client;
    const handle = await client.emit(ProgressWorkflow, {});
    await waitFor(async () => (await handle.getState()).status === 'waiting');
    expect((await handle.getState()).progress).toEqual({ done: 3, total: 4, note: 'rows' });
    const listed = await client.listRuns({ workflow: 'ops-progress', summary: true });
    expect(listed.runs[0].progress).toEqual({ done: 3, total: 4, note: 'rows' });
    // fenced: a caller without the run's current token (or with a value past the limit) writes nothing
    const root = `{${prefix}:ops:0}`;
    await expect(suite.direct.call('FCALL', 'wf1_progress', 1, root, handle.id, 'stale:token', '0.9')).resolves.toEqual([0, 'STALE_TOKEN']);
    await expect(suite.direct.call('FCALL', 'wf1_progress', 1, root, handle.id, 'x', 'y'.repeat(4097))).rejects.toThrow(/at most 4096 bytes/);
    expect((await handle.getState()).progress).toEqual({ done: 3, total: 4, note: 'rows' });
    await client.sendEvent('ops-go');
    const refused = await handle.result({ timeoutMs: 10_000 });
    expect(refused).toMatch(/^PayloadError: The progress value is more than 4096 bytes as JSON/);
  });

  it('runInline records the progress values', async () => {
    const result = await runInline(new ProgressWorkflow(), { input: {}, eventOverrides: { go: null } } as never);
    expect(result.progress).toEqual({ done: 3, total: 4, note: 'rows' });
    expect(result.progressUpdates).toEqual([0.25, { done: 3, total: 4, note: 'rows' }]);
    await expect(runInline({ execute: (ctx: WorkflowContext) => ctx.setProgress(undefined) } as never, { input: {} } as never)).resolves.toMatchObject({
      succeeded: false,
      error: expect.any(PayloadError),
    });
  });
});
