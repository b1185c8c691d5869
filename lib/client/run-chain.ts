import type { ShardRef } from '../redis/keys.js';
import type { WorkflowStore } from '../redis/workflow-store.js';

/** Hops a chain is followed at most (a chain longer than this is followed again from where it stopped). */
const MAX_HOPS = 10_000;

/**
 * The live execution of a chain of runs made by ctx.continueAsNew (or the run itself when it did not
 * continue): every execution of a chain lives in the first one's shard. The first run names the latest
 * ('cl'), so a handle of the first run gets there in one read; a later one follows 'cn' link by link.
 * Returns undefined when a link names a run that is no longer retained.
 */
export async function liveRunOf(
  store: WorkflowStore,
  shard: ShardRef,
  runId: string,
  hash?: Record<string, string>,
): Promise<{ id: string; hash: Record<string, string> } | undefined> {
  let id = runId;
  let current = hash ?? (await store.readRun(shard, id));
  for (let hop = 0; current && current.st === 'succeeded' && current.cn && hop < MAX_HOPS; hop += 1) {
    const next = current.cl && current.cl !== id ? current.cl : current.cn;
    const read = await store.readRun(shard, next);
    // the latest named by the first run expired already: follow the links instead
    if (!read && next !== current.cn) {
      id = current.cn;
      current = await store.readRun(shard, id);
      continue;
    }
    id = next;
    current = read;
  }
  return current ? { id, hash: current } : undefined;
}
