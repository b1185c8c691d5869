import type { WorkflowClient } from '../client/workflow.client.js';
import type { Handoff } from '../redis/workflow-store.js';
import type { ClaimLoop } from './claim-loop.js';
import type { ShardState, WorkerState } from './worker-state.js';

/** Longest a worker waits between housekeeping ticks of a shard when nothing is due: a safety net for
 *  a pub/sub message lost in a reconnect, and how soon a lease or deadline created by another worker
 *  after this one's last tick is seen (shortened for sub-second leases and timeouts, see idleTickMs). */
export const IDLE_TICK_MS = 1_000;
/** Entries per housekeeping part per call: under 1 ms of Redis time for 50 due timers on an idle machine (measured in
 *  test/e2e/time-scale.e2e.spec.ts), so a large backlog never blocks Redis for long. */
const TICK_BATCH = 50;

/**
 * A shard's housekeeping (due timers, expired leases, run deadlines, retention, hand-offs owed by a crashed
 * worker, cancel cascades left unfinished): one tick per shard at a time, when Redis says the next entry
 * is due, at most idleTickMs apart.
 */
export class ShardHousekeeping {
  /** Longest wait between ticks of a shard (set at start from the leases and run timeouts). */
  idleTickMs = IDLE_TICK_MS;
  /** When a housekeeping tick last completed (local clock): how health checks tell the loop is alive. */
  lastTickAt = 0;

  constructor(
    private readonly state: WorkerState,
    private readonly claims: ClaimLoop,
    private readonly client: WorkflowClient,
  ) {}

  scheduleTick(shard: ShardState, inMs: number): void {
    if (!this.state.running) return;
    const reaperIntervalMs = this.state.settings.reaperIntervalMs;
    const wait = Math.max(0, Math.min(inMs, this.idleTickMs));
    const at = Date.now() + wait;
    if (shard.tickTimer && shard.tickAt !== undefined && shard.tickAt <= at) return;
    clearTimeout(shard.tickTimer);
    shard.tickAt = at;
    shard.tickTimer = setTimeout(() => void this.tick(shard, reaperIntervalMs), wait);
  }

  stop(): void {
    for (const shard of this.state.shards) clearTimeout(shard.tickTimer);
  }

  private async tick(shard: ShardState, reaperIntervalMs: number): Promise<void> {
    const state = this.state;
    shard.tickTimer = undefined;
    shard.tickAt = undefined;
    if (!state.running) return;
    if (shard.ticking) return this.scheduleTick(shard, reaperIntervalMs);
    shard.ticking = true;
    try {
      const result = await state.redis.workerStore.tick(shard.root, TICK_BATCH);
      this.lastTickAt = Date.now();
      state.recovered();
      state.serverOffsetMs = result.serverNow - Date.now();
      if (result.handoffs.length > 0) void this.deliver(result.handoffs);
      if (result.cascade) void this.continueCascade(result.cascade.runId, result.cascade.cursor);
      // A safety net for a 'ready' message lost in a reconnect or a failover: a free slot looks for work.
      if (state.executing.size < state.concurrency) void this.claims.claim(shard);
      // A backlog is worked off call after call: each call is bounded (TICK_BATCH per part), so other
      // clients' commands run between them, and 100k due runs are promoted in seconds, not minutes.
      if (result.more) this.scheduleTick(shard, 0);
      else this.scheduleTick(shard, result.nextDueMs ?? this.idleTickMs);
    } catch (error) {
      state.failed('housekeeping', error);
      this.scheduleTick(shard, state.retryDelay());
    } finally {
      shard.ticking = false;
    }
  }

  /** Hand-offs whose first delivery did not happen (the worker that owed it crashed). */
  private async deliver(handoffs: Handoff[]): Promise<void> {
    for (const handoff of handoffs) {
      try {
        await this.state.redis.workerStore.deliver(handoff);
      } catch (error) {
        this.state.failed('hand-off delivery', error);
      }
    }
  }

  /** A cancel cascade whose canceling process stopped: its children from the page at `cursor` on. */
  private async continueCascade(runId: string, cursor: string): Promise<void> {
    const redis = this.state.redis;
    try {
      const shard = redis.keys.parseRunId(runId);
      if (shard) await this.client.cancelChildren(runId, await redis.workerStore.cancelMore(shard, runId, cursor));
    } catch (error) {
      this.state.failed('cancel cascade', error);
    }
  }
}
