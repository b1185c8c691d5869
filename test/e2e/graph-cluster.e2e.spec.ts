import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type GraphNode, type WorkflowContext } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, type TestApp } from '../support/workflow-app.js';

const executions = new Map<string, number>();

@Workflow('gc-node', { queue: 'gc-main' })
@Injectable()
class NodeWorkflow {
  execute(ctx: WorkflowContext<{ name: string }>) {
    const key = `${ctx.run.parentId}:${ctx.input.name}`;
    executions.set(key, (executions.get(key) ?? 0) + 1);
    // the sum of what the nodes before it returned, plus one
    return 1 + Object.values(ctx.dependencies ?? {}).reduce((a: number, b) => a + (b as number), 0);
  }
}

@Workflow('gc-parent', { queue: 'gc-main' })
@Injectable()
class ParentWorkflow {
  async execute(ctx: WorkflowContext<{ levels: number; width: number; policy: 'fail' | 'continue' }>) {
    const nodes: Record<string, GraphNode> = {};
    for (let l = 0; l < ctx.input.levels; l += 1) {
      for (let w = 0; w < ctx.input.width; w += 1) {
        const after = l === 0 ? [] : Array.from({ length: ctx.input.width }, (_, v) => `n${l - 1}-${v}`);
        nodes[`n${l}-${w}`] = { workflow: NodeWorkflow, input: { name: `n${l}-${w}` }, after };
      }
    }
    const results = await ctx.step.graph('mesh', nodes, { onNodeFailure: ctx.input.policy });
    return results[`n${ctx.input.levels - 1}-0`].output;
  }
}

describe('graphs on a Redis Cluster (3 primaries)', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await startApp(
      {
        connection: { nodes: cluster.nodes },
        prefix: uniquePrefix('gc'),
        queues: { 'gc-main': { partitions: 6 } },
        worker: { concurrency: 30, reaperIntervalMs: 20 },
        shutdownGraceMs: 100,
      } as never,
      [NodeWorkflow, ParentWorkflow],
    );
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('runs graphs whose parents live on every primary: each node once, in its parent\'s shard, with its dependencies\' outputs', async () => {
    const handles = await Promise.all(
      Array.from({ length: 12 }, (_, i) => app.client.emit(ParentWorkflow, { levels: 4, width: 3, policy: i % 2 === 0 ? 'fail' : 'continue' })),
    );
    // the parents are spread over the partitions (and so over the primaries)
    expect(new Set(handles.map((h) => h.id.split('.')[2])).size).toBeGreaterThan(2);
    // level l's node is 1 + width x level l-1's: 1, 4, 13, 40
    for (const handle of handles) expect(await handle.result({ timeoutMs: 30_000 })).toBe(40);
    for (const handle of handles) {
      const nodes = (await app.client.listRuns({ parentId: handle.id, limit: 20 })).runs;
      expect(nodes).toHaveLength(12);
      // every node run is in the graph's (its parent's) shard
      expect(nodes.every((r) => r.id.split('.').slice(1).join('.') === handle.id.split('.').slice(1).join('.'))).toBe(true);
      for (const node of nodes) expect(executions.get(`${handle.id}:${(node.input as { name: string }).name}`)).toBe(1);
    }
  }, 60_000);
});
