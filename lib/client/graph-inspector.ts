import type { GraphInfo, GraphNodeInfo, StepInfo } from '../interfaces/run.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowStore } from '../redis/workflow-store.js';

/** Nodes of a graph getRunGraphs shows (the dashboard draws them): a graph of 10,000 is read in part. */
export const GRAPH_NODES_SHOWN = 500;

const NODE_STATUS: Record<string, GraphNodeInfo['status']> = { R: 'running', S: 'succeeded', F: 'failed', C: 'canceled', K: 'skipped' };

/** The graphs of a run's graph steps, read from the graph hashes (lua/includes/05-graph.lua). */
export async function readRunGraphs(store: WorkflowStore, shard: ShardRef, steps: StepInfo[]): Promise<GraphInfo[]> {
  const graphs: GraphInfo[] = [];
  for (const step of steps) {
    if (step.kind !== 'graph' || !step.graphId) continue;
    const [size, ended] = await store.readGraphFields(shard, step.graphId, ['N', 'X']);
    const count = Math.min(Number(size ?? 0), GRAPH_NODES_SHOWN);
    const fields: string[] = [];
    for (let i = 0; i < count; i += 1) fields.push(`n${i}`, `s${i}`, `u${i}`, `r${i}`);
    const values = await store.readGraphFields(shard, step.graphId, fields);
    const raw = Array.from({ length: count }, (_, i) => values.slice(i * 4, i * 4 + 4));
    const levels: number[] = [];
    const nodes = raw.map(([name, state, after, runId], i): GraphNodeInfo => {
      const before = (after ?? '').split(',').filter((n) => n !== '').map(Number);
      // nodes are numbered in the order they were given, not in graph order: a level is known once those before it are
      levels[i] = before.every((j) => j < i) ? Math.max(-1, ...before.map((j) => levels[j])) + 1 : -1;
      // not started in a graph that has ended ('fail' policy): it never will be
      const status = state ? (NODE_STATUS[state] ?? 'pending') : ended ? 'skipped' : 'pending';
      return { name: name ?? String(i), status, after: before.map((j) => raw[j]?.[0] ?? String(j)), level: 0, ...(state && state !== 'K' && runId ? { runId } : {}) };
    });
    resolveLevels(raw.map(([, , after]) => (after ?? '').split(',').filter((n) => n !== '').map(Number)), levels);
    nodes.forEach((node, i) => (node.level = Math.max(0, levels[i])));
    graphs.push({ step: step.name, status: step.status, size: Number(size ?? 0), nodes });
  }
  return graphs;
}

/** Levels of the nodes left at -1 (a node given before one it comes after): repeated passes, bounded by the node count. */
function resolveLevels(before: number[][], levels: number[]): void {
  for (let pass = 0; pass < before.length && levels.includes(-1); pass += 1) {
    before.forEach((list, i) => {
      if (levels[i] !== -1) return;
      const known = list.filter((j) => j < before.length);
      if (known.every((j) => levels[j] !== -1)) levels[i] = Math.max(-1, ...known.map((j) => levels[j])) + 1;
    });
  }
}
