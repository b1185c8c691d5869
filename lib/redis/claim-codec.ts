/**
 * A claim on the wire: what a worker asks wf1_claim for (its workflows packed in one argument) and the runs
 * its flat reply carries (lua/claim.lua, lua/includes/03-claim.lua). Completions that claim the next runs
 * (wf1_complete, wf1_many) use the same encoding.
 */

export interface ClaimWorkflowSpec {
  name: string;
  maxConcurrency: number;
  maxAttempts: number;
  timeoutMs: number;
  /** The workflow has a rate limit or fairness: its claims update its keys (flow_claimed in lua/includes/01-flow.lua). */
  flow?: boolean;
  /** The worker's version, for a workflow it serves pinned: it claims only that version's pinned runs
   *  (and runs without a pin). Undefined: it claims the workflow's unpinned runs only. */
  pinnedVersion?: string;
}

export interface ClaimedRun {
  id: string;
  workflow: string;
  input: string;
  attempt: number;
  maxAttempts: number;
  token: string;
  createdAt: number;
  parentId?: string;
  /** The run is a node of a graph of its parent's (ctx.step.graph): where its dependencies' outputs are. */
  graphNode?: { graphId: string; node: number; root: boolean };
  /** Set when the run failed for good or was canceled and its compensations / @OnFailure are to run
   *  ('hook': canceled at once, only its @OnFailure is left). */
  finalizing?: 'failed' | 'canceled' | 'hook';
  error?: string;
  /** step field -> '<committed ms>|<record JSON>' */
  steps: Map<string, string>;
  /** The Redis server's time at the claim, in ms. */
  serverNow: number;
  /** Raised by every retry (of an attempt, or retryRun): outcomes of earlier epochs may be redone. */
  epoch: number;
  /** The claim brought the first page of the run's records only: the rest are read from here (readStepsFrom). */
  stepsCursor?: string;
  /** This worker parked the run warm and no claim came in between: `steps` are the records written since
   *  that park (or, with stepsCursor, every record). A worker without the execution reads every record. */
  warm?: boolean;
}

/** What a claim asks for: up to `max` ready runs of `workflows`, leased to `workerId`. */
export interface ClaimRequest {
  workerId: string;
  max: number;
  leaseMs: number;
  claimId: string;
  workflows: ClaimWorkflowSpec[];
  damagedRetentionMs: number;
  /** queues.<name>.concurrency of the shard's queue (0 or absent: none). */
  queueConcurrency?: number;
  /** Take the runs woken on this worker's sticky queue first (see ExecutionCache). */
  sticky?: boolean;
}

export function claimArgs(r: ClaimRequest): (string | number)[] {
  // 'f': packed run entries, flat in the reply (lua/includes/03-claim.lua): a third of the elements for ioredis
  // to decode, and no nested arrays, which cost Redis about 5,000 instructions each to send.
  // 'r': flat, with a large run's step records paged (see ClaimedRun.stepsCursor).
  const specs = packedWorkflowSpecs(r.workflows);
  // 's' first: the worker's sticky queue first (build 52 on). 'Q<n>|' before the specs: the queue's concurrency.
  return [r.workerId, r.sticky ? `s${r.max}r` : `${r.max}r`, r.leaseMs, r.claimId, r.damagedRetentionMs, r.queueConcurrency ? `Q${r.queueConcurrency}|${specs}` : specs];
}

const packedSpecs = new WeakMap<readonly ClaimWorkflowSpec[], string>();

/**
 * The workflows of a claim as one argument (read by packed_claim_plan in lua/includes/03-claim.lua), which
 * Redis parses once and keeps: as four arguments each, they cost every claim and completion about 0.15 µs
 * of Redis time per argument, plus building their keys again. A worker passes the same few arrays each time.
 */
function packedWorkflowSpecs(workflows: readonly ClaimWorkflowSpec[]): string {
  let text = packedSpecs.get(workflows);
  if (text === undefined) {
    text = workflows
      .map((w) => `${w.pinnedVersion ? `p${w.pinnedVersion.length}:${w.pinnedVersion}` : ''}${w.maxConcurrency}${w.flow ? 'f' : ''},${w.maxAttempts},${w.timeoutMs},${Buffer.byteLength(w.name)}:${w.name}`)
      .join('');
    packedSpecs.set(workflows, text);
  }
  return text;
}

/**
 * The runs of a flat claim reply (lua/claim.lua), from `at` to its end: the server's time, then per run its
 * head, input, error, how many step elements follow, and those (field, record, ...).
 */
export function parseClaimReply(reply: unknown[], at = 0): ClaimedRun[] {
  const serverNow = Number(reply[at]);
  const runs: ClaimedRun[] = [];
  for (let r = at + 1; r < reply.length; ) {
    const head = reply[r] as string;
    const input = reply[r + 1] as string;
    const error = reply[r + 2] as string;
    // '<n>:<cursor>' for a run whose records go on past the claim's page; 'w' first: a warm claim
    let count = reply[r + 3];
    const warm = typeof count === 'string' && count.charCodeAt(0) === 119;
    if (warm) count = (count as string).slice(1);
    const paged = typeof count === 'string' && count.includes(':') ? count.split(':') : undefined;
    const stepsEnd = r + 4 + Number(paged ? paged[0] : count);
    const steps = new Map<string, string>();
    for (let i = r + 4; i < stepsEnd; i += 2) steps.set(reply[i] as string, reply[i + 1] as string);
    r = stepsEnd;
    const parts = head.split('\n');
    const [id, token, parent, finalizing, attempt, maxAttempts, createdAt, epoch] = parts;
    // a node of a graph: '<parent>|<graph id>|<node>', and '|r' for a root (lua/includes/05-graph.lua)
    const [parentId, graphId, node, root] = parent.split('|');
    runs.push({
      id,
      // the workflow is last: a newline in its name only splits it further
      workflow: parts.length === 9 ? parts[8] : parts.slice(8).join('\n'),
      input,
      attempt: Number(attempt),
      maxAttempts: Number(maxAttempts),
      token,
      createdAt: Number(createdAt),
      parentId: parentId || undefined,
      ...(graphId !== undefined ? { graphNode: { graphId, node: Number(node), root: root === 'r' } } : {}),
      finalizing: (finalizing || undefined) as ClaimedRun['finalizing'],
      error: error || undefined,
      steps,
      serverNow,
      epoch: Number(epoch),
      ...(paged ? { stepsCursor: paged[1] } : {}),
      ...(warm ? { warm } : {}),
    });
  }
  return runs;
}
