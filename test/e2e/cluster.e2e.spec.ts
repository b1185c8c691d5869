import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { CanceledError, Step, Workflow, type WorkflowContext } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Injectable()
class Greeter {
  @Step()
  async greet(name: string) {
    return `hello ${name}`;
  }
}

@Workflow('cl-child', { queue: 'cl-children' })
@Injectable()
class ChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n * 10;
  }
}

@Workflow('cl-parent', { queue: 'cl-main' })
@Injectable()
class ParentWorkflow {
  constructor(private readonly greeter: Greeter) {}
  async execute(ctx: WorkflowContext<{ name: string; n: number }>) {
    const greeting = await this.greeter.greet(ctx.input.name);
    await ctx.step.sleep('nap', 50);
    const children = await Promise.all(
      Array.from({ length: ctx.input.n }, (_, i) => ctx.step.runWorkflow(`child-${i}`, ChildWorkflow, { n: i })),
    );
    const approval = await ctx.step.waitForEvent<{ ok: boolean }>('approval', { event: 'cl.approved', key: ctx.input.name, timeoutMs: 10_000 });
    return { greeting, sum: children.reduce((a, b) => a + b, 0), approval };
  }
}

@Workflow('cl-blocked', { queue: 'cl-main' })
@Injectable()
class BlockedWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    await ctx.step.waitForEvent('never', { event: 'cl.never', key: ctx.input.id });
    return 'not reached';
  }
}

const seen = new Map<string, number>();

@Workflow('cl-flaky', { queue: 'cl-main', maxAttempts: 2, backoff: { type: 'fixed', delayMs: 50 } })
@Injectable()
class FlakyWorkflow {
  async execute(ctx: WorkflowContext<{ id: string; fail?: boolean; holdMs?: number }>) {
    await ctx.step.run('reserve', () => 'reserved', {
      compensate: () => void seen.set(`released:${ctx.input.id}`, 1),
    });
    if (ctx.input.holdMs) await ctx.step.run('hold', () => new Promise((resolve) => setTimeout(resolve, ctx.input.holdMs)));
    if (ctx.input.fail || ctx.run.attempt === 1) throw new Error(`attempt ${ctx.run.attempt} fails`);
    return ctx.run.attempt;
  }
}

const releasedHeld = new Set<string>();

/** Registered only in the apps of the release test, so that the run is claimed by the app that is shut down. */
@Workflow('cl-release', { queue: 'cl-main', maxAttempts: 2, backoff: { type: 'fixed', delayMs: 50 } })
@Injectable()
class ReleasedWorkflow {
  async execute(ctx: WorkflowContext<{ holdMs: number }>) {
    // The first execution holds (until its app shuts down); the one that takes over does not.
    const first = !releasedHeld.has(ctx.run.id);
    releasedHeld.add(ctx.run.id);
    await ctx.step.run('hold', () => (first ? new Promise((resolve) => setTimeout(resolve, ctx.input.holdMs).unref()) : 'quick'));
    return ctx.run.attempt;
  }
}

describe('Redis Cluster (3 primaries): every function works with keys spread over nodes', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;
  const appPrefix = uniquePrefix('cl');

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await startApp(
      {
        connection: { nodes: cluster.nodes },
        prefix: appPrefix,
        queues: { 'cl-main': { partitions: 4 }, 'cl-children': { partitions: 4 } },
        worker: { concurrency: 30, reaperIntervalMs: 20, leaseMs: 600 },
        shutdownGraceMs: 100,
      } as never,
      [Greeter, ChildWorkflow, ParentWorkflow, BlockedWorkflow, FlakyWorkflow],
    );
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('releases a run still executing at shutdown to another app at once', async () => {
    const options = {
      connection: { nodes: cluster.nodes },
      prefix: appPrefix,
      queues: { 'cl-main': { partitions: 4 } },
      worker: { concurrency: 5, leaseMs: 30_000, reaperIntervalMs: 20 },
      shutdownGraceMs: 50,
    } as never;
    const other = await startApp(options, [ReleasedWorkflow]);
    const handle = await other.client.emit(ReleasedWorkflow, { holdMs: 60_000 });
    await waitFor(async () => (await handle.getState()).status === 'running', 10_000);
    await other.close();
    expect((await app.client.getRunHistory(handle.id)).some((e) => e.type === 'released')).toBe(true);
    // Released, not left to its 30 s lease: the next app takes it at once. (Release does not use up the attempt.)
    const taker = await startApp(options, [ReleasedWorkflow]);
    try {
      expect(await app.client.handle(handle.id).result({ timeoutMs: 10_000 })).toBe(1);
    } finally {
      await taker.close();
    }
  });

  it('loads the Function library on every primary', async () => {
    const client = new Cluster(cluster.nodes);
    await new Promise((resolve) => client.once('ready', resolve));
    try {
      const builds = await Promise.all(client.nodes('master').map((node) => node.call('FCALL_RO', 'wf1_version', 0)));
      expect(builds).toHaveLength(3);
      expect(new Set(builds).size).toBe(1);
    } finally {
      client.disconnect();
    }
  });

  it('runs steps, sleeps, children on another queue, and events across shards on several nodes', async () => {
    const handles = await Promise.all(
      Array.from({ length: 8 }, (_, i) => app.client.emit(ParentWorkflow, { name: `p${i}`, n: 5 })),
    );
    await waitFor(async () => (await Promise.all(handles.map((h) => h.getState()))).every((r) => r.status === 'waiting' && JSON.stringify(r.waitingFor).includes('cl.approved')), 20_000);
    const woken = await Promise.all(handles.map((_, i) => app.client.sendEvent('cl.approved', { ok: true }, { key: `p${i}` })));
    expect(woken).toEqual(handles.map(() => 1));
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
    outputs.forEach((output, i) => expect(output).toEqual({ greeting: `hello p${i}`, sum: 100, approval: { ok: true } }));
    const shards = new Set(handles.map((h) => h.id.split('.').slice(1).join('.')));
    expect(shards.size).toBeGreaterThan(1);
    const listed = await app.client.listRuns({ workflow: 'cl-parent', limit: 100 });
    expect(listed.runs.map((r) => r.id).sort()).toEqual(handles.map((h) => h.id).sort());
    const stats = await app.client.getStats();
    expect(stats.workflows.find((w) => w.name === 'cl-child')!.counts.succeeded).toBe(40);
  });

  it('retries, fails with compensations, renews leases, schedules and releases runs on a cluster', async () => {
    // fail + retry (backoff timer), then success
    expect(await app.client.run(FlakyWorkflow, { id: 'r1' }, { timeoutMs: 10_000 })).toBe(2);
    // final failure with a compensation (finalize, then failed)
    await expect(app.client.run(FlakyWorkflow, { id: 'r2', fail: true }, { timeoutMs: 10_000 })).rejects.toThrow('attempt 2 fails');
    expect(seen.get('released:r2')).toBe(1);
    // a step longer than the lease: heartbeats keep it
    const held = await app.client.emit(FlakyWorkflow, { id: 'r3', holdMs: 1_500 }, { delayMs: 100 });
    expect((await held.getState()).status).toBe('scheduled');
    expect(await held.result({ timeoutMs: 15_000 })).toBe(2);
    expect((await app.client.getRunHistory(held.id)).some((e) => e.type === 'lease-expired')).toBe(false);
  });

  it('cancels and retries runs on a cluster', async () => {
    const handle = await app.client.emit(BlockedWorkflow, { id: 'b1' });
    await waitFor(async () => (await handle.getState()).status === 'waiting', 10_000);
    expect(await app.client.cancelRun(handle.id)).toBe(true);
    await expect(handle.result({ timeoutMs: 5_000 })).rejects.toBeInstanceOf(CanceledError);
    await app.client.retryRun(handle.id);
    await waitFor(async () => (await handle.getState()).status === 'waiting', 10_000);
    expect(await handle.cancel()).toBe(true);
  });
});
