import { decodeTime } from 'ulid';
import { WorkflowError } from '../errors/workflow.errors.js';
import {
  RUN_STATUSES,
  type ListRunsParams,
  type RunInfo,
  type RunPage,
  type StatusCounts,
  type VersionStats,
  type WorkerInfo,
  type ExecutionCacheStats,
  type WorkflowMeta,
  type WorkflowStats,
} from '../interfaces/run.interfaces.js';
import type { WorkflowRegistry } from '../discovery/workflow-registry.js';
import type { CronTrigger } from '../interfaces/workflow.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import { toRunInfo } from './run-info.mapper.js';

export interface RegisteredWorkflow {
  name: string;
  queue: string;
  maxConcurrency?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  backoff?: unknown;
  input?: string;
  cron?: CronTrigger[];
  registeredAt?: string;
  versioning?: 'pinned';
}

interface WorkerBeat {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  workflows: string[];
  partitions?: Record<string, number>;
  concurrency: number;
  activeRuns: number;
  startedAt: string;
  ttlMs: number;
  version?: string;
  executionCache?: ExecutionCacheStats;
}

/** The run hash fields that toRunInfo reads, but the payloads (in, out) and the wait spec: what a list shows. */
const SUMMARY_FIELDS = ['st', 'wf', 'q', 'att', 'pri', 'ca', 'max', 'err', 'fin', 'due', 'sa', 'fa', 'par', 'ik', 'wk', 'v', 'pg', 'fk', 'fs', 'dk'] as const;

/** A listing filtered by version reads at most this many pages of runs per call (see ListRunsParams.version). */
const VERSION_FILTER_PAGES = 20;

const emptyCounts = (): StatusCounts => Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as StatusCounts;

/**
 * Listings and statistics, read from the indexes that every transition keeps (never SCAN): per shard,
 * a zset of a workflow's runs and one per status, all ordered by run id (a ULID, so by creation time).
 */
export class RunInspector {
  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
  ) {}

  async listRuns(params: ListRunsParams = {}): Promise<RunPage> {
    const limit = params.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new WorkflowError('listRuns: limit must be a whole number from 1 to 1000.');
    if (params.status !== undefined && !RUN_STATUSES.includes(params.status)) {
      throw new WorkflowError(`listRuns: unknown status '${String(params.status)}'; use one of ${RUN_STATUSES.join(', ')}.`);
    }
    if (params.cursor !== undefined && !this.redis.keys.parseRunId(params.cursor)) throw new WorkflowError('listRuns: the cursor is not one this method returned.');
    if (params.version !== undefined && (typeof params.version !== 'string' || params.version === '')) {
      throw new WorkflowError('listRuns: version must be a non-empty string (a RunInfo.version).');
    }
    await this.redis.ready();
    if (params.version !== undefined && params.parentId === undefined) return this.listVersion(params, limit);
    if (params.parentId !== undefined) return this.listChildren(params, limit);

    const workflows = params.workflow !== undefined ? [params.workflow] : (await this.workflows()).map((w) => w.name);
    const shardsOf = await this.shardsByWorkflow();
    const candidates: { shard: ShardRef; id: string }[] = [];
    let full = false;
    await Promise.all(
      workflows.flatMap((workflow) =>
        (shardsOf.get(workflow) ?? []).map(async (shard) => {
          const ids = await this.redis.store.readRunIds(shard, workflow, params.status, params.cursor, limit + 1);
          if (ids.length > limit) full = true;
          for (const id of ids) candidates.push({ shard, id });
        }),
      ),
    );
    candidates.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const page = candidates.slice(0, limit);
    const hashes = await this.redis.store.readRuns(page, params.summary ? SUMMARY_FIELDS : undefined);
    const runs = page.flatMap((c, i) => (hashes[i] ? [toRunInfo(c.id, hashes[i]!)] : []));
    const more = full || candidates.length > limit;
    return more && page.length > 0 ? { runs, cursor: page[page.length - 1].id } : { runs };
  }

  /**
   * Runs of one version: pages of the unfiltered listing, filtered, until `limit` match or
   * VERSION_FILTER_PAGES pages were read (then a short page with a cursor to go on).
   */
  private async listVersion(params: ListRunsParams, limit: number): Promise<RunPage> {
    const matching: RunInfo[] = [];
    let cursor = params.cursor;
    for (let page = 0; page < VERSION_FILTER_PAGES; page++) {
      const read = await this.listRuns({ ...params, version: undefined, limit: Math.max(limit, 100), cursor });
      for (const run of read.runs) {
        if (run.version !== params.version) continue;
        matching.push(run);
        if (matching.length === limit) return { runs: matching, cursor: run.id };
      }
      if (!read.cursor) return { runs: matching };
      cursor = read.cursor;
    }
    return { runs: matching, cursor };
  }

  /** A parent's children, newest first, read a page at a time (a parent may have 10,000). */
  private async listChildren(params: ListRunsParams, limit: number): Promise<RunPage> {
    const shard = this.redis.keys.parseRunId(params.parentId);
    if (!shard) return { runs: [] };
    const refs = (await this.redis.store.readChildren(shard, params.parentId!))
      .filter((id) => params.cursor === undefined || id < params.cursor)
      .sort()
      .reverse()
      .flatMap((id) => {
        const s = this.redis.keys.parseRunId(id);
        return s ? [{ shard: s, id }] : [];
      });
    const filtered = params.status !== undefined || params.workflow !== undefined || params.version !== undefined;
    // Without a filter the page and one more (to know whether there are more) is all there is to read.
    const chunk = filtered ? Math.max(limit + 1, 100) : limit + 1;
    const matching: RunInfo[] = [];
    for (let at = 0; at < refs.length && matching.length <= limit; at += chunk) {
      const slice = refs.slice(at, at + chunk);
      const hashes = await this.redis.store.readRuns(slice, params.summary ? SUMMARY_FIELDS : undefined);
      slice.forEach((ref, i) => {
        const hash = hashes[i];
        if (!hash) return;
        const info = toRunInfo(ref.id, hash);
        if (params.status !== undefined && info.status !== params.status) return;
        if (params.workflow !== undefined && info.workflow !== params.workflow) return;
        if (params.version !== undefined && info.version !== params.version) return;
        matching.push(info);
      });
    }
    const runs = matching.slice(0, limit);
    return matching.length > limit ? { runs, cursor: runs[runs.length - 1].id } : { runs };
  }

  async listWorkflows(): Promise<WorkflowMeta[]> {
    await this.redis.ready();
    const [workflows, workers, paused] = await Promise.all([this.workflows(), this.workers(), this.redis.store.readPaused()]);
    return Promise.all(workflows.map((w) => this.meta(w, workers, paused)));
  }

  async getWorkflowMeta(name: string): Promise<WorkflowMeta | null> {
    await this.redis.ready();
    const workflow = (await this.workflows()).find((w) => w.name === name);
    return workflow ? this.meta(workflow, await this.workers(), await this.redis.store.readPaused()) : null;
  }

  async getStats(): Promise<WorkflowStats> {
    await this.redis.ready();
    const [workflows, workers, shardsOf, paused] = await Promise.all([this.workflows(), this.workers(), this.shardsByWorkflow(), this.redis.store.readPaused()]);
    const now = Date.now();
    const queues = new Map<string, WorkflowStats['queues'][number]>();
    const expiries = await this.leaseExpiriesByShard(shardsOf);
    const perWorkflow = await Promise.all(
      workflows.map(async (w) => {
        const shards = shardsOf.get(w.name) ?? [];
        const { counts, depth, oldest, heldBack } = await this.countsOf(w.name, shards);
        const servingWorkers = workers.filter((worker) => worker.workflows.includes(w.name));
        const versions = await this.versionsOf(w.name, shards, servingWorkers);
        const leaseExpiries = shards.reduce((sum, shard) => sum + Number(expiries.get(this.redis.keys.shardRoot(shard))?.[w.name] ?? 0), 0);
        return {
          name: w.name,
          queue: w.queue,
          counts,
          queueDepth: depth,
          ...(oldest !== undefined ? { oldestQueuedAgeMs: Math.max(0, now - oldest) } : {}),
          workers: servingWorkers.length,
          leaseExpiries,
          ...(w.versioning === 'pinned' ? { versioning: 'pinned' as const } : {}),
          ...(versions.length > 0 ? { versions } : {}),
          ...(paused[w.name] !== undefined ? { paused: true } : {}),
          ...(heldBack ? { heldBack } : {}),
        };
      }),
    );
    for (const w of perWorkflow) {
      const q = queues.get(w.queue) ?? { name: w.queue, counts: emptyCounts(), queueDepth: 0 };
      for (const status of RUN_STATUSES) q.counts[status] += w.counts[status];
      q.queueDepth += w.queueDepth;
      for (const [reason, count] of Object.entries(w.heldBack ?? {})) {
        q.heldBack ??= {};
        q.heldBack[reason] = (q.heldBack[reason] ?? 0) + count;
      }
      if (w.oldestQueuedAgeMs !== undefined) q.oldestQueuedAgeMs = Math.max(q.oldestQueuedAgeMs ?? 0, w.oldestQueuedAgeMs);
      queues.set(w.queue, q);
    }
    const byVersion = new Map<string, number>();
    for (const worker of workers) if (worker.version) byVersion.set(worker.version, (byVersion.get(worker.version) ?? 0) + 1);
    const versions = [...byVersion].sort(([a], [b]) => a.localeCompare(b)).map(([version, count]) => ({ version, workers: count }));
    return { workflows: perWorkflow, queues: [...queues.values()], workers: { alive: workers.length, list: workers, versions } };
  }

  /** A workflow's runs that have not finished, per version, and the pinned ones no live worker serves. */
  private async versionsOf(workflow: string, shards: ShardRef[], serving: WorkerInfo[]): Promise<VersionStats[]> {
    const perShard = await Promise.all(shards.map((shard) => this.redis.store.readVersionCounts(shard, workflow)));
    const byVersion = new Map<string, VersionStats>();
    for (const entry of perShard.flat()) {
      let stats = byVersion.get(entry.version);
      if (!stats) {
        const workers = serving.filter((worker) => worker.version === entry.version).length;
        byVersion.set(entry.version, (stats = { version: entry.version, pinned: 0, unpinned: 0, pinnedReady: 0, workers, heldBack: 0 }));
      }
      if (entry.pinned) {
        stats.pinned += entry.active;
        stats.pinnedReady += entry.ready;
      } else stats.unpinned += entry.active;
    }
    for (const stats of byVersion.values()) if (stats.workers === 0) stats.heldBack = stats.pinned;
    return [...byVersion.values()].sort((a, b) => a.version.localeCompare(b.version));
  }

  /** Each shard's count of expired leases per workflow (one small hash per shard), by shard root. */
  private async leaseExpiriesByShard(shardsOf: Map<string, ShardRef[]>): Promise<Map<string, Record<string, string>>> {
    const shards = new Map<string, ShardRef>();
    for (const list of shardsOf.values()) for (const shard of list) shards.set(this.redis.keys.shardRoot(shard), shard);
    const read = await Promise.all([...shards.values()].map((shard) => this.redis.store.readLeaseExpiries(shard)));
    return new Map([...shards.keys()].map((root, i) => [root, read[i]]));
  }

  // ---- what exists: registered workflows, live workers, and the shards to look in ----

  async workflows(): Promise<RegisteredWorkflow[]> {
    const stored = await this.redis.store.readRegistry();
    const byName = new Map<string, RegisteredWorkflow>();
    for (const [name, text] of Object.entries(stored)) {
      try {
        byName.set(name, { ...(JSON.parse(text) as RegisteredWorkflow), name });
      } catch {
        // an unreadable entry is skipped: a newer or corrupted writer
      }
    }
    for (const w of this.registry.all()) {
      if (!byName.has(w.name)) {
        byName.set(w.name, { name: w.name, queue: w.options.queue, maxConcurrency: w.options.maxConcurrency, maxAttempts: w.options.maxAttempts, cron: w.options.cron });
      }
    }
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async workers(): Promise<WorkerInfo[]> {
    const stored = await this.redis.store.readWorkers();
    const workers: WorkerInfo[] = [];
    for (const value of Object.values(stored)) {
      const bar = value.indexOf('|');
      try {
        const beat = JSON.parse(value.slice(bar + 1)) as WorkerBeat;
        const expires = Number(value.slice(0, bar));
        workers.push({
          id: beat.id,
          host: beat.host,
          pid: beat.pid,
          queues: beat.queues,
          workflows: beat.workflows,
          concurrency: beat.concurrency,
          activeRuns: beat.activeRuns,
          startedAt: beat.startedAt,
          lastHeartbeatAt: new Date(expires - beat.ttlMs).toISOString(),
          ...(beat.version ? { version: beat.version } : {}),
          ...(beat.executionCache ? { executionCache: beat.executionCache } : {}),
        });
      } catch {
        // skipped, as above
      }
    }
    return workers.sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * The shards a workflow's runs may be in: every partition of its own queue and of the queues that
   * workers serve (emit's `queue` option can send runs there). Partition counts come from this app's
   * `queues` option and from what workers report.
   */
  async shardsByWorkflow(): Promise<Map<string, ShardRef[]>> {
    const [workflows, stored] = await Promise.all([this.workflows(), this.redis.store.readWorkers()]);
    const partitions = new Map<string, number>();
    const note = (queue: string, count: number) => partitions.set(queue, Math.max(partitions.get(queue) ?? 1, count));
    for (const w of workflows) note(w.queue, this.redis.settings.partitions(w.queue));
    for (const value of Object.values(stored)) {
      try {
        const beat = JSON.parse(value.slice(value.indexOf('|') + 1)) as WorkerBeat;
        for (const queue of beat.queues) note(queue, Math.max(beat.partitions?.[queue] ?? 1, this.redis.settings.partitions(queue)));
      } catch {
        // skipped
      }
    }
    const shards = [...partitions].flatMap(([queue, count]) => Array.from({ length: count }, (_, partition) => ({ queue, partition })));
    const result = new Map<string, ShardRef[]>();
    for (const w of workflows) result.set(w.name, w.maxConcurrency ? [{ queue: w.queue, partition: 0 }] : shards);
    return result;
  }

  private async countsOf(workflow: string, shards: ShardRef[]): Promise<{ counts: StatusCounts; depth: number; oldest?: number; heldBack?: Record<string, number> }> {
    const counts = emptyCounts();
    let depth = 0;
    let heldBack: Record<string, number> | undefined;
    let oldest: number | undefined;
    const perShard = await Promise.all(shards.map((shard) => this.redis.store.readCounts(shard, workflow, RUN_STATUSES)));
    for (const shard of perShard) {
      RUN_STATUSES.forEach((status, i) => (counts[status] += shard.counts[i]));
      depth += shard.ready;
      for (const [reason, count] of Object.entries(shard.heldBack)) {
        heldBack ??= {};
        heldBack[reason] = (heldBack[reason] ?? 0) + count;
      }
      if (shard.oldestQueued) {
        const created = decodeTime(shard.oldestQueued.slice(0, 26));
        oldest = oldest === undefined ? created : Math.min(oldest, created);
      }
    }
    return { counts, depth, oldest, heldBack };
  }

  /** `paused`: workflow -> ms when paused (readPaused). */
  private async meta(w: RegisteredWorkflow, workers: WorkerInfo[], paused: Record<string, string>): Promise<WorkflowMeta> {
    const shards = (await this.shardsByWorkflow()).get(w.name) ?? [];
    const { counts } = await this.countsOf(w.name, shards);
    return {
      name: w.name,
      queue: w.queue,
      options: {
        maxAttempts: w.maxAttempts ?? 3,
        ...(w.maxConcurrency ? { maxConcurrency: w.maxConcurrency } : {}),
        ...(w.timeoutMs ? { timeoutMs: w.timeoutMs } : {}),
        ...(w.backoff ? { backoff: w.backoff } : {}),
        ...(w.input ? { input: w.input } : {}),
        ...(w.versioning === 'pinned' ? { versioning: 'pinned' } : {}),
      },
      cron: (w.cron ?? []).map((c) => ({ id: c.id, expression: c.expression, timezone: c.timezone })),
      workers: workers.filter((worker) => worker.workflows.includes(w.name)),
      counts,
      ...(w.registeredAt ? { registeredAt: w.registeredAt } : {}),
      ...(paused[w.name] !== undefined ? { pausedAt: new Date(Number(paused[w.name])).toISOString() } : {}),
    };
  }
}
