import { createHash } from 'node:crypto';
import { decodeError } from '../errors/error-codec.js';
import { ChildWorkflowError, WorkflowError } from '../errors/workflow.errors.js';
import type { GraphNode, GraphNodeResult, GraphOptions } from '../interfaces/workflow.interfaces.js';
import { GRAPH_NODES_PER_CALL, type GraphStageNode } from '../redis/workflow-store.js';
import type { ExecutionState } from './execution-state.js';
import { planGraph, type GraphPlan } from './graph-plan.js';
import { readGraphResults, readNodeName } from './graph-reads.js';
import type { StoredStep } from './step-record.js';
import { EndOfRecords } from './suspension.js';

/** Bytes of node inputs per wf1_graph_stage call, besides GRAPH_NODES_PER_CALL: a call stays near 1 ms. */
const STAGE_BYTES = 256 * 1024;

/**
 * The handler's graphs of child runs (ctx.step.graph). The graph is checked, then written to the parent's
 * shard in bounded calls (wf1_graph_stage), and the run parks on it: the park creates its roots, and from
 * then on Redis creates each node's run in the call that ends its last dependency (lua/includes/05-graph.lua).
 * The run is woken once, when the graph is over. Its record names the graph; the nodes' results are read
 * from the graph on every replay, never copied into the parent.
 */
export class Graphs {
  constructor(private readonly run: ExecutionState) {}

  async graph(name: string, nodes: Record<string, GraphNode>, opts?: GraphOptions): Promise<Record<string, GraphNodeResult>> {
    const run = this.run;
    run.assertExecuting();
    const field = run.journal.nextField(name);
    const stored = run.journal.steps.get(field);
    const graphId = `${run.id}:${createHash('sha256').update(field).digest('hex').slice(0, 16)}`;
    if (stored) {
      run.journal.assertSameStep(stored, 'graph', 'graph');
      if (stored.state === 'S') return run.parking.track(() => readGraphResults(run.store, run.shard, stored.record.gid ?? graphId));
      if (stored.state === 'F') throw await run.parking.track(() => this.failure(name, stored));
      if (run.mode === 'collect') throw new EndOfRecords();
      return this.waitForGraph(name, field, stored.record.gid ?? graphId);
    }
    if (run.mode === 'collect') throw new EndOfRecords();
    // checked before anything is written: a bad graph fails the run with the reason
    const plan = planGraph(name, nodes, opts);
    await run.parking.track(() => this.write(field, graphId, plan));
    return this.waitForGraph(name, field, graphId);
  }

  /** The run waits for its graph; after a warm resume, the graph step's record (as the claim brought it) decides. */
  private waitForGraph(name: string, field: string, graphId: string): Promise<Record<string, GraphNodeResult>> {
    const run = this.run;
    return run.parking.waitFor({ kind: 'graph', field, graphId }, async () => {
      const stored = run.journal.steps.get(field);
      if (stored?.state === 'S') return run.parking.track(() => readGraphResults(run.store, run.shard, stored.record.gid ?? graphId));
      if (stored?.state === 'F') throw await run.parking.track(() => this.failure(name, stored));
      return this.waitForGraph(name, field, graphId);
    });
  }

  /** Prepares every node's run (workflow, queue, input), then writes the graph once the steps before it are committed. */
  private async write(field: string, graphId: string, plan: GraphPlan): Promise<void> {
    const run = this.run;
    const launcher = run.settings.children;
    const prepared = await Promise.all(
      plan.nodes.map((node, i) =>
        launcher
          .graphNodeRun(
            { parentId: run.id, parentRoot: run.settings.shardRoot, seed: `${run.id}|${field}|graph|${plan.names[i]}`, workflow: node.workflow, input: node.input },
            run.shard,
          )
          .catch((error: unknown) => {
            if (error instanceof Error) error.message = `graph node '${plan.names[i]}': ${error.message}`;
            throw error;
          }),
      ),
    );
    const nodes: GraphStageNode[] = prepared.map((p, i) => ({
      index: i,
      name: plan.names[i],
      workflow: p.workflow,
      input: p.input,
      pending: plan.dependencies[i].length,
      dependents: plan.dependents[i].map((j) => `${j},`).join(''),
      dependencies: plan.dependencies[i].map((j) => `${j},`).join(''),
      runId: p.id,
      flow: p.flow,
    }));
    await run.commits.afterCommits(async () => {
      const head = { graphId, field, policy: plan.policy, size: nodes.length, queue: run.shard.queue };
      let roots: string | undefined = plan.roots.map((i) => `${i},`).join('');
      for (let at = 0; at < nodes.length || roots !== undefined; ) {
        let bytes = 0;
        let end = at;
        while (end < nodes.length && end - at < GRAPH_NODES_PER_CALL && (end === at || bytes + nodes[end].input.length <= STAGE_BYTES)) {
          bytes += nodes[end].input.length;
          end += 1;
        }
        const written = await run.store.stageGraph(run.shard, run.id, run.token, { ...head, roots }, nodes.slice(at, end));
        if (!written.ok) {
          run.lose(written.reason);
          throw new WorkflowError(`The graph could not be written: ${written.reason}`);
        }
        roots = undefined;
        at = end;
      }
    });
  }

  /** The error graph() rejects with, as a failed child's: the node that failed and its error. */
  private async failure(name: string, stored: StoredStep): Promise<Error> {
    const run = this.run;
    const node = stored.record.ni === undefined ? '?' : await readNodeName(run.store, run.shard, stored.record.gid!, stored.record.ni);
    const cause = stored.record.e ? decodeError(stored.record.e) : new WorkflowError('The node failed.');
    return new ChildWorkflowError(`Graph '${name}': node '${node}' failed: ${cause.message}`, { cause });
  }
}
