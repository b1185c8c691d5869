import { Cluster } from 'ioredis';
import { asIs } from './function-calls.js';
import type { ShardRef } from './keys.js';
import { OperationCalls } from './operation-calls.js';
import { emitArguments, type EmitArgs, type Handoff, type TransitionResult } from './run-transitions.js';

export type {
  ClaimedRun,
  ClaimRequest,
  ClaimWorkflowSpec,
  CommitResult,
  EmitArgs,
  FailNext,
  Handoff,
  ParkResult,
  TransitionResult,
  WaitSpec,
} from './run-transitions.js';
export { COMPLETE_RECORDS_PER_CALL, PARK_WAITS_PER_CALL } from './run-transitions.js';

/** Step records a fork copies, or a retry from a step deletes, per call (FORK_RECORDS_PER_CALL in lua/rerun.lua). */
export const FORK_RECORDS_PER_CALL = 500;

/** Nodes per wf1_graph_stage call (lua/graph.lua allows 256): about 0.35 ms of Redis time for small inputs
 *  (128 took 1.4 ms at the median and up to 5.6 ms while the graph's hash grew past 10,000 nodes; 64 still
 *  logged one call over 5 ms on a machine at load 25). */
export const GRAPH_NODES_PER_CALL = 32;

/** A graph's own fields, for wf1_graph_stage (lua/graph.lua). `roots`: in the first call only. */
export interface GraphStage {
  graphId: string;
  field: string;
  policy: 'f' | 'c';
  size: number;
  queue: string;
  roots?: string;
}

/** One node, numbered by the client; `dependents` and `dependencies` are node numbers, each followed by ','. */
export interface GraphStageNode {
  index: number;
  name: string;
  workflow: string;
  input: string;
  pending: number;
  dependents: string;
  dependencies: string;
  runId: string;
  /** The node's flow key and spec, when its workflow has flow control (the key lives in the graph's shard). */
  flow?: { key: string; spec: string };
}

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

/**
 * Typed wrappers around every FCALL of the library: the one place in lib/ that spells a function name
 * (with keys.ts, the one place that spells a key). Each state change is exactly one call.
 *
 * Callers hold one WorkflowStore; it is built in layers, one concern a file: FunctionCalls (how a call
 * is sent, retried and batched: function-calls.ts, turn-batcher.ts), WorkflowReads (inspection,
 * workflow-reads.ts), RunTransitions (a held run's transitions and their reply decoders,
 * run-transitions.ts), OperationCalls (bulk actions, pause, progress: operation-calls.ts), and this class: creating runs, cancel and retry, events, the registry, and the
 * worker's housekeeping (heartbeats, releases, ticks).
 */
export class WorkflowStore extends OperationCalls {
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
    const args = emitArguments(a);
    // Optional tails of wf1_emit (lua/emit.lua): ARGV[13] version, [14] deadline, [15-16] flow key and
    // spec, [17-19] debounce; '' for one not used before one that is.
    const flow = a.flow;
    const debounce = flow?.debounce;
    if (a.version || a.deadlineMs !== undefined || flow) args.push(a.version ?? '');
    if (a.deadlineMs !== undefined || flow) args.push(a.deadlineMs ?? '');
    if (flow) args.push(flow.key ?? '', flow.spec ?? '');
    if (debounce) args.push(debounce.key, debounce.periodMs, debounce.maxWaitMs ?? '');
    return this.fcall('wf1_emit', [this.root(shard)], args, (reply) => {
      const [created, runId, status] = reply as [number, string, string];
      const parts = reply as unknown[];
      if (parts.length > 3) return { created: created === 1, runId, status, handoff: this.handoffFrom(this.root(shard), parts.slice(3)) };
      return { created: created === 1, runId, status };
    });
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
  /**
   * Writes part of a graph of child runs (ctx.step.graph) under the parent's lease, ahead of the park that
   * starts it: at most GRAPH_NODES_PER_CALL nodes a call (lua/graph.lua). Safe to repeat.
   */
  stageGraph(shard: ShardRef, runId: string, token: string, graph: GraphStage, nodes: readonly GraphStageNode[]): Promise<TransitionResult> {
    const args: (string | number)[] = [runId, token, graph.graphId, graph.field, graph.policy, graph.size, graph.queue, graph.roots ?? ''];
    // A call with a flow-controlled node sends 10 arguments a node after an 'F' (build 57 on); others, as before, 8.
    const flow = nodes.some((n) => n.flow);
    if (flow) args.push('F');
    for (const n of nodes) {
      args.push(n.index, n.name, n.workflow, n.input, n.pending, n.dependents, n.dependencies, n.runId);
      if (flow) args.push(n.flow?.key ?? '', n.flow?.spec ?? '');
    }
    return this.transition('wf1_graph_stage', [this.root(shard)], args, (reply) => {
      const [ok, reason] = reply as [number, string?];
      return ok === 1 ? { ok: true } : { ok: false, reason: reason ?? 'UNKNOWN' };
    });
  }

  async cancelMore(shard: ShardRef, runId: string, cursor: string): Promise<{ children: string[]; nextPage?: string }> {
    const [next, ...children] = (await this.fcall('wf1_cancel_more', [this.root(shard)], [runId, cursor])) as string[];
    return next === 'done' ? { children: [] } : { children, nextPage: next };
  }

  /** `version`: move the run to this version as it goes back to the queue (lua/includes/00-versions.lua). */
  async retry(shard: ShardRef, runId: string, version?: string): Promise<{ ok: boolean; status?: string }> {
    const reply = (await this.fcall('wf1_retry', [this.root(shard)], version ? [runId, version] : [runId])) as [number, string?];
    return reply[0] === 1 ? { ok: true } : { ok: false, status: reply[1] };
  }

  /** Moves a run that has not finished to `version` (lua/versions.lua); `status`: the run's. */
  async moveVersion(shard: ShardRef, runId: string, version: string): Promise<{ ok: boolean; status: string }> {
    const reply = (await this.fcall('wf1_move_version', [this.root(shard)], [runId, version])) as [number, string];
    return { ok: reply[0] === 1, status: reply[1] };
  }

  /**
   * Creates a fork of `sourceId` as `runId` in the source's shard with copies of `records` (stored values,
   * in call order), FORK_RECORDS_PER_CALL a call: past the first chunk the fork waits 'scheduled' until
   * the last (lua/rerun.lua, wf1_fork and wf1_fork_more). Returns the status the call found or made.
   */
  async fork(
    shard: ShardRef,
    runId: string,
    sourceId: string,
    input: string,
    records: readonly { field: string; value: string; compensates: boolean }[],
  ): Promise<{ created: boolean; status: string }> {
    const chunks: (typeof records)[] = [];
    for (let i = 0; i < records.length; i += FORK_RECORDS_PER_CALL) chunks.push(records.slice(i, i + FORK_RECORDS_PER_CALL));
    const root = this.root(shard);
    const chunkArgs = (chunk: typeof records) => {
      const args: string[] = [chunk.some((r) => r.compensates) ? '1' : '0', String(chunk.length)];
      for (const r of chunk) args.push(r.field, r.value);
      return args;
    };
    const [first, ...rest] = chunks.length > 0 ? chunks : [[]];
    const [created, status] = (await this.fcall('wf1_fork', [root], [runId, sourceId, input, rest.length > 0 ? '1' : '0', ...chunkArgs(first)])) as [number, string];
    // The id is new: a run under it is this call's own, applied already (a resend after a reconnect), and
    // one still 'scheduled' waits for the rest of its records.
    if (created !== 1 && !(status === 'scheduled' && rest.length > 0)) return { created: status !== 'NO_SOURCE', status };
    for (let i = 0; i < rest.length; i += 1) {
      const [last, comp, ...tail] = [i === rest.length - 1 ? '1' : '0', ...chunkArgs(rest[i])];
      await this.fcall('wf1_fork_more', [root], [runId, last, comp, ...tail]);
    }
    return { created: true, status: rest.length > 0 ? 'queued' : status };
  }

  /**
   * Deletes `fields` (the step records from a step on) of a failed or canceled run and queues it again, a
   * chunk a call, `last` (the step's own record) in the final chunk (lua/rerun.lua, wf1_forget).
   * `generation`: the value of the run's '~gen' record (see GENERATION_FIELD in lib/execution/step-record.ts).
   */
  async retryFrom(shard: ShardRef, runId: string, fields: readonly string[], last: string, generation: string): Promise<{ ok: boolean; status?: string }> {
    const root = this.root(shard);
    const chunks: string[][] = [];
    for (let i = 0; i < fields.length; i += FORK_RECORDS_PER_CALL) chunks.push(fields.slice(i, i + FORK_RECORDS_PER_CALL));
    chunks.push([last]);
    for (let i = 0; i < chunks.length; i += 1) {
      const reply = (await this.fcall('wf1_forget', [root], [runId, i === 0 ? '1' : '0', i === chunks.length - 1 ? '1' : '0', generation, ...chunks[i]])) as [number, string?];
      // the last call queues the run: a resend of it after a reconnect finds the run queued already
      if (reply[0] !== 1 && !(i === chunks.length - 1 && reply[1] === 'queued')) return { ok: false, status: reply[1] };
    }
    return { ok: true };
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
    sendId?: string,
  ): Promise<{ repeated: boolean; more: boolean; handoffs: Handoff[] }> {
    const byReference = Buffer.byteLength(payload) > SHARED_PAYLOAD_MIN_BYTES;
    const args = [eventId, event, key, payload, retentionMs, byReference ? 'ref' : ''];
    // the sender's id: a repeated one (within the event's retention) delivers nothing
    if (sendId !== undefined) args.push(sendId);
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

  /**
   * Registers a waitForAny's wait for the run `racedId` (lua/races.lua): undefined when that run is unknown,
   * its outcome (state and record) when it has finished, else its workflow (the outcome comes later).
   */
  async waitRun(
    racedId: string,
    runId: string,
    field: string,
    runRoot: string,
  ): Promise<undefined | { state: 'S' | 'F'; record: string } | { workflow: string }> {
    const shard = this.keys.parseRunId(racedId);
    if (!shard) return undefined;
    const reply = (await this.fcall('wf1_wait_run', [this.root(shard)], [racedId, runId, field, runRoot])) as unknown[];
    if (reply[0] === 1) return { state: reply[1] as 'S' | 'F', record: String(reply[2]) };
    if (reply[0] === 0) return { workflow: String(reply[1]) };
    return undefined;
  }

  /** Drops the registration of a waitForAny's wait that lost the race (lua/races.lua). */
  async forgetWaiter(wait: { event: string; key: string } | { racedId: string }, runId: string, field: string): Promise<void> {
    const waiter = `${runId}|${field}`;
    if ('event' in wait) {
      await this.fcall('wf1_forget_waiter', [this.keys.eventRoot()], ['ev', waiter, wait.event, wait.key]);
      return;
    }
    const shard = this.keys.parseRunId(wait.racedId);
    if (shard) await this.fcall('wf1_forget_waiter', [this.root(shard)], ['run', waiter, wait.racedId]);
  }

  /** ctx.setEvent: publishes `value` under `key` for the run, with the step record at `field` (lua/published.lua). */
  async setEvent(
    shard: ShardRef,
    runId: string,
    token: string,
    field: string,
    record: string,
    key: string,
    value: string,
  ): Promise<{ ok: true; at: number } | { ok: false; reason: string }> {
    const reply = (await this.transition('wf1_set_event', [this.root(shard)], [runId, token, field, record, key, value], asIs)) as [number, unknown];
    if (reply[0] === 0) return { ok: false, reason: String(reply[1]) };
    // 2: recorded already (a resent call): the record's time is its prefix
    return { ok: true, at: reply[0] === 1 ? Number(reply[1]) : Number(String(reply[1]).split('|', 1)[0]) };
  }

  /** A run's whole-run deadline (server ms), if it has one. */
  async readDeadline(shard: ShardRef, runId: string): Promise<number | undefined> {
    const dl = await this.client.hget(this.keys.run(this.root(shard), runId), 'dl');
    return dl === null ? undefined : Number(dl);
  }

  /** A value a run published with ctx.setEvent (null when the key is not set), and whether the run has finished. */
  async readPublished(shard: ShardRef, runId: string, key: string): Promise<{ value: string | null; status: string | null }> {
    const root = this.root(shard);
    const [value, status] = await Promise.all([this.client.hget(this.keys.published(root, runId), key), this.client.hget(this.keys.run(root, runId), 'st')]);
    return { value, status };
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
  /**
   * A tick of a cron trigger, or a run started by hand (lua/schedules.lua, wf1_schedule_tick): whether the
   * caller may start the run (a 'fire' of a trigger not paused), whether it is paused, and the latest tick
   * any instance saw before this call.
   */
  async scheduleTick(
    workflow: string,
    id: string,
    mode: 'fire' | 'skip' | 'ran' | 'next',
    at: number,
    next?: number,
  ): Promise<{ fire: boolean; paused: boolean; seenBefore?: number }> {
    const reply = (await this.fcall('wf1_schedule_tick', [this.keys.schedules(workflow)], [id, mode, Math.floor(at), next === undefined ? '' : Math.floor(next)])) as [number, number, string];
    return { fire: reply[0] === 1, paused: reply[1] === 1, ...(reply[2] !== '' ? { seenBefore: Number(reply[2]) } : {}) };
  }

  /** Pauses or resumes a cron trigger; true when that changed its state. */
  async schedulePause(workflow: string, id: string, paused: boolean): Promise<boolean> {
    return Number(await this.fcall('wf1_schedule_pause', [this.keys.schedules(workflow)], [id, paused ? '1' : '0'])) === 1;
  }

  async registerIfAbsent(name: string, meta: string): Promise<boolean> {
    return Number(await this.fcall('wf1_register_absent', [this.keys.registry()], [name, meta])) === 1;
  }

  async register(entries: { name: string; meta: string }[]): Promise<void> {
    if (entries.length === 0) return;
    await this.fcall('wf1_register', [this.keys.registry()], entries.flatMap((e) => [e.name, e.meta]));
  }

  async workerBeat(workerId: string, info: string, ttlMs: number): Promise<number> {
    return Number(await this.fcall('wf1_worker_beat', [this.keys.workers()], [workerId, info, ttlMs]));
  }
}

/** Payloads past this many bytes reach the waiters of an event by reference, kept once per receiving shard
 *  (a 10 KB payload to 10,000 waiters kept 100 MB of copies in their records); smaller ones are inlined. */
const SHARED_PAYLOAD_MIN_BYTES = 1024;

/** Runs per heartbeat or release call. */
const RUNS_PER_CALL = 64;

function inChunks<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let at = 0; at < items.length; at += size) chunks.push(items.slice(at, at + size));
  return chunks;
}
