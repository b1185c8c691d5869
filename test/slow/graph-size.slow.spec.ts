/**
 * ctx.step.graph at 10,000 nodes (ARCHITECTURE.md section 7): a graph is written in bounded calls, a node with
 * 9,998 dependents releases them over many calls, a node after 9,998 others reads their outputs, and a failed
 * source skips 9,999 nodes through housekeeping; no FCALL runs longer than 5 ms (SLOWLOG is the judge).
 * Prints the cost: FCALLs per node and the graph's memory per node.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { NonRetriableError, Workflow, type GraphNode, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { fcallProfile, prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, useSuiteRedis, type TestApp } from '../support/workflow-app.js';

const N = Number(process.env.GRAPH_N ?? 10_000);
const PROFILE = process.env.BOUNDED_PROFILE === '1';

@Workflow('gs-node')
@Injectable()
class NodeWorkflow {
  execute(ctx: WorkflowContext<{ i: number; fail?: boolean }>) {
    if (ctx.input.fail) throw new NonRetriableError('the source fails');
    const dependencies = Object.keys(ctx.dependencies ?? {}).length;
    return dependencies > 1 ? dependencies : ctx.input.i;
  }
}

/** A star: one source, N - 2 nodes after it, one sink after them all. */
@Workflow('gs-star')
@Injectable()
class StarWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; failSource?: boolean }>) {
    const nodes: Record<string, GraphNode> = { source: { workflow: NodeWorkflow, input: { i: 0, fail: ctx.input.failSource } } };
    const middle: string[] = [];
    for (let i = 1; i < ctx.input.n - 1; i += 1) {
      nodes[`m${i}`] = { workflow: NodeWorkflow, input: { i }, after: ['source'] };
      middle.push(`m${i}`);
    }
    nodes.sink = { workflow: NodeWorkflow, input: { i: -1 }, after: middle };
    const results = await ctx.step.graph('star', nodes, { onNodeFailure: 'continue' });
    const statuses: Record<string, number> = {};
    for (const r of Object.values(results)) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    return { statuses, sink: results.sink.output ?? null };
  }
}

/** N roots and nothing after them: the park creates them in bounded calls, housekeeping the rest. */
@Workflow('gs-flat')
@Injectable()
class FlatWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const nodes: Record<string, GraphNode> = {};
    for (let i = 0; i < ctx.input.n; i += 1) nodes[`r${i}`] = { workflow: NodeWorkflow, input: { i } };
    const results = await ctx.step.graph('flat', nodes);
    return Object.values(results).reduce((sum, r) => sum + (r.output as number), 0);
  }
}

const suite = useSuiteRedis();
let app: TestApp;
let prefix: string;

beforeAll(async () => {
  if (suite.redis.server) prioritize(suite.redis.server.pid);
  prefix = uniquePrefix('graph-size');
  app = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 50, reaperIntervalMs: 50 } }, [NodeWorkflow, StarWorkflow, FlatWorkflow]);
  suite.apps.push(app);
}, 60_000);

async function fcalls(): Promise<number> {
  const stats = await suite.direct.info('commandstats');
  return Number(/cmdstat_fcall:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

async function expectNoSlowFcall(): Promise<void> {
  if (PROFILE) {
    console.log(JSON.stringify(await fcallProfile(suite.direct), null, 1));
    return;
  }
  expect((await unexplainedSlowFcalls(suite.direct)).map((e) => `${e.args[1]} ${e.micros} µs`)).toEqual([]);
}

describe(`graphs of ${N} nodes`, () => {
  it(`a star (one source, ${N - 2} nodes after it, a sink after them all): every node once, no FCALL over 5 ms`, async () => {
    await startSlowlog(suite.direct, PROFILE ? 0 : 5_000);
    const before = await fcalls();
    const handle = await app.client.emit(StarWorkflow, { n: N });
    expect(await handle.result({ timeoutMs: 600_000 })).toEqual({ statuses: { succeeded: N }, sink: N - 2 });
    const calls = (await fcalls()) - before;
    const graphKey = (await suite.direct.keys(`*:g:${handle.id}:*`))[0];
    const bytes = Number(await suite.direct.memory('USAGE', graphKey, 'SAMPLES', '0'));
    console.log(`graph of ${N} nodes: ${calls} FCALLs in all (${(calls / N).toFixed(2)} per node, claims and completions included); graph hash ${bytes} bytes (${(bytes / N).toFixed(0)} per node)`);
    expect((await app.client.listRuns({ parentId: handle.id, limit: 1 })).runs).toHaveLength(1);
    await expectNoSlowFcall();
  }, 600_000);

  it(`${N} roots: created in bounded calls, each once`, async () => {
    await startSlowlog(suite.direct, PROFILE ? 0 : 5_000);
    const handle = await app.client.emit(FlatWorkflow, { n: N });
    expect(await handle.result({ timeoutMs: 600_000 })).toBe((N * (N - 1)) / 2);
    await expectNoSlowFcall();
  }, 600_000);

  it(`a failed source skips the ${N - 1} nodes after it through housekeeping, in bounded calls`, async () => {
    await startSlowlog(suite.direct, PROFILE ? 0 : 5_000);
    const handle = await app.client.emit(StarWorkflow, { n: N, failSource: true });
    expect(await handle.result({ timeoutMs: 600_000 })).toEqual({ statuses: { failed: 1, skipped: N - 1 }, sink: null });
    expect((await app.client.listRuns({ parentId: handle.id, limit: 10 })).runs).toHaveLength(1);
    await expectNoSlowFcall();
  }, 600_000);
});
