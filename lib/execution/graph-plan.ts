import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { GraphNode, GraphOptions } from '../interfaces/workflow.interfaces.js';
import { quoteName } from './call-limits.js';

/** Nodes a graph may have: the test at this size (test/slow/graph-size.slow.spec.ts) keeps every call under 5 ms. */
export const MAX_GRAPH_NODES = 10_000;
/** Edges (`after` entries) a graph may have in all: each costs one decrement in Redis and a few bytes. */
export const MAX_GRAPH_EDGES = 100_000;
/** A node's name is a hash field of the graph and a key of `ctx.dependencies`. */
const MAX_NODE_NAME_LENGTH = 200;

/** A graph checked and numbered (nodes 0..n-1, in the order of `nodes`), as wf1_graph_stage stores it. */
export interface GraphPlan {
  names: string[];
  nodes: GraphNode[];
  /** per node, the nodes that come after it / it comes after (numbers) */
  dependents: number[][];
  dependencies: number[][];
  roots: number[];
  policy: 'f' | 'c';
}

/**
 * Checks a graph before anything is written: its shape (names, `after` lists that name nodes of the graph,
 * no cycle) and its size. Throws InvalidArgumentError saying what to change. Workflows are checked when
 * the nodes' runs are prepared (they may need a look-up in Redis).
 */
export function planGraph(step: string, nodes: unknown, opts: GraphOptions | undefined): GraphPlan {
  const where = `graph(${quoteName(step)})`;
  if (nodes === null || typeof nodes !== 'object' || Array.isArray(nodes)) {
    throw new InvalidArgumentError(`${where}: pass the nodes as an object, { name: { workflow, input?, after? } }.`);
  }
  const policy = opts?.onNodeFailure ?? 'fail';
  if (policy !== 'fail' && policy !== 'continue') {
    throw new InvalidArgumentError(`${where}: onNodeFailure must be 'fail' or 'continue', got ${JSON.stringify(policy)}.`);
  }
  const names = Object.keys(nodes);
  if (names.length === 0) throw new InvalidArgumentError(`${where}: a graph needs at least one node.`);
  if (names.length > MAX_GRAPH_NODES) {
    throw new InvalidArgumentError(`${where}: ${names.length} nodes; a graph has at most ${MAX_GRAPH_NODES}. Split it into graphs run by child workflows.`);
  }
  const index = new Map<string, number>();
  names.forEach((name, i) => index.set(name, i));
  const list = names.map((name) => (nodes as Record<string, GraphNode>)[name]);
  const dependents: number[][] = names.map(() => []);
  const dependencies: number[][] = names.map(() => []);
  let edges = 0;
  list.forEach((node, i) => {
    const name = names[i];
    if (name.length === 0 || name.length > MAX_NODE_NAME_LENGTH) {
      throw new InvalidArgumentError(`${where}: node names have 1 to ${MAX_NODE_NAME_LENGTH} characters, got ${quoteName(name)}.`);
    }
    if (node === null || typeof node !== 'object' || (typeof node.workflow !== 'string' && typeof node.workflow !== 'function')) {
      throw new InvalidArgumentError(`${where}: node ${quoteName(name)} needs a workflow (its @Workflow name or class).`);
    }
    const after = node.after ?? [];
    if (!Array.isArray(after)) throw new InvalidArgumentError(`${where}: node ${quoteName(name)}: after must be an array of node names.`);
    const seen = new Set<number>();
    for (const before of after) {
      const j = typeof before === 'string' ? index.get(before) : undefined;
      if (j === undefined) {
        throw new InvalidArgumentError(
          `${where}: node ${quoteName(name)} comes after ${quoteName(before)}, which is not a node of this graph. Name one of: ${names.slice(0, 20).map(quoteName).join(', ')}${names.length > 20 ? ', ...' : ''}.`,
        );
      }
      if (j === i) throw new InvalidArgumentError(`${where}: node ${quoteName(name)} comes after itself; remove it from its own after list.`);
      if (seen.has(j)) continue;
      seen.add(j);
      dependencies[i].push(j);
      dependents[j].push(i);
      edges += 1;
    }
  });
  if (edges > MAX_GRAPH_EDGES) {
    throw new InvalidArgumentError(`${where}: ${edges} dependencies in all; a graph has at most ${MAX_GRAPH_EDGES}. Join wide levels through a node that comes after them all.`);
  }
  // Kahn's algorithm: nodes left over sit on a cycle.
  const pending = dependencies.map((d) => d.length);
  const roots = names.flatMap((_, i) => (pending[i] === 0 ? [i] : []));
  const queue = [...roots];
  let ordered = 0;
  while (queue.length > 0) {
    const i = queue.pop()!;
    ordered += 1;
    for (const j of dependents[i]) if (--pending[j] === 0) queue.push(j);
  }
  if (ordered < names.length) {
    const cycle = names.filter((_, i) => pending[i] > 0).slice(0, 10);
    throw new InvalidArgumentError(`${where}: the graph has a cycle through ${cycle.map(quoteName).join(', ')}; a node cannot (indirectly) come after itself.`);
  }
  return { names, nodes: list, dependents, dependencies, roots, policy: policy === 'fail' ? 'f' : 'c' };
}
