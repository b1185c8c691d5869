import { decodeErrorJson } from '../errors/error-codec.js';
import type { GraphNodeResult } from '../interfaces/workflow.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowStore } from '../redis/workflow-store.js';
import { fromPayload } from './payload.js';

/** Nodes read per HMGET (4 fields each): a read of a graph of 10,000 nodes is 20 commands of about 1 ms. */
const NODES_PER_READ = 500;

const STATUS: Record<string, GraphNodeResult['status']> = { S: 'succeeded', F: 'failed', C: 'canceled', K: 'skipped' };

/** Every node's result of a graph (lua/includes/05-graph.lua), by node name: read on every replay, never copied into the parent. */
export async function readGraphResults(store: WorkflowStore, shard: ShardRef, graphId: string): Promise<Record<string, GraphNodeResult>> {
  const [size] = await store.readGraphFields(shard, graphId, ['N']);
  const count = Number(size ?? 0);
  const results: Record<string, GraphNodeResult> = {};
  for (let from = 0; from < count; from += NODES_PER_READ) {
    const fields: string[] = [];
    const to = Math.min(count, from + NODES_PER_READ);
    for (let i = from; i < to; i += 1) fields.push(`n${i}`, `s${i}`, `o${i}`, `r${i}`);
    const values = await store.readGraphFields(shard, graphId, fields);
    for (let k = 0; k < values.length; k += 4) {
      const [name, state, out, runId] = values.slice(k, k + 4);
      const status = STATUS[state ?? ''] ?? 'skipped';
      const result: GraphNodeResult = { status };
      if (status !== 'skipped' && runId) result.runId = runId;
      if (status === 'succeeded') result.output = fromPayload(out);
      else if (status !== 'skipped') result.error = decodeErrorJson(out);
      results[name ?? String(from + k / 4)] = result;
    }
  }
  return results;
}

/** The name of a graph's node. */
export async function readNodeName(store: WorkflowStore, shard: ShardRef, graphId: string, node: number): Promise<string> {
  const [name] = await store.readGraphFields(shard, graphId, [`n${node}`]);
  return name ?? String(node);
}

/** ctx.dependencies of a graph's node: the outputs of the nodes it comes after, by name, each read from where the graph keeps it once. */
export async function readDependencies(store: WorkflowStore, shard: ShardRef, graphId: string, node: number): Promise<Record<string, unknown>> {
  const [list] = await store.readGraphFields(shard, graphId, [`u${node}`]);
  const nodes = (list ?? '').split(',').filter((n) => n !== '');
  const dependencies: Record<string, unknown> = {};
  for (let from = 0; from < nodes.length; from += NODES_PER_READ) {
    const fields = nodes.slice(from, from + NODES_PER_READ).flatMap((n) => [`n${n}`, `o${n}`]);
    const values = await store.readGraphFields(shard, graphId, fields);
    for (let k = 0; k < values.length; k += 2) dependencies[values[k] ?? ''] = fromPayload(values[k + 1]);
  }
  return dependencies;
}
