/**
 * Versions in one process against a real Redis: what a run records, listings, stats, the CLI and the
 * dashboard API; pinned claims (two apps of different versions); retryRun's onVersion; ctx.patched
 * decided from records (a run parked across a change of code) and in runInline.
 * (Real processes of two deployments: versioning-processes.e2e.spec.ts.)
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import {
  InvalidArgumentError,
  Workflow,
  WorkflowConfigurationError,
  runInline,
  type WorkflowContext,
} from '../../lib/index.js';
import { runCli } from '../../lib/cli/program.js';
import { DashboardApi } from '../../lib/dashboard/dashboard.api.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

/** Which code the 'vp-order' handler runs: flipped by a test to stand for a deploy. */
let release: 'old' | 'new' = 'old';
const executed: string[] = [];

@Workflow('vp-order')
@Injectable()
class OrderWorkflow {
  async execute(ctx: WorkflowContext<{ napMs: number }>) {
    await ctx.step.run('reserve', () => 'reserved');
    if (release === 'new' && ctx.patched('express')) await ctx.step.run('express-label', () => executed.push(`${ctx.run.id}:express`));
    await ctx.step.sleep('nap', ctx.input.napMs);
    return ctx.step.run('ship', () => (release === 'new' && ctx.patched('express') ? 'express' : 'standard'));
  }
}

@Workflow('vp-parent')
@Injectable()
class ParentWorkflow {
  async execute(ctx: WorkflowContext<{ queue?: string }>) {
    const child = await ctx.step.runWorkflow('child', 'vp-child', {}, ctx.input.queue ? { queue: ctx.input.queue } : undefined);
    return { child };
  }
}

@Workflow('vp-child')
@Injectable()
class ChildWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.run.id;
  }
}

@Workflow('vp-pinned', { versioning: 'pinned' })
@Injectable()
class PinnedWorkflow {
  static by: Record<string, string> = {};
  async execute(ctx: WorkflowContext<{ tag: string }>) {
    return ctx.step.run('work', () => ctx.run.id);
  }
}

@Workflow('vp-pinned-limited', { versioning: 'pinned', maxConcurrency: 2 })
@Injectable()
class PinnedLimitedWorkflow {
  async execute() {
    return 'ok';
  }
}

@Workflow('vp-pinned-sleeper', { versioning: 'pinned' })
@Injectable()
class PinnedSleeperWorkflow {
  async execute(ctx: WorkflowContext<{ napMs: number }>) {
    await ctx.step.run('before', () => 'before');
    await ctx.step.sleep('nap', ctx.input.napMs);
    return ctx.step.run('after', () => ctx.run.id);
  }
}

// pinned and flow-controlled: a run its key admits later goes to its version's ready set
@Workflow('vp-pinned-keyed', { versioning: 'pinned', concurrency: { key: (input: { customer: string }) => input.customer, limit: 1 } })
@Injectable()
class PinnedKeyedWorkflow {
  async execute(ctx: WorkflowContext<{ customer: string }>) {
    return ctx.step.run('work', () => ctx.run.id);
  }
}

const ALL = [OrderWorkflow, ParentWorkflow, ChildWorkflow, PinnedWorkflow, PinnedLimitedWorkflow, PinnedSleeperWorkflow, PinnedKeyedWorkflow];

describe('versions', () => {
  const suite = useSuiteRedis();
  const start = async (options: Parameters<typeof startApp>[0], providers = ALL): Promise<TestApp> => {
    const app = await startApp(options, providers);
    suite.apps.push(app);
    return app;
  };

  it('a run records the version of the app that emitted it (a child its parent\'s); getRun, listRuns by version, stats', async () => {
    const prefix = uniquePrefix('vp-record');
    const url = suite.redis.url;
    const worker = await start({
      connection: url,
      prefix,
      version: '2026.12.07-1',
      queues: { other: { partitions: 2 } },
      worker: { queues: ['default', 'other'], reaperIntervalMs: 20 },
    });
    const plain = await start({ connection: url, prefix, worker: false });
    const v1 = await worker.client.emit('vp-child', {});
    const none = await plain.client.emit('vp-child', {});
    // a child in its parent's shard (created by the park) and one on another queue (emitted by the worker)
    const parent = await plain.client.emit('vp-parent', {});
    const parentV = await worker.client.emit('vp-parent', { queue: 'other' });
    await Promise.all([v1, none, parent, parentV].map((r) => r.result({ timeoutMs: 10_000 })));
    expect((await v1.getState()).version).toBe('2026.12.07-1');
    expect((await v1.getState()).pinned).toBeUndefined();
    expect((await none.getState()).version).toBeUndefined();
    const childOf = async (id: string) => (await worker.client.getRun(((await worker.client.getRun(id))!.output as { child: string }).child))!;
    expect((await childOf(parent.id)).version).toBeUndefined();
    const child = await childOf(parentV.id);
    expect(child.queue).toBe('other');
    expect(child.version).toBe('2026.12.07-1');

    // a run without a version stores nothing for it
    expect(await suite.direct.hexists(`{${prefix}:default:0}:r:${none.id}`, 'v')).toBe(0);
    const listed = await worker.client.listRuns({ workflow: 'vp-child', version: '2026.12.07-1' });
    expect(listed.runs.map((r) => r.id).sort()).toEqual([v1.id, child.id].sort());
    expect((await worker.client.listRuns({ version: 'nope' })).runs).toEqual([]);
    await expect(worker.client.listRuns({ version: '' })).rejects.toThrow(/version must be a non-empty string/);

    // runs in flight per version: a sleeping order counts, finished runs do not
    const sleeping = await worker.client.emit('vp-order', { napMs: 60_000 });
    await waitFor(async () => (await sleeping.getState()).status === 'waiting');
    const stats = await plain.client.getStats();
    expect(stats.workflows.find((w) => w.name === 'vp-order')?.versions).toEqual([
      { version: '2026.12.07-1', pinned: 0, unpinned: 1, pinnedReady: 0, workers: 1, heldBack: 0 },
    ]);
    expect(stats.workflows.find((w) => w.name === 'vp-child')?.versions).toBeUndefined();
    expect(stats.workers.versions).toEqual([{ version: '2026.12.07-1', workers: 1 }]);
    await worker.client.cancelRun(sleeping.id);
    expect((await plain.client.getStats()).workflows.find((w) => w.name === 'vp-order')?.versions).toBeUndefined();
  }, 30_000);

  it('refuses a version that is not a build id, and onVersion without one', async () => {
    const prefix = uniquePrefix('vp-bad');
    await expect(start({ connection: suite.redis.url, prefix, version: 'a:b', worker: false })).rejects.toThrow(WorkflowConfigurationError);
    await expect(start({ connection: suite.redis.url, prefix, version: 'a:b', worker: false })).rejects.toThrow(/1 to 64 letters, digits and \. _ \+ -/);
    const app = await start({ connection: suite.redis.url, prefix, worker: false });
    const run = await app.client.emit('vp-child', {});
    await expect(app.client.retryRun(run.id, { onVersion: 'current' })).rejects.toThrow(InvalidArgumentError);
    await expect(app.client.retryRun(run.id, { onVersion: 'current' })).rejects.toThrow(/set WorkflowModule.forRoot\(\{ version \}\)/);
    await expect(app.client.retryRun(run.id, { onVersion: 'latest' as 'current' })).rejects.toThrow(/onVersion must be 'current'/);
    expect((await run.getState()).status).toBe('queued');
  });

  it('pinned runs are claimed only by workers of their version, also with maxConcurrency; a held-back one is moved by onVersion', async () => {
    const prefix = uniquePrefix('vp-pin');
    const url = suite.redis.url;
    const v2 = await start({ connection: url, prefix, version: 'v2' });
    const apiV1 = await start({ connection: url, prefix, version: 'v1', worker: false });
    const held = await Promise.all(Array.from({ length: 5 }, (_, i) => apiV1.client.emit(PinnedWorkflow, { tag: `t${i}` })));
    const heldLimited = await apiV1.client.emit(PinnedLimitedWorkflow, {});
    const mine = await v2.client.emit(PinnedWorkflow, { tag: 'mine' });
    expect(await mine.result({ timeoutMs: 10_000 })).toBe(mine.id);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const run of [...held, heldLimited]) {
      const state = await run.getState();
      expect(state).toMatchObject({ status: 'queued', version: 'v1', pinned: true });
    }
    const stats = await v2.client.getStats();
    expect(stats.workflows.find((w) => w.name === 'vp-pinned')?.versions).toEqual([
      { version: 'v1', pinned: 5, unpinned: 0, pinnedReady: 5, workers: 0, heldBack: 5 },
    ]);
    expect(stats.workflows.find((w) => w.name === 'vp-pinned')?.versioning).toBe('pinned');
    // the dashboard and the CLI say the same
    const dashboard = new DashboardApi(v2.client, { readOnly: false } as never);
    expect((await dashboard.runs({ workflow: 'vp-pinned', version: 'v1' })).runs).toHaveLength(5);
    expect((await dashboard.runs({ workflow: 'vp-pinned', version: 'v1' })).runs[0]).toMatchObject({ version: 'v1', pinned: true });

    // A worker of v1 takes them (and never the v2 ones): started, it drains them.
    const v1 = await start({ connection: url, prefix, version: 'v1' });
    await Promise.all(held.map((r) => r.result({ timeoutMs: 10_000 })));
    await heldLimited.result({ timeoutMs: 10_000 });
    const workers = (await v2.client.getStats()).workers.list;
    const v1Id = workers.find((w) => w.version === 'v1')!.id;
    const v2Id = workers.find((w) => w.version === 'v2')!.id;
    for (const run of [...held, heldLimited]) expect((await run.getState()).workerId).toBe(v1Id);
    expect((await mine.getState()).workerId).toBe(v2Id);
    await v1.close();

    // one more v1 run, held back again; moved to v2 while queued, it runs there at once
    const stranded = await apiV1.client.emit(PinnedWorkflow, { tag: 'late' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await stranded.getState()).status).toBe('queued');
    await v2.client.retryRun(stranded.id, { onVersion: 'current' });
    expect(await stranded.result({ timeoutMs: 10_000 })).toBe(stranded.id);
    expect(await stranded.getState()).toMatchObject({ version: 'v2', pinned: true });
    // a finished run: nothing to move
    await expect(v2.client.retryRun(stranded.id, { onVersion: 'current' })).rejects.toThrow(/has succeeded/);
  }, 30_000);

  it('a pinned run of a flow key, admitted when its key frees, waits in its version\'s ready set', async () => {
    const prefix = uniquePrefix('vp-keyed');
    const url = suite.redis.url;
    const v2 = await start({ connection: url, prefix, version: 'v2' });
    const apiV1 = await start({ connection: url, prefix, version: 'v1', worker: false });
    const [first, second, third] = await Promise.all([0, 1, 2].map(() => apiV1.client.emit(PinnedKeyedWorkflow, { customer: 'acme' })));
    // the first holds the key's slot (ready for v1); canceling it admits the second (flow_settle)
    await v2.client.cancelRun(first.id);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // a v2 worker never takes it: it is in v1's ready set, not the workflow's unpinned one
    expect(await second.getState()).toMatchObject({ status: 'queued', version: 'v1', pinned: true });
    expect(await third.getState()).toMatchObject({ status: 'queued', delayedBy: 'concurrency' });
    const v1 = await start({ connection: url, prefix, version: 'v1' });
    expect(await second.result({ timeoutMs: 10_000 })).toBe(second.id);
    expect(await third.result({ timeoutMs: 10_000 })).toBe(third.id);
    const v1Id = (await v2.client.getStats()).workers.list.find((w) => w.version === 'v1')!.id;
    for (const run of [second, third]) expect((await run.getState()).workerId).toBe(v1Id);
    await v1.close();
  }, 30_000);

  it('onVersion on a waiting pinned run changes its version; it wakes on the new version\'s worker', async () => {
    const prefix = uniquePrefix('vp-wait');
    const url = suite.redis.url;
    const v1 = await start({ connection: url, prefix, version: 'v1' });
    const emitted = await v1.client.emit(PinnedSleeperWorkflow, { napMs: 1_500 });
    await waitFor(async () => (await emitted.getState()).status === 'waiting');
    await v1.close();
    const v2 = await start({ connection: url, prefix, version: 'v2' });
    const run = v2.client.handle<string>(emitted.id);
    await v2.client.retryRun(run.id, { onVersion: 'current' });
    expect(await run.getState()).toMatchObject({ status: 'waiting', version: 'v2', pinned: true });
    expect(await run.result({ timeoutMs: 10_000 })).toBe(run.id);
    const v2Id = (await v2.client.getStats()).workers.list.find((w) => w.version === 'v2')!.id;
    expect((await run.getState()).workerId).toBe(v2Id);
    const stats = await v2.client.getStats();
    expect(stats.workflows.find((w) => w.name === 'vp-pinned-sleeper')?.versions).toBeUndefined();
  }, 20_000);

  it('patched: a run parked across the change keeps the old path; a new run takes the new one and keeps it on replay', async () => {
    const prefix = uniquePrefix('vp-patch');
    release = 'old';
    // A deploy is a new process, which replays the parked run: no execution kept warm in this one.
    const app = await start({ connection: suite.redis.url, prefix, version: 'v1', executionCache: false });
    const old = await app.client.emit(OrderWorkflow, { napMs: 800 });
    await waitFor(async () => (await old.getState()).status === 'waiting');
    release = 'new'; // the deploy: the same process stands for the new code
    const fresh = await app.client.emit(OrderWorkflow, { napMs: 300 });
    expect(await fresh.result({ timeoutMs: 10_000 })).toBe('express');
    expect(await old.result({ timeoutMs: 10_000 })).toBe('standard');
    expect(executed).toEqual([`${fresh.id}:express`]);
    const steps = await app.client.getRunSteps(fresh.id);
    expect(steps.map((s) => [s.name, s.kind])).toEqual([
      ['reserve', 'step'],
      ['patched:express', 'patch'],
      ['express-label', 'step'],
      ['nap', 'sleep'],
      ['ship', 'step'],
    ]);
    expect((await app.client.getRunSteps(old.id)).map((s) => s.name)).toEqual(['reserve', 'nap', 'ship']);
  }, 20_000);

  it('patched in runInline: the new path, or the old one for the patch ids in unpatched', async () => {
    release = 'new';
    const taken = await runInline(new OrderWorkflow(), { input: { napMs: 1 } });
    expect(taken.output).toBe('express');
    expect(taken.steps.find((s) => s.kind === 'patch')).toMatchObject({ name: 'patched:express', status: 'succeeded' });
    const old = await runInline(new OrderWorkflow(), { input: { napMs: 1 }, unpatched: ['express'] });
    expect(old.output).toBe('standard');
    expect(old.steps.map((s) => s.name)).toEqual(['reserve', 'nap', 'ship']);
  });

  it('the CLI shows versions and held-back runs', async () => {
    const prefix = uniquePrefix('vp-cli');
    const url = suite.redis.url;
    await start({ connection: url, prefix, version: 'v2' });
    const apiV1 = await start({ connection: url, prefix, version: 'v1', worker: false });
    const held = await apiV1.client.emit(PinnedWorkflow, { tag: 'cli' });
    const cli = async (...args: string[]) => {
      let out = '';
      const code = await runCli([...args, '--redis', url, '--prefix', prefix], { out: (t) => (out += t), err: (t) => (out += t), env: {} });
      return { code, out };
    };
    const stats = await cli('stats');
    expect(stats.out).toMatch(/Runs in flight by version\nWORKFLOW\s+VERSION\s+PINNED\s+UNPINNED\s+PINNED READY\s+WORKERS\s+HELD BACK\nvp-pinned\s+v1\s+1\s+0\s+1\s+0\s+1/);
    expect(stats.out).toContain("vp-pinned: 1 run(s) held back: no worker of version v1; retryRun(id, { onVersion: 'current' })");
    expect(stats.out).toMatch(/WORKER\s+HOST\s+PID\s+VERSION/);
    const list = await cli('runs', 'list', '--workflow', 'vp-pinned', '--run-version', 'v1');
    expect(list.out).toMatch(/VERSION/);
    expect(list.out).toContain(`${held.id}`);
    expect(list.out).toContain('v1 (pinned)');
    expect((await cli('runs', 'show', held.id)).out).toMatch(/Version:\s+v1 \(pinned\)/);
    expect((await cli('workflows', 'list')).out).toMatch(/vp-pinned\s+default\s+active\s+1\s+v2 \(pinned\)/);
    const moved = await cli('runs', 'retry', held.id, '--to-version', 'v2');
    expect(moved.out).toMatch(/v2/);
    expect(await held.result({ timeoutMs: 10_000 })).toBe(held.id);
  }, 30_000);
});
