import type { ShardRef } from './keys.js';
import { RunTransitions, type Handoff, type TransitionResult } from './run-transitions.js';

/** Runs one bulk call may name (lua/ops-bulk.lua: BULK_RETRY_MAX, BULK_CANCEL_MAX). */
export const BULK_RETRY_PAGE = 32;
export const BULK_CANCEL_PAGE = 16;

/** A run canceled by a bulk call: what wf1_cancel answers for it (its children's first page, its parent's hand-off). */
export interface BulkCanceled {
  runId: string;
  children: string[];
  nextPage?: string;
  handoff?: Handoff;
}

/**
 * The calls behind the operator's actions (lua/ops-*.lua): bulk retry and cancel of runs named by the
 * caller, pausing a workflow per shard, a run's progress. A layer of WorkflowStore (workflow-store.ts).
 */
export abstract class OperationCalls extends RunTransitions {
  /**
   * Ids in a workflow's status index from `after` (exclusive) or the window's start on, oldest first.
   * `window`: lexicographic bounds on run ids (a ULID's first 10 characters are its creation time).
   */
  async readIdsInWindow(shard: ShardRef, workflow: string, status: string, window: { min: string; max: string }, after: string | undefined, limit: number): Promise<string[]> {
    const key = this.keys.statusIndex(this.root(shard), workflow, status);
    // `after` was read from this window, so past it is inside it too
    const min = after !== undefined ? `(${after}` : window.min;
    return this.guard(() => this.client.zrangebylex(key, min, window.max, 'LIMIT', 0, limit));
  }

  /** Retries the named runs still of `workflow` and in `status`; returns how many went back to the queue. */
  async retryMany(shard: ShardRef, workflow: string, status: 'failed' | 'canceled', runIds: string[]): Promise<number> {
    return Number(await this.fcall('wf1_retry_many', [this.root(shard)], [workflow, status, ...runIds]));
  }

  /** Cancels the named runs still of `workflow` and in `status` (as cancel, one by one, in one call). */
  async cancelMany(shard: ShardRef, workflow: string, status: string, error: string, retentionMs: number, hasOnFailure: boolean, runIds: string[]): Promise<BulkCanceled[]> {
    const root = this.root(shard);
    const reply = (await this.fcall('wf1_cancel_many', [root], [workflow, status, error, retentionMs, hasOnFailure ? '1' : '', ...runIds])) as unknown[];
    return (reply.slice(1) as [string, string[], unknown[], string][]).map(([runId, children, handoff, nextPage]) => ({
      runId,
      children,
      nextPage,
      handoff: handoff.length > 0 ? this.handoffFrom(root, handoff) : undefined,
    }));
  }

  /** Pauses or resumes a workflow in one shard; true when the shard's flag changed. */
  async pauseInShard(shard: ShardRef, workflow: string, action: 'pause' | 'resume'): Promise<boolean> {
    return Number(await this.fcall('wf1_pause', [this.root(shard)], [workflow, action])) === 1;
  }

  /** Records (or forgets) a workflow as paused for the whole deployment. */
  async markPaused(workflow: string, action: 'pause' | 'resume'): Promise<boolean> {
    return Number(await this.fcall('wf1_pause_mark', [this.keys.pausedWorkflows()], [workflow, action])) === 1;
  }

  /** Paused workflows: name -> ms when paused. */
  async readPaused(): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.pausedWorkflows()));
  }

  /** The workflows paused in a shard (what its claims skip). */
  async readPausedInShard(shard: ShardRef): Promise<string[]> {
    return this.guard(() => this.client.smembers(this.keys.pausedInShard(this.root(shard))));
  }

  /** Stores a run's latest progress value under its lease. */
  setProgress(shard: ShardRef, runId: string, token: string, value: string): Promise<TransitionResult> {
    return this.transition('wf1_progress', [this.root(shard)], [runId, token, value], (raw) => {
      const [ok, reason] = raw as [number, string?];
      return ok === 1 ? { ok: true } : { ok: false, reason: reason ?? 'UNKNOWN' };
    });
  }
}
