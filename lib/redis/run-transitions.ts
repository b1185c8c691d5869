import { asIs } from './function-calls.js';
import type { ShardRef } from './keys.js';
import { claimArgs, parseClaimReply, type ClaimedRun, type ClaimRequest, type ClaimWorkflowSpec } from './claim-codec.js';
import { WorkflowReads } from './workflow-reads.js';

export type { ClaimedRun, ClaimRequest, ClaimWorkflowSpec } from './claim-codec.js';

export interface EmitArgs {
  runId: string;
  workflow: string;
  queue: string;
  input: string;
  priority: number;
  runAtMs?: number;
  delayMs?: number;
  idempotencyKey?: string;
  parentId?: string;
  /** The parent's step that waits for this run, and the parent's shard root (where the outcome goes). */
  parentField?: string;
  parentRoot?: string;
  /** A note for the run's history. */
  note?: string;
  /** The run's flow-control key and spec (lib/client/flow-keys.ts); never carried by a park's children. */
  flow?: { key?: string; spec?: string; debounce?: { key: string; periodMs: number; maxWaitMs?: number } };
  /** The run's deadline (absolute server ms): a child's from runWorkflow's timeoutMs / inheritDeadline. */
  deadlineMs?: number;
  /** The run's version as stored ('v': '*' before a pinned one's); not carried by wf1_park's children,
   *  which get their parent's there. */
  version?: string;
}

/** A message for another shard: a child's outcome for its parent, or an event for a waiting run. */
export interface Handoff {
  targetRoot: string;
  runId: string;
  field: string;
  state: 'S' | 'F';
  record: string;
  kind: 'child' | 'event';
  /** The sending shard's root and the message id, to acknowledge once delivered. */
  sourceRoot: string;
  messageId: string;
  /** An event record that names the event instead of carrying its payload: the payload, kept once by the receiving shard. */
  payload?: string;
  payloadRef?: string;
}

export type WaitSpec =
  | { kind: 'sleep'; field: string; spec: string }
  /** `spawn`: a child in the run's own shard not created yet: the park creates it (see Children.runChild in lib/execution).
   *  `joined`: a run another parent started, named by the child's idempotency key: not the run's own child. */
  /** `settles`: onFailure 'continue' (a failure wakes the run only as the last of its children). `raced`: waitForAny's. */
  | { kind: 'child'; field: string; childId: string; workflow: string; timeoutMs?: number; spawn?: EmitArgs; joined?: boolean; settles?: boolean; raced?: boolean; inherits?: boolean }
  | { kind: 'event'; field: string; event: string; key: string; timeoutMs?: number }
  /** A graph of child runs written by stageGraph: the park starts it (lua/includes/05-graph.lua). */
  | { kind: 'graph'; field: string; graphId: string };

export type ParkResult = { outcome: 'parked'; wakeAt?: number } | { outcome: 'requeued' } | { outcome: 'lost'; reason: string };

export type TransitionResult = { ok: true } | { ok: false; reason: string };

export type FailNext = 'retry' | 'finalize' | 'failed' | 'canceled' | 'hook-done';

export type CommitResult = { ok: true; committedAt?: number } | { ok: false; reason: string } | { ok: true; resolved: string };

/** wf1_commit_redis_step's outcome: done (the replies as JSON), a record there already, a guard that did not hold, or refused. */
export type RedisStepResult =
  | { ok: true; committedAt: number; replies: string }
  | { ok: true; resolved: string }
  | { ok: true; guardFailedAt: number }
  | { ok: false; reason: string };

/**
 * The transitions of a run a worker holds, on the worker's hot path: claiming runs, committing a step,
 * completing (with a claim for the freed slot), failing, parking, and delivering the hand-off a transition
 * produces; each with the reply decoder of its call. A layer of WorkflowStore (workflow-store.ts).
 * Those a run makes on every step go without async (one promise beyond ioredis' own, see FunctionCalls).
 */
export abstract class RunTransitions extends WorkflowReads {
  async claim(
    shard: ShardRef,
    workerId: string,
    max: number,
    leaseMs: number,
    claimId: string,
    workflows: ClaimWorkflowSpec[],
    damagedRetentionMs: number,
  ): Promise<ClaimedRun[]> {
    return this.claimRuns(shard, { workerId, max, leaseMs, claimId, workflows, damagedRetentionMs });
  }

  async claimRuns(shard: ShardRef, request: ClaimRequest): Promise<ClaimedRun[]> {
    return parseClaimReply((await this.fcall('wf1_claim', [this.root(shard)], claimArgs(request))) as unknown[]);
  }

  /**
   * Stores a step record. `ifOpen`: only when the step has no record or a waiting one; the reply then
   * carries the record that won instead ('resolved').
   */
  commitStep(
    shard: ShardRef,
    runId: string,
    token: string,
    field: string,
    state: 'S' | 'F' | 'C' | 'W',
    record: string,
    opts: { hasCompensation?: boolean; ifOpen?: boolean; childId?: string } = {},
  ): Promise<CommitResult> {
    return this.transition(
      'wf1_commit_step',
      [this.root(shard)],
      [runId, token, field, state, record, opts.hasCompensation ? '1' : '0', opts.ifOpen ? 'if-open' : '', opts.childId ?? ''],
      parseCommitReply,
    );
  }

  /**
   * A Redis step (ctx.step.redis): runs its commands and stores its record in one call, under the lease
   * (lua/redis-step.lua). `recordHead`: the success record's JSON without its closing brace (the call adds
   * the replies); `failureRecord`: stored instead when a guard does not hold. Safe to repeat: a step with
   * a record runs nothing and answers the record. 'compensate': the commands of the step's compensation,
   * and `recordHead` is the compensated record, stored in the same call.
   */
  commitRedisStep(
    shard: ShardRef,
    runId: string,
    token: string,
    field: string,
    recordHead: string,
    failureRecord: string,
    plan: { keys: string[]; args: string[] },
    mode: 'commit' | 'compensate' = 'commit',
  ): Promise<RedisStepResult> {
    return this.transition(
      'wf1_commit_redis_step',
      [this.root(shard), ...plan.keys],
      [runId, token, field, recordHead, failureRecord, mode, ...plan.args],
      parseRedisStepReply,
    );
  }

  /**
   * The run succeeded. `steps`: succeeded step records committed in the same call. `refill`: a claim made
   * in the same call once the run is completed, for the slot it frees (its runs are in `claimed`).
   */
  complete(
    shard: ShardRef,
    runId: string,
    token: string,
    output: string,
    retentionMs: number,
    steps: readonly { field: string; record: string }[] = [],
    refill?: ClaimRequest,
  ): Promise<TransitionResult & { handoff?: Handoff; claimed?: ClaimedRun[] }> {
    if (steps.length > COMPLETE_RECORDS_PER_CALL) {
      // Thousands of steps that ended in the handler's last turn (a Promise.all): all but the last records
      // are committed as steps are (wf1_many, 16 a call), so that the completion's own work stays bounded.
      const early = steps.slice(0, steps.length - COMPLETE_RECORDS_PER_CALL);
      const rest = steps.slice(early.length);
      return Promise.all(early.map((step) => this.commitStep(shard, runId, token, step.field, 'S', step.record))).then((results) => {
        const refused = results.find((result) => !result.ok);
        return refused && !refused.ok ? refused : this.complete(shard, runId, token, output, retentionMs, rest, refill);
      });
    }
    const args: (string | number)[] = [runId, token, output, retentionMs, steps.length];
    for (const step of steps) args.push(step.field, step.record);
    if (refill) args.push(...claimArgs(refill));
    return this.transition('wf1_complete', [this.root(shard)], args, (reply) => {
      const parts = reply as unknown[];
      if (!refill || parts[0] !== 1) return this.withHandoff(shard, parts);
      // flat (lua/finish.lua): 1, k, the k fields of a hand-off, then the claim's runs
      const handoffLength = Number(parts[1]);
      return { ...this.withHandoff(shard, [1, ...parts.slice(2, 2 + handoffLength)]), claimed: parseClaimReply(parts, 2 + handoffLength) };
    });
  }

  /**
   * The run ends as succeeded, continued as the new run `newRunId` (in the same shard) of the same workflow
   * with `input` and no records (lua/rerun.lua, wf1_continue): one call, so no crash can leave one without
   * the other. `steps`: records not committed yet, written with it.
   */
  continueAsNew(
    shard: ShardRef,
    runId: string,
    token: string,
    newRunId: string,
    input: string,
    retentionMs: number,
    steps: readonly { field: string; record: string }[] = [],
  ): Promise<TransitionResult> {
    if (steps.length > COMPLETE_RECORDS_PER_CALL) {
      const early = steps.slice(0, steps.length - COMPLETE_RECORDS_PER_CALL);
      return Promise.all(early.map((step) => this.commitStep(shard, runId, token, step.field, 'S', step.record))).then((results) => {
        const refused = results.find((result) => !result.ok);
        return refused && !refused.ok ? refused : this.continueAsNew(shard, runId, token, newRunId, input, retentionMs, steps.slice(early.length));
      });
    }
    const args: (string | number)[] = [runId, token, newRunId, input, retentionMs, steps.length];
    for (const step of steps) args.push(step.field, step.record);
    return this.transition('wf1_continue', [this.root(shard)], args, (reply) => {
      const parts = reply as [number, string];
      return parts[0] === 1 ? { ok: true as const } : { ok: false as const, reason: parts[1] };
    });
  }

  fail(
    shard: ShardRef,
    runId: string,
    token: string,
    error: string,
    next: FailNext,
    opts: { delayMs?: number; retentionMs?: number; compensating?: boolean } = {},
  ): Promise<TransitionResult & { handoff?: Handoff }> {
    return this.transition(
      'wf1_fail',
      [this.root(shard)],
      [runId, token, error, next, opts.delayMs ?? 0, opts.retentionMs ?? 0, opts.compensating ? '1' : '0'],
      (reply) => this.withHandoff(shard, reply),
    );
  }

  /**
   * Parks the run on its waits. Past PARK_WAITS_PER_CALL waits (a Promise.all over many children or
   * events), all but the last of them are first written in calls of that many each (wf1_park_stage, safe
   * to repeat), and the park itself carries the rest: no call does work proportional to the fan-out.
   */
  async park(
    shard: ShardRef,
    runId: string,
    token: string,
    waitingFor: string,
    waits: WaitSpec[],
    /** The worker keeps the execution warm: its wake goes to this worker first, for `windowMs` (one call parks only). */
    warm?: { windowMs: number; workerId: string },
  ): Promise<ParkResult> {
    const root = this.root(shard);
    const args: (string | number)[] = [runId, token, waitingFor];
    let last = waits;
    if (waits.length > PARK_WAITS_PER_CALL) {
      const upTo = waits.length - PARK_WAITS_PER_CALL;
      const stages: Promise<unknown>[] = [];
      for (let at = 0; at < upTo; at += PARK_WAITS_PER_CALL) {
        const stageArgs: (string | number)[] = [runId, token];
        pushWaitArguments(stageArgs, waits.slice(at, Math.min(at + PARK_WAITS_PER_CALL, upTo)));
        stages.push(this.transition('wf1_park_stage', [root], stageArgs, asIs));
      }
      const refused = ((await Promise.all(stages)) as [number, string?][]).find((reply) => reply[0] === 0);
      if (refused) return { outcome: 'lost', reason: String(refused[1]) };
      args.push('staged', '', '');
      last = waits.slice(upTo);
    }
    pushWaitArguments(args, last);
    if (warm && last === waits) args.push('warm', Math.round(warm.windowMs), warm.workerId);
    const reply = (await this.transition('wf1_park', [root], args, asIs)) as [number, number | string];
    if (reply[0] === 0) return { outcome: 'lost', reason: String(reply[1]) };
    if (reply[0] === 2) return { outcome: 'requeued' };
    return { outcome: 'parked', wakeAt: Number(reply[1]) >= 0 ? Number(reply[1]) : undefined };
  }

  /** Delivers a hand-off on its target shard, then acknowledges it on the source shard. */
  async deliver(handoff: Handoff): Promise<void> {
    const args = [handoff.runId, handoff.field, handoff.state, handoff.record, handoff.kind];
    if (handoff.payloadRef !== undefined) args.push(handoff.payload ?? 'null', handoff.payloadRef);
    await this.transition('wf1_deliver', [handoff.targetRoot], args, asIs);
    await this.transition('wf1_ack', [handoff.sourceRoot], [handoff.messageId], asIs);
  }

  protected withHandoff(shard: ShardRef, reply: unknown): TransitionResult & { handoff?: Handoff } {
    const parts = reply as unknown[];
    if (parts[0] !== 1) return { ok: false, reason: String(parts[1] ?? 'UNKNOWN') };
    return parts.length > 1 ? { ok: true, handoff: this.handoffFrom(this.root(shard), parts.slice(1)) } : { ok: true };
  }

  protected handoffFrom(sourceRoot: string, parts: unknown[]): Handoff {
    const [targetRoot, runId, field, state, record, messageId] = parts as string[];
    return { targetRoot, runId, field, state: state as 'S' | 'F', record, kind: 'child', sourceRoot, messageId };
  }
}

/**
 * Waits per wf1_park or wf1_park_stage call. A fan-out child costs a park about 30 µs of Redis time (the
 * park that created 3,999 children took about 120 ms), so a call stays near 0.6 ms; a park of 32 waits or
 * fewer (a fan-out of 3, the common case) is one call, as it always was.
 */
export const PARK_WAITS_PER_CALL = 32;

/** Step records a completion carries at most; more are committed before it (see complete). */
export const COMPLETE_RECORDS_PER_CALL = 64;

/** wf1_park's waits (lua/park.lua), appended to `args`. */
function pushWaitArguments(args: (string | number)[], waits: readonly WaitSpec[]): void {
  for (const w of waits) {
    if (w.kind === 'sleep') args.push('sleep', w.field, w.spec);
    else if (w.kind === 'child') {
      const kind = w.raced ? 'any' : w.spawn ? 'spawn' : w.joined ? 'join' : 'child';
      args.push(kind, w.field, `${w.childId}|${w.settles ? 'c' : ''}${w.inherits ? 'i' : ''}${w.timeoutMs ?? ''}|${w.workflow}`);
      if (w.spawn) args.push(...emitArguments(w.spawn));
    }
    else if (w.kind === 'graph') args.push('graph', w.field, w.graphId);
    // the user's event name and key as arguments of their own: the library decodes nothing users wrote
    else args.push('ev', w.field, w.event, w.key, w.timeoutMs ?? '');
  }
}

/** wf1_emit's arguments (lua/emit.lua), also carried by wf1_park for the children it starts. */
export function emitArguments(a: EmitArgs): (string | number)[] {
  return [
    a.runId,
    a.workflow,
    a.queue,
    a.input,
    a.priority,
    a.runAtMs ?? '',
    a.delayMs ?? '',
    a.idempotencyKey ?? '',
    a.parentId ?? '',
    a.parentField ?? '',
    a.parentRoot ?? '',
    a.note ?? '',
  ];
}

/** wf1_commit_step's reply: 1 and the commit's server time; 2 and the record that won (if-open); 0 and why not. */
function parseCommitReply(raw: unknown): CommitResult {
  const reply = raw as [number, (string | number)?];
  if (reply[0] === 2) return { ok: true, resolved: reply[1] as string };
  // Builds before 12 answer { 1 } without the server time of the commit.
  if (reply[0] === 1) return typeof reply[1] === 'number' ? { ok: true, committedAt: reply[1] } : { ok: true };
  return toResult(reply);
}

function parseRedisStepReply(raw: unknown): RedisStepResult {
  const reply = raw as [number, (string | number)?, string?];
  if (reply[0] === 1) return { ok: true, committedAt: Number(reply[1]), replies: reply[2] as string };
  if (reply[0] === 2) return { ok: true, resolved: reply[1] as string };
  if (reply[0] === 3) return { ok: true, guardFailedAt: Number(reply[1]) };
  return { ok: false, reason: String(reply[1] ?? 'UNKNOWN') };
}

function toResult(reply: unknown): TransitionResult {
  const [ok, reason] = reply as [number, string?];
  return ok === 1 ? { ok: true } : { ok: false, reason: reason ?? 'UNKNOWN' };
}
