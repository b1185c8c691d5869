import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { ChildWorkflowError, NonRetriableError, Workflow, type GraphNode, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

// Gush's integration scenarios (integration_spec.rb) with eager scheduling: a node starts as soon as the
// nodes it comes after have succeeded, started by Redis in the call that ended the last of them.

let counters: Redis;
const key = uniquePrefix('graph');
const bump = (name: string) => counters.hincrby(key, name, 1);
const count = async (name: string) => Number((await counters.hget(key, name)) ?? 0);

interface TaskInput { name: string; gate?: string; fail?: boolean }

@Workflow('g-task')
@Injectable()
class TaskWorkflow {
  async execute(ctx: WorkflowContext<TaskInput>) {
    const { name, gate } = ctx.input;
    await bump(`node:${ctx.run.parentId}:${name}`);
    await counters.rpush(`${key}:order:${ctx.run.parentId}`, `start:${name}`);
    if (gate) await waitFor(async () => (await counters.get(`${key}:gate:${gate}`)) === 'open', 20_000);
    if (ctx.input.fail) throw new NonRetriableError(`${name} refuses`);
    await counters.rpush(`${key}:order:${ctx.run.parentId}`, `end:${name}`);
    // the names the dependencies' outputs carry (outputs nest no further: a mesh would grow them per level)
    const saw = ctx.dependencies ? Object.fromEntries(Object.entries(ctx.dependencies).map(([node, output]) => [node, (output as { name: string }).name])) : null;
    return { name, saw };
  }
}

@Workflow('g-gush')
@Injectable()
class GushWorkflow {
  async execute(ctx: WorkflowContext<{ gate: string }>) {
    await bump(`parent:${ctx.run.id}`);
    const results = await ctx.step.graph('pipeline', {
      fetchA: { workflow: TaskWorkflow, input: { name: 'fetchA' } },
      persistA: { workflow: TaskWorkflow, input: { name: 'persistA' }, after: ['fetchA'] },
      fetchB: { workflow: 'g-task', input: { name: 'fetchB', gate: ctx.input.gate } },
      persistB: { workflow: TaskWorkflow, input: { name: 'persistB' }, after: ['fetchB'] },
      report: { workflow: TaskWorkflow, input: { name: 'report' }, after: ['persistA', 'persistB'] },
    });
    return results;
  }
}

@Workflow('g-mesh')
@Injectable()
class MeshWorkflow {
  async execute(ctx: WorkflowContext<{ levels: number; width: number }>) {
    await bump(`parent:${ctx.run.id}`);
    const nodes: Record<string, GraphNode> = {};
    for (let l = 0; l < ctx.input.levels; l += 1) {
      for (let w = 0; w < ctx.input.width; w += 1) {
        const after = l === 0 ? [] : Array.from({ length: ctx.input.width }, (_, v) => `n${l - 1}-${v}`);
        nodes[`n${l}-${w}`] = { workflow: TaskWorkflow, input: { name: `n${l}-${w}` }, after };
      }
    }
    const results = await ctx.step.graph('mesh', nodes);
    return Object.values(results).filter((r) => r.status === 'succeeded').length;
  }
}

@Workflow('g-policies')
@Injectable()
class PoliciesWorkflow {
  async execute(ctx: WorkflowContext<{ policy: 'fail' | 'continue'; gate?: string }>) {
    await bump(`parent:${ctx.run.id}`);
    try {
      const results = await ctx.step.graph(
        'with-failure',
        {
          bad: { workflow: TaskWorkflow, input: { name: 'bad', fail: true } },
          afterBad: { workflow: TaskWorkflow, input: { name: 'afterBad' }, after: ['bad'] },
          afterAfterBad: { workflow: TaskWorkflow, input: { name: 'afterAfterBad' }, after: ['afterBad', 'good'] },
          good: { workflow: TaskWorkflow, input: { name: 'good', gate: ctx.input.gate } },
          afterGood: { workflow: TaskWorkflow, input: { name: 'afterGood' }, after: ['good'] },
        },
        { onNodeFailure: ctx.input.policy },
      );
      return Object.fromEntries(Object.entries(results).map(([name, r]) => [name, r.status + (r.error ? `:${r.error.message}` : '')]));
    } catch (error) {
      return { caught: error instanceof ChildWorkflowError, message: (error as Error).message };
    }
  }
}

type BadKind = 'unknown-after' | 'cycle' | 'unknown-workflow' | 'other-queue' | 'too-big';

@Workflow('g-bad-graph', { maxAttempts: 1 })
@Injectable()
class BadGraphWorkflow {
  async execute(ctx: WorkflowContext<{ kind: BadKind }>) {
    const graphs: Record<BadKind, Record<string, GraphNode>> = {
      'too-big': Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`n${i}`, { workflow: TaskWorkflow }])),
      'unknown-after': { a: { workflow: TaskWorkflow, after: ['nope'] } },
      cycle: { a: { workflow: TaskWorkflow, after: ['c'] }, b: { workflow: TaskWorkflow, after: ['a'] }, c: { workflow: TaskWorkflow, after: ['b'] } },
      'unknown-workflow': { a: { workflow: 'no-such-workflow' } },
      'other-queue': { a: { workflow: OtherQueueWorkflow } },
    };
    return ctx.step.graph('bad', graphs[ctx.input.kind]);
  }
}

@Workflow('g-other-queue', { queue: 'elsewhere' })
@Injectable()
class OtherQueueWorkflow {
  execute() {
    return 1;
  }
}

@Workflow('g-replays')
@Injectable()
class ReplaysWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>) {
    await bump(`parent:${ctx.run.id}`);
    const results = await ctx.step.graph('two', {
      first: { workflow: TaskWorkflow, input: { name: 'first' } },
      second: { workflow: TaskWorkflow, input: { name: 'second' }, after: ['first'] },
    });
    await ctx.step.sleep('after-graph', 20);
    return results.second.output;
  }
}

describe('ctx.step.graph: a DAG of child runs resolved in Redis (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    counters = redisFor(redis.url);
    // executionCache off: these tests count the parent's executions (before and after the graph, and
    // replays), which a warm resume would make one; the warm path is tested below
    app = await startApp({ connection: redis.url, prefix: uniquePrefix('graph'), executionCache: false, worker: { concurrency: 20, reaperIntervalMs: 20 } }, [
      TaskWorkflow,
      GushWorkflow,
      MeshWorkflow,
      PoliciesWorkflow,
      BadGraphWorkflow,
      OtherQueueWorkflow,
      ReplaysWorkflow,
    ]);
  });

  afterAll(async () => {
    await app?.close();
    counters?.disconnect();
    await redis?.stop();
  });

  it('starts persistA as soon as fetchA succeeded, while fetchB is still running; report sees both persists', async () => {
    const handle = await app.client.emit(GushWorkflow, { gate: 'gush-1' });
    // persistA ends while fetchB waits at its gate: no level-by-level scheduling
    await waitFor(async () => (await count(`node:${handle.id}:persistA`)) === 1 && (await counters.lrange(`${key}:order:${handle.id}`, 0, -1)).includes('end:persistA'));
    const order = await counters.lrange(`${key}:order:${handle.id}`, 0, -1);
    expect(order).toContain('start:fetchB');
    expect(order).not.toContain('end:fetchB');
    expect(order).not.toContain('start:persistB');
    expect(order).not.toContain('start:report');
    await counters.set(`${key}:gate:gush-1`, 'open');
    const results = (await handle.result({ timeoutMs: 15_000 })) as Record<string, { status: string; output: { name: string; saw: unknown }; runId: string }>;
    expect(Object.keys(results).sort()).toEqual(['fetchA', 'fetchB', 'persistA', 'persistB', 'report']);
    expect(Object.values(results).every((r) => r.status === 'succeeded')).toBe(true);
    expect(results.report.output.saw).toEqual({ persistA: 'persistA', persistB: 'persistB' });
    expect(results.persistB.output.saw).toEqual({ fetchB: 'fetchB' });
    // a root comes after nothing
    expect(results.fetchA.output.saw).toEqual({});
    for (const node of ['fetchA', 'persistA', 'fetchB', 'persistB', 'report']) expect(await count(`node:${handle.id}:${node}`)).toBe(1);
    const order2 = await counters.lrange(`${key}:order:${handle.id}`, 0, -1);
    expect(order2.indexOf('start:report')).toBeGreaterThan(order2.indexOf('end:persistB'));
    // the parent: executed twice (before and after the graph), parked once, woken once
    expect(await count(`parent:${handle.id}`)).toBe(2);
    const history = await app.client.getRunHistory(handle.id);
    expect(history.filter((e) => e.type === 'parked')).toHaveLength(1);
    expect(history.filter((e) => e.type === 'woken' || e.type === 'resumed')).toHaveLength(1);
    // the node runs are the parent's children
    const children = (await app.client.listRuns({ parentId: handle.id, limit: 10 })).runs;
    expect(children.map((r) => r.id).sort()).toEqual(Object.values(results).map((r) => r.runId).sort());
    expect(children.every((r) => r.parentId === handle.id && r.workflow === 'g-task')).toBe(true);
    const steps = await app.client.getRunSteps(handle.id);
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatchObject({ name: 'pipeline', kind: 'graph', status: 'succeeded' });
  });

  it('runs a 10-level x 10-wide mesh (each node has 10 dependents): every node exactly once, in level order', async () => {
    const handle = await app.client.emit(MeshWorkflow, { levels: 10, width: 10 });
    expect(await handle.result({ timeoutMs: 30_000 })).toBe(100);
    for (let l = 0; l < 10; l += 1) for (let w = 0; w < 10; w += 1) expect(await count(`node:${handle.id}:n${l}-${w}`)).toBe(1);
    const order = await counters.lrange(`${key}:order:${handle.id}`, 0, -1);
    for (let l = 1; l < 10; l += 1) {
      const lastEndBefore = Math.max(...Array.from({ length: 10 }, (_, w) => order.indexOf(`end:n${l - 1}-${w}`)));
      const firstStart = Math.min(...Array.from({ length: 10 }, (_, w) => order.indexOf(`start:n${l}-${w}`)));
      expect(firstStart).toBeGreaterThan(lastEndBefore);
    }
    expect(await count(`parent:${handle.id}`)).toBe(2);
  }, 40_000);

  it("'continue': the nodes after a failed one are skipped, the others run, graph() resolves with every result", async () => {
    const handle = await app.client.emit(PoliciesWorkflow, { policy: 'continue' });
    expect(await handle.result({ timeoutMs: 15_000 })).toEqual({
      bad: 'failed:bad refuses',
      afterBad: 'skipped',
      afterAfterBad: 'skipped',
      good: 'succeeded',
      afterGood: 'succeeded',
    });
    expect(await count(`node:${handle.id}:afterBad`)).toBe(0);
    expect(await count(`node:${handle.id}:afterAfterBad`)).toBe(0);
    expect(await count(`node:${handle.id}:afterGood`)).toBe(1);
    expect(await count(`parent:${handle.id}`)).toBe(2);
  });

  it("'fail' (the default): graph() rejects with ChildWorkflowError at the first failure; nodes after it are never created", async () => {
    const handle = await app.client.emit(PoliciesWorkflow, { policy: 'fail', gate: 'fail-1' });
    const outcome = (await handle.result({ timeoutMs: 15_000 })) as { caught: boolean; message: string };
    expect(outcome.caught).toBe(true);
    expect(outcome.message).toContain("node 'bad' failed: bad refuses");
    // 'good' is still running (left running); what comes after it is not started once the graph failed
    await counters.set(`${key}:gate:fail-1`, 'open');
    await waitFor(async () => (await counters.lrange(`${key}:order:${handle.id}`, 0, -1)).includes('end:good'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await count(`node:${handle.id}:afterGood`)).toBe(0);
    expect(await count(`node:${handle.id}:afterBad`)).toBe(0);
    expect(await count(`parent:${handle.id}`)).toBe(2);
  });

  it('refuses a bad graph before anything is written, saying what to change', async () => {
    const expectations: [string, RegExp][] = [
      ['unknown-after', /node 'a' comes after 'nope', which is not a node of this graph/],
      ['cycle', /the graph has a cycle through 'a', 'b', 'c'/],
      ['unknown-workflow', /graph node 'a': Unknown workflow 'no-such-workflow'/],
      ['other-queue', /lives in queue 'elsewhere', but the nodes of a graph run in their parent's queue/],
      ['too-big', /10001 nodes; a graph has at most 10000/],
    ];
    for (const [kind, message] of expectations as [BadKind, RegExp][]) {
      const handle = await app.client.emit(BadGraphWorkflow, { kind });
      await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow(message);
      expect((await app.client.listRuns({ parentId: handle.id })).runs).toHaveLength(0);
      const graphKeys = await counters.keys(`*:g:${handle.id}:*`);
      expect(graphKeys).toEqual([]);
    }
  });

  it('replays the graph step from its record: the nodes are not started again', async () => {
    const handle = await app.client.emit(ReplaysWorkflow, { id: 'r1' });
    expect(await handle.result({ timeoutMs: 15_000 })).toEqual({ name: 'second', saw: { first: 'first' } });
    expect(await count(`parent:${handle.id}`)).toBe(3);
    expect(await count(`node:${handle.id}:first`)).toBe(1);
    expect(await count(`node:${handle.id}:second`)).toBe(1);
  });

  it('resumes a warm parent from the graph step without replaying it (the execution cache on)', async () => {
    // every run warm, however few its records (the default parks runs of fewer than 32 cold)
    const warm = await startApp({ connection: redis.url, prefix: uniquePrefix('graph-warm'), worker: { concurrency: 20, reaperIntervalMs: 20 }, executionCache: { minRecords: 0 } }, [TaskWorkflow, PoliciesWorkflow]);
    try {
      for (const policy of ['continue', 'fail'] as const) {
        const handle = await warm.client.emit(PoliciesWorkflow, { policy });
        const outcome = await handle.result({ timeoutMs: 15_000 });
        if (policy === 'continue') expect(outcome).toMatchObject({ bad: 'failed:bad refuses', afterBad: 'skipped', good: 'succeeded', afterGood: 'succeeded' });
        else expect(outcome).toMatchObject({ caught: true, message: expect.stringContaining("node 'bad' failed: bad refuses") });
        expect(await count(`parent:${handle.id}`)).toBe(1); // resumed where it parked: the handler body ran once
      }
    } finally {
      await warm.close();
    }
  });

  it('a cancel of the parent cancels the running nodes, and the nodes after them are never created', async () => {
    const handle = await app.client.emit(GushWorkflow, { gate: 'cancel-1' });
    await waitFor(async () => (await count(`node:${handle.id}:fetchB`)) === 1 && (await count(`node:${handle.id}:persistA`)) === 1);
    await waitFor(async () => (await counters.lrange(`${key}:order:${handle.id}`, 0, -1)).includes('end:persistA'));
    expect(await app.client.cancelRun(handle.id)).toBe(true);
    const fetchB = (await app.client.listRuns({ parentId: handle.id, limit: 10 })).runs.find((r) => r.status !== 'succeeded');
    await waitFor(async () => (await app.client.getRun(fetchB!.id))?.status === 'canceled');
    await counters.set(`${key}:gate:cancel-1`, 'open');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await count(`node:${handle.id}:persistB`)).toBe(0);
    expect(await count(`node:${handle.id}:report`)).toBe(0);
  });
});
