import { createHash, randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';

// ulid's default generator makes one crypto call per character (16 per id); drawing from a pooled crypto
// buffer keeps the ids as random at a fraction of the cost (emit spent ~13% of its CPU there, bench/NOTES.md).
const randomPool = new Uint32Array(2048);
let randomPoolIndex = randomPool.length;
function pooledRandom(): number {
  if (randomPoolIndex >= randomPool.length) {
    randomFillSync(randomPool);
    randomPoolIndex = 0;
  }
  return randomPool[randomPoolIndex++] / 0x1_0000_0000;
}

// Monotonic: ids made by this process in the same millisecond still sort in the order they were made,
// so ready sets (ties broken by id) and listings keep emission order.
const nextUlid = monotonicFactory(pooledRandom);

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function assertKeySegment(kind: 'prefix' | 'queue', value: string): void {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new WorkflowConfigurationError(
      `Invalid ${kind} ${JSON.stringify(value)}: use 1-64 letters, digits, '_' or '-' (it becomes part of Redis keys and run ids).`,
    );
  }
}

/**
 * A text as Redis keeps it: commands carry UTF-8, in which a lone UTF-16 surrogate has no encoding and
 * becomes U+FFFD. Compare with this what the library wrote from a user's text (an event name in a record).
 */
export function asStoredText(text: string): string {
  // Node >= 20 has both (ES2024); this project's TypeScript lib is ES2022. A native scan: it runs per step call.
  const unicode = text as string & { isWellFormed(): boolean; toWellFormed(): string };
  return unicode.isWellFormed() ? text : unicode.toWellFormed();
}

export interface ShardRef {
  queue: string;
  partition: number;
}

/**
 * Every key and channel name the package uses. A run belongs to one shard (a partition of its queue);
 * all keys of a shard share the hash tag '{<prefix>:<queue>:<partition>}', and the run id names its shard,
 * so any run's keys are found from its id alone.
 */
export class KeySpace {
  constructor(readonly prefix: string) {
    assertKeySegment('prefix', prefix);
  }

  shardRoot(shard: ShardRef): string {
    return `{${this.prefix}:${shard.queue}:${shard.partition}}`;
  }

  /** The shard that holds event logs and the waits registered for them. */
  eventRoot(): string {
    return `{${this.prefix}:~events}`;
  }

  registry(): string {
    return `{${this.prefix}}:workflows`;
  }

  run(root: string, runId: string): string {
    return `${root}:r:${runId}`;
  }

  /** A flow key's state (lua/includes/01-flow.lua). */
  flowState(root: string, workflow: string, flowKey: string): string {
    return `${root}:f:${workflow}:${flowKey}`;
  }

  /** A flow key's held-back runs (sorted set; a pinned run's member is its id after '*'; lua/includes/01-flow.lua). */
  flowHeld(root: string, workflow: string, flowKey: string): string {
    return `${root}:fh:${workflow}:${flowKey}`;
  }

  /** A workflow's held-back runs per reason, in a shard (lua/includes/01-flow.lua). */
  heldCounts(root: string, workflow: string): string {
    return `${root}:hb:${workflow}`;
  }

  steps(root: string, runId: string): string {
    return `${root}:s:${runId}`;
  }

  history(root: string, runId: string): string {
    return `${root}:h:${runId}`;
  }

  ready(root: string, workflow: string): string {
    return `${root}:q:${workflow}`;
  }

  /** Pinned runs of a version ready to be claimed (lua/includes/00-versions.lua). */
  pinnedReady(root: string, workflow: string, version: string): string {
    return `${root}:qv:${version}:${workflow}`;
  }

  /** A workflow's runs that have not finished, by version (lua/includes/00-versions.lua). */
  versionCounts(root: string, workflow: string): string {
    return `${root}:vr:${workflow}`;
  }

  statusIndex(root: string, workflow: string, status: string): string {
    return `${root}:st:${workflow}:${status}`;
  }

  /** Hash: sha256 of a Function library's code -> its build, for every library a process of this app loaded (see FunctionLoader). */
  libraryHashes(): string {
    return `{${this.prefix}}:library`;
  }

  workers(): string {
    return `{${this.prefix}}:workers`;
  }

  /** Hash: workflow -> ms when paused, for the whole deployment (what listings show; lua/ops-pause.lua). */
  pausedWorkflows(): string {
    return `{${this.prefix}}:paused`;
  }

  /** Set: the workflows paused in this shard, which its claims skip (lua/includes/02-paused.lua). */
  pausedInShard(root: string): string {
    return `${root}:paused`;
  }

  /** The values a run published with ctx.setEvent (lua/published.lua). */
  published(root: string, runId: string): string {
    return `${root}:pv:${runId}`;
  }

  /** Hash: run-time state of a workflow's cron triggers (paused, last, seen and next tick; lua/schedules.lua). */
  schedules(workflow: string): string {
    return `{${this.prefix}}:sched:${workflow}`;
  }

  /** Hash: minute of the hour -> runs of a workflow that started ('b') or finished ('s', 'f', 'c') in it
   *  (count_throughput in lua/includes/01-common.lua). `hour`: whole hours since the epoch, Redis clock. */
  throughput(root: string, workflow: string, kind: string, hour: number): string {
    return `${root}:tp:${workflow}:${kind}:${hour}`;
  }

  /** Hash: workflow -> leases that expired in this shard and housekeeping took back (lua/tick.lua). */
  leaseExpiries(root: string): string {
    return `${root}:lx`;
  }

  children(root: string, runId: string): string {
    return `${root}:ch:${runId}`;
  }

  /** An event's payload kept once for the runs of a shard whose records name the event (lua/includes/04-shared-payloads.lua). */
  sharedPayload(root: string, eventId: string): string {
    return `${root}:evp:${eventId}`;
  }

  /** A graph of child runs (ctx.step.graph), in its parent's shard (lua/includes/05-graph.lua). */
  graph(root: string, graphId: string): string {
    return `${root}:g:${graphId}`;
  }

  idempotency(root: string, workflow: string): string {
    return `${root}:ik:${workflow}`;
  }

  workerChannel(root: string): string {
    return `${root}:w`;
  }

  doneChannel(root: string): string {
    return `${root}:dv`;
  }

  /** Run ids are '<ulid>.<queue>.<partition>': sortable by creation time, and they name their shard. */
  newRunId(shard: ShardRef): string {
    return `${nextUlid()}.${shard.queue}.${shard.partition}`;
  }

  /**
   * A run id that is the same every time for the same seed: the time part of the parent's id and a hash
   * of the seed. A replay that starts "the same" child again therefore names the run that exists.
   */
  derivedRunId(parentId: string, seed: string, shard: ShardRef): string {
    const digest = createHash('sha256').update(seed).digest();
    let random = '';
    for (let i = 0; i < 16; i += 1) random += CROCKFORD[digest[i] % 32];
    return `${parentId.slice(0, 10)}${random}.${shard.queue}.${shard.partition}`;
  }

  /** The shard a run id belongs to, or undefined when the text is not a run id. */
  parseRunId(runId: unknown): ShardRef | undefined {
    if (typeof runId !== 'string' || runId.length > 200) return undefined;
    const parts = runId.split('.');
    if (parts.length !== 3 || !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(parts[0])) return undefined;
    const [, queue, partition] = parts;
    if (!NAME.test(queue) || !/^\d{1,4}$/.test(partition)) return undefined;
    return { queue, partition: Number(partition) };
  }
}
