import { Cluster, Command } from 'ioredis';
import type { Writable } from 'node:stream';
import { WorkflowConnectionError } from '../errors/workflow.errors.js';
import type { FunctionLoader } from './function-loader.js';
import { isFunctionNotFound } from './function-loader.js';
import { IMPLIED_HISTORY_FIELDS, impliedHistory } from './implied-history.js';
import { executionScope, type ExecutionScope } from '../execution/execution-scope.js';
import type { KeySpace, ShardRef } from './keys.js';
import { RUN_STATUSES } from '../interfaces/run.interfaces.js';
import type { RedisClient } from './redis-connections.js';

/** The store FCALLs are written under: none, so that ioredis' objects do not carry a run's scope. */
const NO_SCOPE = undefined as unknown as ExecutionScope;

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
  /** `spawn`: a child in the run's own shard not created yet: the park creates it (see RunExecution.runChild).
   *  `joined`: a run another parent started, named by the child's idempotency key: not the run's own child. */
  | { kind: 'child'; field: string; childId: string; workflow: string; timeoutMs?: number; spawn?: EmitArgs; joined?: boolean }
  | { kind: 'event'; field: string; event: string; key: string; timeoutMs?: number };

/**
 * Where a run's wait for an (event, key) starts in their log: after the event its previous wait for them
 * received (`position`, the record's 'th'), or, for its first wait, from the run's creation.
 */
export type EventThreshold = { position: number } | { runCreatedAt: number };

/**
 * How far the clocks of two Redis Cluster nodes may differ without a run missing an event: a run's
 * creation time is read on its shard's node, an event's on the event shard's node. A first wait therefore
 * also takes an event sent up to this long before the run's creation by those clocks. On a single server
 * both are one clock, and the first wait takes the events sent from the run's creation millisecond on.
 */
export const EVENT_CLOCK_SKEW_MS = 1_000;

export type ParkResult = { outcome: 'parked'; wakeAt?: number } | { outcome: 'requeued' } | { outcome: 'lost'; reason: string };

export interface ClaimWorkflowSpec {
  name: string;
  maxConcurrency: number;
  maxAttempts: number;
  timeoutMs: number;
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
}

/** What a claim asks for: up to `max` ready runs of `workflows`, leased to `workerId`. */
export interface ClaimRequest {
  workerId: string;
  max: number;
  leaseMs: number;
  claimId: string;
  workflows: ClaimWorkflowSpec[];
  damagedRetentionMs: number;
}

export type TransitionResult = { ok: true } | { ok: false; reason: string };

export type FailNext = 'retry' | 'finalize' | 'failed' | 'canceled' | 'hook-done';

/**
 * Typed wrappers around every FCALL of the library: the one place in lib/ that spells a function name.
 * Each state change is exactly one call.
 */
export class WorkflowStore {
  private closed = false;

  constructor(
    readonly client: RedisClient,
    readonly keys: KeySpace,
    private readonly loader: FunctionLoader,
  ) {}

  root(shard: ShardRef): string {
    return this.keys.shardRoot(shard);
  }

  /**
   * Creates a run. `handoff`: the idempotency key named a finished run that a parent (a.parentField) now
   * waits for, in another shard: its outcome, to deliver to that parent.
   */
  emit(shard: ShardRef, a: EmitArgs): Promise<{ created: boolean; runId: string; status: string; handoff?: Handoff }> {
    try {
      this.assertConnected();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.fcall('wf1_emit', [this.root(shard)], emitArguments(a), (reply) => {
      const [created, runId, status] = reply as [number, string, string];
      const parts = reply as unknown[];
      if (parts.length > 3) return { created: created === 1, runId, status, handoff: this.handoffFrom(this.root(shard), parts.slice(3)) };
      return { created: created === 1, runId, status };
    });
  }

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
  async park(shard: ShardRef, runId: string, token: string, waitingFor: string, waits: WaitSpec[]): Promise<ParkResult> {
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

  async cancel(
    shard: ShardRef,
    runId: string,
    error: string,
    retentionMs: number,
    hasOnFailure = false,
  ): Promise<{ canceled: boolean; status?: string; children: string[]; nextPage?: string; handoff?: Handoff }> {
    const reply = (await this.fcall('wf1_cancel', [this.root(shard)], [runId, error, retentionMs, hasOnFailure ? '1' : ''])) as unknown[];
    if (reply[0] !== 1) return { canceled: false, status: String(reply[1]), children: [] };
    const handoff = reply[2] as unknown[] | undefined;
    return {
      canceled: true,
      children: reply[1] as string[],
      // the cursor of the next page of children ('0': none; see cancelMore)
      nextPage: reply[3] as string | undefined,
      handoff: handoff && handoff.length > 0 ? this.handoffFrom(this.root(shard), handoff) : undefined,
    };
  }

  /**
   * A canceled run's children from the page at `cursor` on (the children before it are canceled), or the
   * end of its cascade with 'done'. `nextPage`: the cursor after this page ('0' after the last), absent
   * when the cascade has ended.
   */
  async cancelMore(shard: ShardRef, runId: string, cursor: string): Promise<{ children: string[]; nextPage?: string }> {
    const [next, ...children] = (await this.fcall('wf1_cancel_more', [this.root(shard)], [runId, cursor])) as string[];
    return next === 'done' ? { children: [] } : { children, nextPage: next };
  }

  async retry(shard: ShardRef, runId: string): Promise<{ ok: boolean; status?: string }> {
    const reply = (await this.fcall('wf1_retry', [this.root(shard)], [runId])) as [number, string?];
    return reply[0] === 1 ? { ok: true } : { ok: false, status: reply[1] };
  }

  /**
   * Logs an event and returns the hand-offs to the first page of runs that waited for it; `more`: further
   * pages are to be taken with sendEventMore (or by housekeeping, if this process stops).
   */
  async sendEvent(
    eventId: string,
    event: string,
    key: string,
    payload: string,
    retentionMs: number,
  ): Promise<{ repeated: boolean; more: boolean; handoffs: Handoff[] }> {
    const byReference = Buffer.byteLength(payload) > SHARED_PAYLOAD_MIN_BYTES;
    const args = [eventId, event, key, payload, retentionMs, byReference ? 'ref' : ''];
    const reply = (await this.fcall('wf1_send_event', [this.keys.eventRoot()], args)) as unknown[];
    return { repeated: reply[0] === 0, ...this.eventHandoffs(reply, byReference ? { payload, payloadRef: eventId } : undefined) };
  }

  /** The next page of an event's waiters (see sendEvent; `payload`: the event's, as sent). */
  async sendEventMore(eventId: string, payload: string): Promise<{ more: boolean; handoffs: Handoff[] }> {
    const byReference = Buffer.byteLength(payload) > SHARED_PAYLOAD_MIN_BYTES;
    const reply = (await this.fcall('wf1_send_event_more', [this.keys.eventRoot()], [eventId, byReference ? 'ref' : ''])) as unknown[];
    return this.eventHandoffs(reply, byReference ? { payload, payloadRef: eventId } : undefined);
  }

  private eventHandoffs(reply: unknown[], shared?: { payload: string; payloadRef: string }): { more: boolean; handoffs: Handoff[] } {
    const root = this.keys.eventRoot();
    const handoffs = (reply.slice(2) as string[][]).map(([targetRoot, runId, field, record, messageId]) => ({
      targetRoot,
      runId,
      field,
      state: 'S' as const,
      record,
      kind: 'event' as const,
      sourceRoot: root,
      messageId,
      ...shared,
    }));
    return { more: reply[0] === 2, handoffs };
  }

  /** Registers a wait for (event, key), or returns the record of the earliest event past the threshold. */
  async waitEvent(event: string, key: string, runId: string, field: string, after: EventThreshold, runRoot: string): Promise<string | undefined> {
    // In ZRANGEBYSCORE's syntax (lua/events.lua): exclusive after an event, inclusive from a millisecond
    // (an event sent in the creation's millisecond counts as sent after it).
    const threshold =
      'position' in after ? `(${after.position}` : String(after.runCreatedAt - (this.client instanceof Cluster ? EVENT_CLOCK_SKEW_MS : 0));
    const reply = (await this.fcall('wf1_wait_event', [this.keys.eventRoot()], [event, key, runId, field, threshold, runRoot])) as [
      number,
      string?,
    ];
    return reply[0] === 1 ? reply[1] : undefined;
  }

  /** Renews the leases of a worker's runs in a shard, RUNS_PER_CALL a call (a worker's concurrency is the user's to set). */
  async heartbeat(shard: ShardRef, leaseMs: number, runs: { id: string; token: string }[]): Promise<string[]> {
    const calls = inChunks(runs, RUNS_PER_CALL).map((chunk) => {
      const args: (string | number)[] = [leaseMs];
      for (const r of chunk) args.push(r.id, r.token);
      return this.transition('wf1_heartbeat', [this.root(shard)], args, asIs) as Promise<string[]>;
    });
    return (await Promise.all(calls)).flat();
  }

  async release(shard: ShardRef, reason: string, runs: { id: string; token: string }[]): Promise<number> {
    const calls = inChunks(runs, RUNS_PER_CALL).map((chunk) => {
      const args: string[] = [reason];
      for (const r of chunk) args.push(r.id, r.token);
      return this.transition('wf1_release', [this.root(shard)], args, Number);
    });
    return (await Promise.all(calls)).reduce((a, b) => a + b, 0);
  }

  async tick(
    root: string,
    batch: number,
  ): Promise<{ serverNow: number; nextDueMs?: number; more: boolean; handoffs: Handoff[]; cascade?: { runId: string; cursor: string } }> {
    const [now, nextDue, more, messages, cascade] = (await this.fcall('wf1_tick', [root], [batch])) as [number, number, number, string[][], string[]?];
    const handoffs = (messages ?? []).map(([messageId, text]) => {
      const m = JSON.parse(text) as { t: string; r: string; f: string; s: 'S' | 'F'; x: string; k: 'child' | 'event' };
      return { targetRoot: m.t, runId: m.r, field: m.f, state: m.s, record: m.x, kind: m.k, sourceRoot: root, messageId };
    });
    return {
      serverNow: Number(now),
      nextDueMs: Number(nextDue) >= 0 ? Number(nextDue) : undefined,
      more: more === 1,
      handoffs,
      ...(cascade && cascade.length === 2 ? { cascade: { runId: cascade[0], cursor: cascade[1] } } : {}),
    };
  }

  /** Registers a workflow unless it is registered already (by a worker, or an earlier emit). */
  async registerIfAbsent(name: string, meta: string): Promise<boolean> {
    return Number(await this.fcall('wf1_register_absent', [this.keys.registry()], [name, meta])) === 1;
  }

  async register(entries: { name: string; meta: string }[]): Promise<void> {
    if (entries.length === 0) return;
    await this.fcall('wf1_register', [this.keys.registry()], entries.flatMap((e) => [e.name, e.meta]));
  }

  private withHandoff(shard: ShardRef, reply: unknown): TransitionResult & { handoff?: Handoff } {
    const parts = reply as unknown[];
    if (parts[0] !== 1) return { ok: false, reason: String(parts[1] ?? 'UNKNOWN') };
    return parts.length > 1 ? { ok: true, handoff: this.handoffFrom(this.root(shard), parts.slice(1)) } : { ok: true };
  }

  private handoffFrom(sourceRoot: string, parts: unknown[]): Handoff {
    const [targetRoot, runId, field, state, record, messageId] = parts as string[];
    return { targetRoot, runId, field, state: state as 'S' | 'F', record, kind: 'child', sourceRoot, messageId };
  }

  async workerBeat(workerId: string, info: string, ttlMs: number): Promise<number> {
    return Number(await this.fcall('wf1_worker_beat', [this.keys.workers()], [workerId, info, ttlMs]));
  }

  // Reads are plain commands on keys of one slot; they change nothing.

  /**
   * Run ids of a workflow in a shard, newest first, strictly older than the cursor id. Without a status, the
   * newest of every status index are read in one transaction (so that a run moving between two of them is
   * seen once) and merged: every run is in exactly one, so no index of all runs is kept (one write per run fewer).
   */
  async readRunIds(shard: ShardRef, workflow: string, status: string | undefined, beforeId: string | undefined, limit: number): Promise<string[]> {
    const root = this.root(shard);
    const max = beforeId ? `(${beforeId}` : BEFORE_SENTINEL;
    if (status) return this.guard(() => this.client.zrevrangebylex(this.keys.statusIndex(root, workflow, status), max, '-', 'LIMIT', 0, limit));
    const transaction = this.client.multi();
    for (const each of RUN_STATUSES) transaction.zrevrangebylex(this.keys.statusIndex(root, workflow, each), max, '-', 'LIMIT', 0, limit);
    const replies = (await this.guard(() => transaction.exec())) ?? [];
    const ids = new Set<string>();
    for (const [error, page] of replies) {
      if (error) throw error;
      for (const id of page as string[]) ids.add(id);
    }
    return [...ids].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)).slice(0, limit);
  }

  /** The runs' hashes; with `fields`, only those fields (HMGET: a run's payloads are not read). */
  async readRuns(runs: { shard: ShardRef; id: string }[], fields?: readonly string[]): Promise<(Record<string, string> | undefined)[]> {
    if (fields) {
      const values = await this.guard(() => Promise.all(runs.map((r) => this.client.hmget(this.keys.run(this.root(r.shard), r.id), ...fields))));
      return values.map((row) => {
        const hash: Record<string, string> = {};
        row.forEach((value, i) => {
          if (value !== null) hash[fields[i]] = value;
        });
        return Object.keys(hash).length === 0 ? undefined : hash;
      });
    }
    const hashes = await this.guard(() => Promise.all(runs.map((r) => this.client.hgetall(this.keys.run(this.root(r.shard), r.id)))));
    return hashes.map((h) => (Object.keys(h).length === 0 ? undefined : h));
  }

  async readChildren(shard: ShardRef, runId: string): Promise<string[]> {
    return this.guard(() => this.client.smembers(this.keys.children(this.root(shard), runId)));
  }

  /**
   * Per status, how many runs of the workflow the shard holds; how many wait in its ready set; and the
   * oldest queued run's id (a ULID: its creation time).
   */
  async readCounts(
    shard: ShardRef,
    workflow: string,
    statuses: readonly string[],
  ): Promise<{ counts: number[]; ready: number; oldestQueued?: string }> {
    const root = this.root(shard);
    return this.guard(async () => {
      const [counts, ready, oldest] = await Promise.all([
        Promise.all(statuses.map((status) => this.countIndex(root, workflow, status))),
        this.client.zcard(this.keys.ready(root, workflow)),
        this.client.zrangebylex(this.keys.statusIndex(root, workflow, 'queued'), '-', BEFORE_SENTINEL, 'LIMIT', 0, 1),
      ]);
      return { counts, ready, oldestQueued: oldest[0] };
    });
  }

  async readWorkers(): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.workers()));
  }


  async readRun(shard: ShardRef, runId: string): Promise<Record<string, string> | undefined> {
    const hash = await this.guard(() => this.client.hgetall(this.keys.run(this.root(shard), runId)));
    return Object.keys(hash).length === 0 ? undefined : hash;
  }

  /**
   * The step records of a claimed run that its claim did not carry, from the claim's HSCAN cursor on, a page
   * per command so that no read stalls Redis. Records may repeat (HSCAN's promise): later ones win, which is
   * also how a record resolved meanwhile is taken.
   */
  async readStepsFrom(shard: ShardRef, runId: string, cursor: string, into: Map<string, string>): Promise<void> {
    const key = this.keys.steps(this.root(shard), runId);
    for (let at = cursor; at !== '0'; ) {
      const [next, page] = await this.guard(() => this.client.hscan(key, at, 'COUNT', STEP_RECORDS_PAGE));
      for (let i = 0; i < page.length; i += 2) into.set(page[i], page[i + 1]);
      at = next;
    }
  }

  async readSteps(shard: ShardRef, runId: string): Promise<Record<string, string>> {
    const records = await this.guard(() => this.client.hgetall(this.keys.steps(this.root(shard), runId)));
    const resolved = await this.withPayloads(shard, new Map(Object.entries(records)));
    return Object.fromEntries(resolved);
  }

  /** The payload of an event kept once by a shard for the records that name it (see withPayloads), or null. */
  async readSharedPayload(shard: ShardRef, eventId: string): Promise<string | null> {
    return this.guard(() => this.client.get(this.keys.sharedPayload(this.root(shard), eventId)));
  }

  /**
   * Records that name an event instead of carrying its payload (lua/includes/04-shared-payloads.lua) get the
   * payload back in place, read once per event from the shard; every reader of records goes through this.
   */
  async withPayloads(shard: ShardRef, records: Map<string, string>): Promise<Map<string, string>> {
    const refs = new Set<string>();
    for (const record of records.values()) {
      const named = SHARED_PAYLOAD_NAME.exec(record);
      if (named) refs.add(named[1]);
    }
    if (refs.size === 0) return records;
    const root = this.root(shard);
    const ids = [...refs];
    const payloads = await this.guard(() => this.client.mget(...ids.map((id) => this.keys.sharedPayload(root, id))));
    const byId = new Map(ids.map((id, i) => [id, payloads[i]]));
    for (const [field, record] of records) {
      const named = SHARED_PAYLOAD_NAME.exec(record);
      const payload = named && byId.get(named[1]);
      if (payload != null) records.set(field, record.replace(named![0], `,"r":${payload}`));
    }
    return records;
  }

  /** The run's history entries: the implied ones (see implied-history.ts), then its list, read atomically. */
  async readHistory(shard: ShardRef, runId: string): Promise<string[]> {
    const root = this.root(shard);
    const replies = await this.guard(() =>
      this.client
        .multi()
        .hmget(this.keys.run(root, runId), ...IMPLIED_HISTORY_FIELDS)
        .lrange(this.keys.history(root, runId), 0, -1)
        .exec(),
    );
    const [[hashError, fields], [listError, list]] = replies as [[Error | null, (string | null)[]], [Error | null, string[]]];
    if (hashError ?? listError) throw hashError ?? listError;
    return [...impliedHistory(fields), ...list];
  }

  /** The runs in a status index: its members before the sentinel that keeps a busy small index a skiplist
   *  (lua/includes/01-common.lua, SKIPLIST_SENTINEL). */
  private countIndex(root: string, workflow: string, status: string): Promise<number> {
    return this.client.zlexcount(this.keys.statusIndex(root, workflow, status), '-', BEFORE_SENTINEL);
  }

  async readIdempotencyKey(shard: ShardRef, workflow: string, key: string): Promise<string | null> {
    return this.guard(() => this.client.hget(this.keys.idempotency(this.root(shard), workflow), key));
  }

  /** How many runs of a workflow are in each of the given statuses in this shard (the sizes of its status indexes). */
  async readStatusCounts<S extends string>(shard: ShardRef, workflow: string, statuses: readonly S[]): Promise<Record<S, number>> {
    const root = this.root(shard);
    const values = await this.guard(() =>
      Promise.all(statuses.map((status) => this.countIndex(root, workflow, status))),
    );
    return Object.fromEntries(statuses.map((status, i) => [status, values[i]])) as Record<S, number>;
  }

  async readRegistry(): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.registry()));
  }

  async readRegistryEntry(name: string): Promise<string | null> {
    return this.guard(() => this.client.hget(this.keys.registry(), name));
  }

  /**
   * Producers fail fast while the connection is down. Without this check a call would wait behind
   * commands that were in flight when the connection dropped, which ioredis holds for resending until
   * several reconnect attempts have failed (seconds when the host does not answer).
   */
  private assertConnected(): void {
    if (this.client.status === 'ready') return;
    throw new WorkflowConnectionError(
      `Redis is unreachable (connection ${this.client.status}). Retry when it is back: every call is safe to repeat.`,
    );
  }

  /**
   * A worker's transition of a run it holds: every one is safe to repeat, so a connection that drops
   * (a failover, a cut connection, a restart) is retried with backoff while the lease may still be
   * valid, instead of giving the run up; Redis itself refuses the call once the lease has expired.
   */
  private transition<T>(fn: string, keys: string[], args: (string | number)[], parse: (reply: unknown) => T): Promise<T> {
    // One promise beyond ioredis' own on the success path: a run makes several of these calls.
    return this.send(fn, keys, args).then(parse, (error: unknown) =>
      this.afterFailure(error, fn, keys, args, Date.now() + TRANSITION_RETRY_MS).then(parse),
    );
  }

  /** One FCALL; reloads the library once if the server lost it (flushed or restarted), then retries. */
  private fcall(fn: string, keys: string[], args: (string | number)[]): Promise<unknown>;
  private fcall<T>(fn: string, keys: string[], args: (string | number)[], parse: (reply: unknown) => T): Promise<T>;
  private fcall(fn: string, keys: string[], args: (string | number)[], parse: (reply: unknown) => unknown = asIs): Promise<unknown> {
    return this.send(fn, keys, args).then(parse, (error: unknown) => this.afterFailure(error, fn, keys, args).then(parse));
  }

  /** A call failed: reload a lost library and call again; retry a transition through an outage until `retryUntil`. */
  private async afterFailure(error: unknown, fn: string, keys: string[], args: (string | number)[], retryUntil?: number, redirected = 0): Promise<unknown> {
    if (isFunctionNotFound(error)) {
      await this.loader.reload();
      return this.guard(() => this.send(fn, keys, args));
    }
    // A cluster in the middle of a failover may redirect more than once; a transition then goes on
    // retrying as for a lost connection.
    if (redirected < MAX_REDIRECTED_RESENDS && (await this.refreshedAfterMoved(error))) {
      return this.send(fn, keys, args).catch((next: unknown) => this.afterFailure(next, fn, keys, args, retryUntil, redirected + 1));
    }
    let failure = asConnectionError(error);
    for (let wait = 25; ; wait = Math.min(wait * 2, 1_000)) {
      if (retryUntil === undefined || !(failure instanceof WorkflowConnectionError) || this.closed || Date.now() + wait > retryUntil) throw failure;
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
      try {
        return await this.send(fn, keys, args);
      } catch (next) {
        if (isFunctionNotFound(next) || isRedirection(next)) return this.afterFailure(next, fn, keys, args, retryUntil, redirected);
        failure = asConnectionError(next);
      }
    }
  }

  /** The module is shutting down: calls that fail are not retried any more. */
  close(): void {
    this.closed = true;
  }

  private send(fn: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    // Outside the run's AsyncLocalStorage context: every promise made in it carries the run's scope, and
    // with the scope on ioredis' command objects the runs of a burst survived minor GCs and were promoted
    // whole (10,000 parked runs grew the worker by 40 MB; bench/NOTES.md, "Fourth round"). The caller's
    // own continuation keeps its context: await restores it. run(undefined), not exit(): on Node 20 exit()
    // turns the promise hooks off and on again for every call (setPromiseHooks), 3 % of the worker's CPU.
    return executionScope.run(NO_SCOPE, () => this.write(fn, keys, args));
  }

  /**
   * Concurrent calls share socket writes, and several batches may be in flight at once.
   *
   * ioredis auto-pipelining collects the commands of one event-loop turn into one write, but keeps only
   * one such pipeline in flight per connection: the next batch waits until every reply of the previous
   * one has arrived, so Redis and this process take turns instead of working at the same time. On a
   * standalone Redis the call is therefore written at once (ioredis matches replies in order, as for any
   * command) into a socket corked until the end of this turn: the turn's calls still leave in one write,
   * and the next turn's calls leave while Redis is still answering this one's. On a cluster ioredis
   * auto-pipelining (per node) is used as it is.
   *
   * Step commits go one step further: those of one turn on one shard share one FCALL (wf1_many, see
   * batched).
   */
  private write(fn: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    const client = this.client;
    if (client.status !== 'ready') return client.fcall(fn, keys.length, ...keys, ...args);
    if (BATCHED_ARGS[fn] === args.length && keys.length === 1) return this.batched(fn, keys[0], args);
    return this.writeNow(fn, keys, args);
  }

  /** `calls`: how many calls the FCALL carries (a wf1_many carries several). */
  private writeNow(fn: string, keys: string[], args: (string | number)[], calls = 1): Promise<unknown> {
    const client = this.client;
    if (client instanceof Cluster || !client.options.enableAutoPipelining) {
      return client.fcall(fn, keys.length, ...keys, ...args);
    }
    this.corkForThisTurn((client as unknown as { stream: Writable }).stream, calls);
    return client.sendCommand(new Command('fcall', commandArguments(fn, keys, args), { replyEncoding: 'utf8' })) as Promise<unknown>;
  }

  /**
   * Calls of one function on one shard collected in this turn, by function and shard root. A new Map each
   * turn: a long-lived one keeps the entries it dropped reachable from old space until a full GC (see
   * worker/executing-runs.ts), and the batches' callbacks reach the runs that made the calls.
   */
  private batches?: Map<string, Batch>;

  /**
   * Joins the call to this turn's batch of its function on its shard. The batch leaves at the end of the
   * turn (or once it is full) as one FCALL of wf1_many, or as the plain call when it holds only one. Each
   * caller gets its own call's reply; when the batch as a whole fails, each call is sent again alone
   * (a step commit is safe to repeat: it stores the same record again).
   */
  private batched(fn: string, root: string, args: (string | number)[]): Promise<unknown> {
    const key = `${fn}\u0000${root}`;
    const batches = (this.batches ??= new Map());
    let batch = batches.get(key);
    if (!batch) {
      batch = { fn, root, calls: [] };
      batches.set(key, batch);
      this.endTurnSoon();
    }
    const calls = batch.calls;
    const reply = new Promise((resolve, reject) => calls.push({ args, resolve, reject }));
    if (calls.length >= MAX_BATCH) {
      batches.delete(key);
      this.sendBatch(batch);
    }
    return reply;
  }

  private sendBatch(batch: Batch): void {
    const { fn, root, calls } = batch;
    if (calls.length === 1) {
      const [call] = calls;
      this.writeNow(fn, [root], call.args).then(call.resolve, call.reject);
      return;
    }
    const args: (string | number)[] = [BATCHED_NAMES[fn], BATCHED_ARGS[fn]];
    for (const call of calls) for (const arg of call.args) args.push(arg);
    this.writeNow('wf1_many', [root], args, calls.length).then(
      (replies) => {
        for (let i = 0; i < calls.length; i += 1) calls[i].resolve((replies as unknown[])[i]);
      },
      // Each call again on its own, so that each gets its own outcome: a call that Redis refused (an
      // error in one call ends the FCALL there) does not fail the others. A lost connection or library
      // fails them alone too, and their callers retry or reload as for any call.
      () => {
        for (const call of calls) this.writeNow(fn, [root], call.args).then(call.resolve, call.reject);
      },
    );
  }

  private turnEndScheduled = false;

  private endTurnSoon(): void {
    if (this.turnEndScheduled) return;
    this.turnEndScheduled = true;
    setImmediate(() => this.endTurn());
  }

  /** The end of the turn: this turn's batches are written, then the corked socket sends everything at once. */
  private endTurn(): void {
    const batches = this.batches;
    this.batches = undefined;
    if (batches) for (const batch of batches.values()) this.sendBatch(batch);
    this.turnEndScheduled = false;
    const stream = this.corkedStream;
    if (stream) {
      this.corkedStream = undefined;
      stream.uncork();
    }
  }

  private corkedStream?: Writable;

  private corkedCalls = 0;

  private corkForThisTurn(stream: Writable | undefined, calls: number): void {
    if (!stream) return;
    if (this.corkedStream === stream) {
      // Long turns (many replies read at once) send in parts, so that Redis starts on them meanwhile.
      this.corkedCalls += calls;
      if (this.corkedCalls >= FLUSH_EVERY) {
        this.corkedCalls = 0;
        stream.uncork();
        stream.cork();
      }
      return;
    }
    if (this.corkedStream) this.corkedStream.uncork(); // a reconnect replaced the stream
    this.corkedStream = stream;
    this.corkedCalls = calls;
    stream.cork();
    this.endTurnSoon();
  }

  private async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (!(await this.refreshedAfterMoved(error))) throw asConnectionError(error);
      try {
        return await call();
      } catch (again) {
        throw asConnectionError(again);
      }
    }
  }

  /**
   * A MOVED (or ASK) that reached us: ioredis redirects a command on its own, but an auto-pipelined batch
   * whose commands got different redirections (several slots, after a failover or a resharding) is
   * answered with the errors, and nothing refreshes the client's slot map. Without this a client that
   * only reads (an API process, the module's command connection) kept getting MOVED after a failover.
   * Refreshes the map and says whether the call can be sent again (Redis did not execute it).
   */
  private refreshedAfterMoved(error: unknown): Promise<boolean> {
    const client = this.client;
    if (!(client instanceof Cluster) || !isRedirection(error)) return Promise.resolve(false);
    return new Promise((resolve) => client.refreshSlotsCache(() => resolve(true)));
  }
}

/**
 * FCALL's arguments as one array that answers `flat()` with itself. ioredis copies every command's
 * arguments with Array.prototype.flat, which V8 (Node 20) runs at about 100 ns per element: 2 µs for a
 * completion's 19 arguments, 6 µs for a park that starts 3 children, more than all the rest of making
 * the command (bench/NOTES.md, seventh round). Ours hold no nested arrays, so the copy is not needed.
 * A subclass rather than an own `flat` property on a plain array: the property's backing store made
 * every command in flight larger, and a burst's commands are in flight long enough to be promoted to old
 * space (the worker-memory probe went from about 1,000 to 1,800 bytes per run).
 */
function commandArguments(fn: string, keys: string[], args: (string | number)[]): (string | number)[] {
  const all = new FcallArguments(2 + keys.length + args.length);
  all[0] = fn;
  all[1] = keys.length;
  let at = 2;
  for (const key of keys) all[at++] = key;
  for (const arg of args) all[at++] = arg;
  return all;
}

class FcallArguments extends Array<string | number> {
  override flat(): never {
    return this as never;
  }
}

interface Batch {
  fn: string;
  root: string;
  calls: { args: (string | number)[]; resolve: (reply: unknown) => void; reject: (error: unknown) => void }[];
}

/**
 * The functions wf1_many batches: their name there and how many arguments each call has (lua/many.lua).
 * Step commits only: batching emits as well made a producer's burst promote ~500 B more per run to old
 * space (test/support/worker-memory.probe.ts) for a few percent of throughput (bench/NOTES.md, sixth round).
 */
const BATCHED_NAMES: Record<string, string> = { wf1_commit_step: 'commit_step' };
const BATCHED_ARGS: Record<string, number> = { wf1_commit_step: 8 };
/** Calls per wf1_many: a full batch leaves at once, so that Redis starts on it while this turn goes on. */
const MAX_BATCH = 16;

/** Calls per socket write within one long turn (measured: 8-16 best for 50 concurrent one-step runs, bench/NOTES.md). */
const FLUSH_EVERY = 16;

/** The lexicographic bound below the member that keeps a status index in skiplist encoding (every run id
 *  sorts before it; see SKIPLIST_SENTINEL in lua/includes/01-common.lua). */
const BEFORE_SENTINEL = '(~';

/** How many times a call that got MOVED or ASK is sent again after refreshing the cluster's slot map. */
const MAX_REDIRECTED_RESENDS = 5;

function isRedirection(error: unknown): boolean {
  return error instanceof Error && /^(MOVED|ASK) /.test(error.message);
}

/** How long a worker keeps retrying a transition through a connection outage. */
const TRANSITION_RETRY_MS = 15_000;

function claimArgs(r: ClaimRequest): (string | number)[] {
  // 'f': packed run entries, flat in the reply (lua/includes/03-claim.lua): a third of the elements for ioredis
  // to decode, and no nested arrays, which cost Redis about 5,000 instructions each to send.
  // 'r': flat, with a large run's step records paged (see ClaimedRun.stepsCursor).
  return [r.workerId, `${r.max}r`, r.leaseMs, r.claimId, r.damagedRetentionMs, packedWorkflowSpecs(r.workflows)];
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
    text = workflows.map((w) => `${w.maxConcurrency},${w.maxAttempts},${w.timeoutMs},${Buffer.byteLength(w.name)}:${w.name}`).join('');
    packedSpecs.set(workflows, text);
  }
  return text;
}

/**
 * The runs of a flat claim reply (lua/claim.lua), from `at` to its end: the server's time, then per run its
 * head, input, error, how many step elements follow, and those (field, record, ...).
 */
function parseClaimReply(reply: unknown[], at = 0): ClaimedRun[] {
  const serverNow = Number(reply[at]);
  const runs: ClaimedRun[] = [];
  for (let r = at + 1; r < reply.length; ) {
    const head = reply[r] as string;
    const input = reply[r + 1] as string;
    const error = reply[r + 2] as string;
    // '<n>:<cursor>' for a run whose records go on past the claim's page
    const count = reply[r + 3];
    const paged = typeof count === 'string' ? count.split(':') : undefined;
    const stepsEnd = r + 4 + Number(paged ? paged[0] : count);
    const steps = new Map<string, string>();
    for (let i = r + 4; i < stepsEnd; i += 2) steps.set(reply[i] as string, reply[i + 1] as string);
    r = stepsEnd;
    const parts = head.split('\n');
    const [id, token, parentId, finalizing, attempt, maxAttempts, createdAt, epoch] = parts;
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
      finalizing: (finalizing || undefined) as ClaimedRun['finalizing'],
      error: error || undefined,
      steps,
      serverNow,
      epoch: Number(epoch),
      ...(paged ? { stepsCursor: paged[1] } : {}),
    });
  }
  return runs;
}

/**
 * Waits per wf1_park or wf1_park_stage call. A fan-out child costs a park about 30 µs of Redis time (the
 * park that created 3,999 children took about 120 ms), so a call stays near 0.6 ms; a park of 32 waits or
 * fewer (a fan-out of 3, the common case) is one call, as it always was.
 */
export const PARK_WAITS_PER_CALL = 32;

/** Payloads past this many bytes reach the waiters of an event by reference, kept once per receiving shard
 *  (a 10 KB payload to 10,000 waiters kept 100 MB of copies in their records); smaller ones are inlined. */
const SHARED_PAYLOAD_MIN_BYTES = 1024;

/** Where a record names an event's shared payload ('"rp":"<event id>"', lua/events.lua). */
const SHARED_PAYLOAD_NAME = /,"rp":"([0-9A-HJKMNP-TV-Z]{26})"/;

/** Runs per heartbeat or release call. */
const RUNS_PER_CALL = 64;

function inChunks<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let at = 0; at < items.length; at += size) chunks.push(items.slice(at, at + size));
  return chunks;
}

/** Step records per HSCAN when a worker reads the rest of a claimed run's records (readStepsFrom). */
const STEP_RECORDS_PAGE = 1000;

/** Step records a completion carries at most; more are committed before it (see complete). */
export const COMPLETE_RECORDS_PER_CALL = 64;

/** wf1_park's waits (lua/park.lua), appended to `args`. */
function pushWaitArguments(args: (string | number)[], waits: readonly WaitSpec[]): void {
  for (const w of waits) {
    if (w.kind === 'sleep') args.push('sleep', w.field, w.spec);
    else if (w.kind === 'child') {
      args.push(w.spawn ? 'spawn' : w.joined ? 'join' : 'child', w.field, `${w.childId}|${w.timeoutMs ?? ''}|${w.workflow}`);
      if (w.spawn) args.push(...emitArguments(w.spawn));
    }
    // the user's event name and key as arguments of their own: the library decodes nothing users wrote
    else args.push('ev', w.field, w.event, w.key, w.timeoutMs ?? '');
  }
}

/** wf1_emit's arguments (lua/emit.lua), also carried by wf1_park for the children it starts. */
function emitArguments(a: EmitArgs): (string | number)[] {
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

export type CommitResult = { ok: true; committedAt?: number } | { ok: false; reason: string } | { ok: true; resolved: string };

/** wf1_commit_step's reply: 1 and the commit's server time; 2 and the record that won (if-open); 0 and why not. */
function parseCommitReply(raw: unknown): CommitResult {
  const reply = raw as [number, (string | number)?];
  if (reply[0] === 2) return { ok: true, resolved: reply[1] as string };
  // Builds before 12 answer { 1 } without the server time of the commit.
  if (reply[0] === 1) return typeof reply[1] === 'number' ? { ok: true, committedAt: reply[1] } : { ok: true };
  return toResult(reply);
}

function asIs(reply: unknown): unknown {
  return reply;
}

function toResult(reply: unknown): TransitionResult {
  const [ok, reason] = reply as [number, string?];
  return ok === 1 ? { ok: true } : { ok: false, reason: reason ?? 'UNKNOWN' };
}


/** A lost or refused connection, as the WorkflowConnectionError callers handle; other errors as they are. */
function asConnectionError(error: unknown): unknown {
  if (error instanceof Error && !(error instanceof WorkflowConnectionError) && isConnectionError(error)) {
    return new WorkflowConnectionError(`Redis is unreachable (${error.message}). Retry when it is back: every call is safe to repeat.`, {
      cause: error,
    });
  }
  return error;
}

function isConnectionError(error: Error): boolean {
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|MaxRetriesPerRequest|enableOfflineQueue/i.test(
    error.message,
  );
}
