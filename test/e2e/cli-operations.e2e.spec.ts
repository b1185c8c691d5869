/**
 * The CLI's operations, as users run them (the built bin against a private Redis): bulk `runs retry` and
 * `runs cancel` by workflow, status and time window; `workflows pause|resume` and where "paused" shows;
 * a run's progress in `runs show` and `runs list`; usage errors.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type RunInfo, type RunPage, type WorkflowContext, type WorkflowMeta, type WorkflowStats } from '../../lib/index.js';
import { buildCliBin, removeCliBin, runCliBin } from '../support/cli-runner.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

let partnerDown = true;

@Workflow('checkout', { queue: 'shop', maxAttempts: 1 })
@Injectable()
class CheckoutWorkflow {
  async execute(ctx: WorkflowContext<{ order: string }>) {
    return ctx.step.run('call-partner', () => {
      if (partnerDown) throw new Error('partner API answered 503');
      return { confirmed: ctx.input.order };
    });
  }
}

@Workflow('import', { queue: 'shop' })
@Injectable()
class ImportWorkflow {
  async execute(ctx: WorkflowContext<{ rows: number }>) {
    await ctx.setProgress({ done: 1200, total: ctx.input.rows, fraction: 1200 / ctx.input.rows });
    await ctx.step.waitForEvent('next-batch', { event: 'import-next', timeoutMs: 3_600_000 });
    return ctx.input.rows;
  }
}

describe('CLI operations: bulk retry and cancel, pause and resume, progress', () => {
  const suite = useSuiteRedis();
  const prefix = uniquePrefix('cliops');
  const conn = () => ['--redis', suite.redis.url, '--prefix', prefix];
  const cli = (args: string[]) => runCliBin([...args, ...conn()]);
  async function json<T>(args: string[]): Promise<T> {
    const exit = await cli([...args, '--json']);
    if (exit.code !== 0) throw new Error(`${args.join(' ')} exited ${exit.code}: ${exit.stderr}`);
    return JSON.parse(exit.stdout) as T;
  }
  let app: TestApp;
  const failed: string[] = [];
  let importId = '';

  beforeAll(async () => {
    const built = buildCliBin();
    app = await startApp({ connection: suite.redis.url, prefix, cron: false }, [CheckoutWorkflow, ImportWorkflow]);
    suite.apps.push(app);
    const handles = await Promise.all(['A-1', 'A-2', 'A-3'].map((order) => app.client.emit(CheckoutWorkflow, { order })));
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 10_000 }).catch(() => undefined)));
    failed.push(...handles.map((h) => h.id));
    const imports = await Promise.all([10_000, 20_000].map((rows) => app.client.emit(ImportWorkflow, { rows })));
    await waitFor(async () => (await Promise.all(imports.map((h) => h.getState()))).every((r) => r.status === 'waiting'));
    importId = imports[0].id;
    await built;
  }, 180_000);

  afterAll(() => removeCliBin());

  it('runs show and runs list print a run\'s progress', async () => {
    const shown = await cli(['runs', 'show', importId]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/\nProgress:\s+12% \{"done":1200,"total":10000,"fraction":0\.12\}\n/);
    expect((await json<{ run: RunInfo }>(['runs', 'show', importId])).run.progress).toEqual({ done: 1200, total: 10_000, fraction: 0.12 });
    expect((await cli(['runs', 'list', '--workflow', 'import'])).stdout).toContain('progress 6% {"done":1200,"total":20000,"fraction":0.06}');
  }, 180_000);

  it('workflows pause: listed as paused, its runs held back; workflows resume runs them', async () => {
    const paused = await cli(['workflows', 'pause', 'checkout']);
    expect(paused).toMatchObject({ code: 0, stderr: '' });
    expect(paused.stdout).toMatch(/^Paused workflow checkout: no run of it is claimed until 'workflows resume checkout'/);
    expect((await cli(['workflows', 'list'])).stdout).toMatch(/\ncheckout\s+shop\s+paused\s+1\s+0\s+/);
    expect((await cli(['stats'])).stdout).toMatch(/\ncheckout\s+shop\s+paused\s+0\s+/);
    expect((await json<WorkflowStats>(['stats'])).workflows.find((w) => w.name === 'checkout')?.paused).toBe(true);
    expect((await json<WorkflowMeta[]>(['workflows', 'list'])).find((w) => w.name === 'checkout')?.pausedAt).toEqual(expect.any(String));
    expect((await cli(['workflows', 'show', 'checkout'])).stdout).toMatch(/\nState:\s+paused since .*: nothing is claimed until 'workflows resume checkout'\n/);

    const retried = await cli(['runs', 'retry', '--workflow', 'checkout', '--status', 'failed', '--since', '1h', '--limit', '2']);
    expect(retried).toMatchObject({ code: 0, stderr: '' });
    expect(retried.stdout).toMatch(/^Retried 2 failed run\(s\) of checkout created since \S+ \(at most 2\): they are queued again, attempt 1\.\n$/);
    const listed = await cli(['runs', 'list', '--workflow', 'checkout', '--status', 'queued']);
    expect(listed.stdout.match(/held back: its workflow is paused/g)).toHaveLength(2);
    expect((await cli(['runs', 'show', failed[0]])).stdout).toMatch(/\nStatus:\s+queued \(held back: its workflow is paused; workflows resume checkout\)\n/);
    const rest = await json<{ retried: number; filter: { workflow: string; status: string } }>(['runs', 'retry', '--workflow', 'checkout', '--status', 'failed']);
    expect(rest).toMatchObject({ retried: 1, filter: { workflow: 'checkout', status: 'failed' } });
    expect((await json<{ retried: number }>(['runs', 'retry', '--workflow', 'checkout', '--status', 'failed'])).retried).toBe(0);

    partnerDown = false;
    const resumed = await cli(['workflows', 'resume', 'checkout']);
    expect(resumed.stdout).toBe('Resumed workflow checkout: its 3 queued run(s) are claimed now.\n');
    await Promise.all(failed.map((id) => app.client.handle(id).result({ timeoutMs: 10_000 })));
    expect((await cli(['workflows', 'list'])).stdout).toMatch(/\ncheckout\s+shop\s+active\s+/);
  }, 180_000);

  it('runs cancel --workflow cancels the unfinished runs in bounded batches; a repeat cancels none', async () => {
    const first = await cli(['runs', 'cancel', '--workflow', 'import', '--status', 'waiting', '--limit', '1', '--reason', 'supplier feed withdrawn']);
    expect(first.stdout).toMatch(/^Canceled 1 waiting run\(s\) of import \(at most 1\)\.\n$/);
    expect((await json<{ canceled: number }>(['runs', 'cancel', '--workflow', 'import'])).canceled).toBe(1);
    expect((await json<{ canceled: number }>(['runs', 'cancel', '--workflow', 'import'])).canceled).toBe(0);
    const page = await json<RunPage>(['runs', 'list', '--workflow', 'import']);
    expect(page.runs.map((r) => r.status)).toEqual(['canceled', 'canceled']);
    expect(page.runs.map((r) => r.error?.message).sort()).toEqual(['The run was canceled: canceled in bulk (cancelRuns)', 'The run was canceled: supplier feed withdrawn']);
  }, 180_000);

  it('usage errors exit 2, an unknown workflow exits 1, and nothing changes', async () => {
    const usage = [
      [['runs', 'retry', '--workflow', 'checkout'], /runs retry --workflow needs --status failed or --status canceled/],
      [['runs', 'retry', failed[0], '--workflow', 'checkout'], /takes a run id or --workflow with filters, not both/],
      [['runs', 'retry'], /needs a run id, or --workflow <name>/],
      [['runs', 'retry', '--workflow', 'checkout', '--status', 'succeeded'], /Allowed choices are failed, canceled/],
      [['runs', 'retry', '--workflow', 'checkout', '--status', 'failed', '--since', 'yesterday'], /Use a time ago \('90s', '30m', '1h', '2d'\) or an ISO date/],
      [['runs', 'cancel', '--workflow', 'checkout', '--limit', '0'], /Use a whole number from 1/],
      [['runs', 'cancel', '--workflow', 'checkout', '--status', 'failed'], /Allowed choices are scheduled, queued, running, waiting/],
      [['workflows', 'pause'], /missing required argument 'name'/],
    ] as const;
    for (const [args, message] of usage) {
      const exit = await cli([...args]);
      expect({ args, code: exit.code, stdout: exit.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(exit.stderr).toMatch(message);
    }
    const unknown = await cli(['runs', 'retry', '--workflow', 'nope', '--status', 'failed']);
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toMatch(/^error: retryRuns: no workflow 'nope' is registered under prefix '\S+'\. List them with workflows list\.\n$/);
    expect((await cli(['workflows', 'pause', 'nope'])).code).toBe(1);
  }, 180_000);
});
