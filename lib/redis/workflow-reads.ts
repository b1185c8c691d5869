import { IMPLIED_HISTORY_FIELDS, impliedHistory } from './implied-history.js';
import { RUN_STATUSES } from '../interfaces/run.interfaces.js';
import { FunctionCalls } from './function-calls.js';
import type { ShardRef } from './keys.js';

/** Where readRun puts a held-back run's reason (not a field Redis stores: see addDelayedBy). */
export const DELAYED_BY_FIELD = '~delayedBy';

/**
 * The store's reads, for inspection (listings, counts, a run's hash, steps and history) and for a worker
 * reading the rest of a large run's records. Plain commands on keys of one slot; they change nothing.
 * A layer of WorkflowStore (workflow-store.ts).
 */
export abstract class WorkflowReads extends FunctionCalls {
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
      const rows = values.map((row) => {
        const hash: Record<string, string> = {};
        row.forEach((value, i) => {
          if (value !== null) hash[fields[i]] = value;
        });
        return hash;
      });
      await Promise.all(rows.map((h, i) => this.addDelayedBy(runs[i].shard, runs[i].id, h)));
      return rows.map((hash) => (Object.keys(hash).length === 0 ? undefined : hash));
    }
    const hashes = await this.guard(() => Promise.all(runs.map((r) => this.client.hgetall(this.keys.run(this.root(r.shard), r.id)))));
    await Promise.all(hashes.map((h, i) => this.addDelayedBy(runs[i].shard, runs[i].id, h)));
    return hashes.map((h) => (Object.keys(h).length === 0 ? undefined : h));
  }

  /**
   * Why a held-back run waits is its flow key's ('b', see lua/includes/01-flow.lua), not the run's: a key's
   * reason changes without a write to each of its runs. Read into the hash as DELAYED_BY_FIELD. A run of a
   * key without rate limit or fairness keeps 'fs' = 'h' once admitted to the ready set: it is held back
   * only while it is in its key's held set.
   */
  private async addDelayedBy(shard: ShardRef, id: string, hash: Record<string, string>): Promise<void> {
    if (hash.fs !== 'h' || hash.st !== 'queued' || !hash.fk) return;
    const root = this.root(shard);
    const member = hash.v?.startsWith('*') ? `*${id}` : id;
    const [reason, held] = await this.guard(() =>
      Promise.all([this.client.hget(this.keys.flowState(root, hash.wf, hash.fk), 'b'), this.client.zscore(this.keys.flowHeld(root, hash.wf, hash.fk), member)]),
    );
    if (reason && held !== null) hash[DELAYED_BY_FIELD] = reason;
  }

  /** Fields of a graph of child runs (lua/includes/05-graph.lua), null where absent. */
  async readGraphFields(shard: ShardRef, graphId: string, fields: readonly string[]): Promise<(string | null)[]> {
    if (fields.length === 0) return [];
    return this.guard(() => this.client.hmget(this.keys.graph(this.root(shard), graphId), ...fields));
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
  ): Promise<{ counts: number[]; ready: number; oldestQueued?: string; heldBack: Record<string, number> }> {
    const root = this.root(shard);
    return this.guard(async () => {
      const [counts, ready, oldest, held] = await Promise.all([
        Promise.all(statuses.map((status) => this.countIndex(root, workflow, status))),
        this.client.zcard(this.keys.ready(root, workflow)),
        this.client.zrangebylex(this.keys.statusIndex(root, workflow, 'queued'), '-', BEFORE_SENTINEL, 'LIMIT', 0, 1),
        this.client.hgetall(this.keys.heldCounts(root, workflow)),
      ]);
      const heldBack: Record<string, number> = {};
      for (const [reason, count] of Object.entries(held)) if (Number(count) > 0) heldBack[reason] = Number(count);
      return { counts, ready, oldestQueued: oldest[0], heldBack };
    });
  }

  async readWorkers(): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.workers()));
  }

  async readRun(shard: ShardRef, runId: string): Promise<Record<string, string> | undefined> {
    const hash = await this.guard(() => this.client.hgetall(this.keys.run(this.root(shard), runId)));
    await this.addDelayedBy(shard, runId, hash);
    return Object.keys(hash).length === 0 ? undefined : hash;
  }

  /**
   * The step records of a claimed run that its claim did not carry, from the claim's HSCAN cursor on, a page
   * per command so that no read stalls Redis. Records may repeat (HSCAN's promise): later ones win, which is
   * also how a record resolved meanwhile is taken.
   */
  async readStepsFrom(shard: ShardRef, runId: string, cursor: string, into: Map<string, string>): Promise<void> {
    const key = this.keys.steps(this.root(shard), runId);
    // cursor '0': every record (a worker without the warm execution a warm claim was for)
    let at = cursor;
    do {
      const [next, page] = await this.guard(() => this.client.hscan(key, at, 'COUNT', STEP_RECORDS_PAGE));
      for (let i = 0; i < page.length; i += 2) into.set(page[i], page[i + 1]);
      at = next;
    } while (at !== '0');
  }

  /** Every step record of a run, a page per command (a run of 10,000 records is never read in one). */
  async readStepsPaged(shard: ShardRef, runId: string, into: Map<string, string>): Promise<void> {
    const key = this.keys.steps(this.root(shard), runId);
    let at = '0';
    do {
      const [next, page] = await this.guard(() => this.client.hscan(key, at, 'COUNT', STEP_RECORDS_PAGE));
      for (let i = 0; i < page.length; i += 2) into.set(page[i], page[i + 1]);
      at = next;
    } while (at !== '0');
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

  /** A run's version field ('v': the version, with '*' before it when pinned; see lua/includes/00-versions.lua). */
  async readRunVersion(root: string, runId: string): Promise<string | null> {
    return this.guard(() => this.client.hget(this.keys.run(root, runId), 'v'));
  }

  /**
   * The workflow's runs in this shard that have not finished, by version ('v' text: '*' before a pinned
   * one's), and for each pinned version how many of them are ready and wait for a worker of it.
   */
  async readVersionCounts(shard: ShardRef, workflow: string): Promise<{ version: string; pinned: boolean; active: number; ready: number }[]> {
    const root = this.root(shard);
    const counts = await this.guard(() => this.client.hgetall(this.keys.versionCounts(root, workflow)));
    const entries = Object.entries(counts).map(([v, n]) => ({ version: v.replace(/^\*/, ''), pinned: v.startsWith('*'), active: Number(n), ready: 0 }));
    const pinned = entries.filter((e) => e.pinned);
    if (pinned.length > 0) {
      const ready = await this.guard(() => Promise.all(pinned.map((e) => this.client.zcard(this.keys.pinnedReady(root, workflow, e.version)))));
      pinned.forEach((e, i) => (e.ready = ready[i]));
    }
    return entries;
  }

  /** Per-minute counts of a workflow in a shard: for each of the hours (see KeySpace.throughput), per kind,
   *  minute of the hour -> count. One pipeline of HGETALLs of small hashes (at most 60 fields each). */
  async readThroughput(shard: ShardRef, workflow: string, kinds: readonly string[], hours: readonly number[]): Promise<Record<string, string>[]> {
    const root = this.root(shard);
    return this.guard(() => Promise.all(hours.flatMap((hour) => kinds.map((kind) => this.client.hgetall(this.keys.throughput(root, workflow, kind, hour))))));
  }

  /** Leases of a workflow's runs that expired in a shard (taken back by housekeeping), since the shard began. */
  async readLeaseExpiries(shard: ShardRef): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.leaseExpiries(this.root(shard))));
  }

  /** The run-time state of a workflow's cron triggers (lua/schedules.lua), field -> value. */
  async readSchedules(workflow: string): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.schedules(workflow)));
  }

  /** The Redis server's clock, in ms. */
  async readServerTime(): Promise<number> {
    const [seconds, micros] = await this.guard(() => this.client.time());
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async readRegistry(): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.registry()));
  }

  async readRegistryEntry(name: string): Promise<string | null> {
    return this.guard(() => this.client.hget(this.keys.registry(), name));
  }
}

/** The lexicographic bound below the member that keeps a status index in skiplist encoding (every run id
 *  sorts before it; see SKIPLIST_SENTINEL in lua/includes/01-common.lua). */
const BEFORE_SENTINEL = '(~';

/** Where a record names an event's shared payload ('"rp":"<event id>"', lua/events.lua). */
const SHARED_PAYLOAD_NAME = /,"rp":"([0-9A-HJKMNP-TV-Z]{26})"/;

/** Step records per HSCAN when a worker reads the rest of a claimed run's records (readStepsFrom). */
const STEP_RECORDS_PAGE = 1000;
