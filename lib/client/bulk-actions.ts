import { encodeTime } from 'ulid';
import { encodeErrorJson } from '../errors/error-codec.js';
import { CanceledError, InvalidArgumentError, UnknownWorkflowError } from '../errors/workflow.errors.js';
import type { CancelRunsFilter, RetryRunsFilter, RunStatus } from '../interfaces/run.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import { BULK_CANCEL_PAGE, BULK_RETRY_PAGE } from '../redis/operation-calls.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import type { RunActions } from './run-actions.js';
import type { RunInspector } from './run-inspector.js';

/** The statuses cancelRuns takes without a `status`: those a cancel applies to ('compensating' is finishing already). */
const CANCELABLE: readonly RunStatus[] = ['scheduled', 'queued', 'running', 'waiting'];

interface Window {
  min: string;
  max: string;
}

/**
 * retryRuns and cancelRuns: a workflow's runs in a status and a creation-time window, moved a page at a
 * time. Each page is read from the shard's status index and sent to one call that moves those of its runs
 * still in that status (lua/ops-bulk.lua), so no call's work grows with the number of runs, and a bulk
 * action repeated after a crash midway moves only what the first one did not: a moved run has left the
 * status it was picked from.
 */
export class BulkActions {
  constructor(
    private readonly redis: WorkflowRedis,
    private readonly inspector: RunInspector,
    private readonly actions: RunActions,
  ) {}

  async retryRuns(filter: RetryRunsFilter): Promise<number> {
    const name = 'retryRuns';
    checkFilterShape(filter, name);
    if (filter.status !== 'failed' && filter.status !== 'canceled') {
      throw new InvalidArgumentError(`${name}: status must be 'failed' or 'canceled' (got ${describe(filter.status)}); only those runs can be retried.`);
    }
    const status = filter.status;
    const { shards, window, limit } = await this.prepare(filter, name);
    let moved = 0;
    for (const shard of shards) {
      moved += await this.pages(shard, filter.workflow, status, window, limit - moved, BULK_RETRY_PAGE, (ids) =>
        this.redis.store.retryMany(shard, filter.workflow, status, ids),
      );
      if (moved >= limit) break;
    }
    return moved;
  }

  async cancelRuns(filter: CancelRunsFilter): Promise<number> {
    const name = 'cancelRuns';
    checkFilterShape(filter, name);
    if (filter.status !== undefined && !CANCELABLE.includes(filter.status)) {
      throw new InvalidArgumentError(
        `${name}: status must be one of ${CANCELABLE.join(', ')}, or left out for all of them (got ${describe(filter.status)}); finished and compensating runs cannot be canceled.`,
      );
    }
    const statuses = filter.status ? [filter.status] : CANCELABLE;
    const { shards, window, limit } = await this.prepare(filter, name);
    const error = encodeErrorJson(new CanceledError(`The run was canceled: ${filter.reason === undefined ? 'canceled in bulk (cancelRuns)' : String(filter.reason).slice(0, 1000)}`));
    const retention = this.redis.settings.retentionMs.canceled;
    const hook = await this.actions.workflowHasOnFailure(filter.workflow);
    let moved = 0;
    for (const status of statuses) {
      for (const shard of shards) {
        moved += await this.pages(shard, filter.workflow, status, window, limit - moved, BULK_CANCEL_PAGE, async (ids) => {
          const canceled = await this.redis.store.cancelMany(shard, filter.workflow, status, error, retention, hook, ids);
          // as cancelRun: the parent is told, the children are canceled (a page at a time)
          await Promise.all(
            canceled.map(async (run) => {
              if (run.handoff) await this.redis.store.deliver(run.handoff);
              await this.actions.cancelChildren(run.runId, run);
            }),
          );
          return canceled.length;
        });
        if (moved >= limit) return moved;
      }
    }
    return moved;
  }

  /** Moves the shard's runs in the index a page at a time, oldest first, until the window is done or `room` runs moved. */
  private async pages(shard: ShardRef, workflow: string, status: string, window: Window, room: number, page: number, move: (ids: string[]) => Promise<number>): Promise<number> {
    let moved = 0;
    let after: string | undefined;
    while (moved < room) {
      const ids = await this.redis.store.readIdsInWindow(shard, workflow, status, window, after, Math.min(page, room - moved));
      if (ids.length === 0) break;
      moved += await move(ids);
      // Runs moved left the index; those not moved (changed meanwhile) are passed over, never read again.
      after = ids[ids.length - 1];
    }
    return moved;
  }

  private async prepare(filter: RetryRunsFilter | CancelRunsFilter, name: string): Promise<{ shards: ShardRef[]; window: Window; limit: number }> {
    await this.redis.ready();
    const shards = (await this.inspector.shardsByWorkflow()).get(filter.workflow);
    if (!shards) {
      throw new UnknownWorkflowError(
        `${name}: no workflow '${filter.workflow}' is registered under prefix '${this.redis.keys.prefix}'. List them with listWorkflows() (CLI: workflows list).`,
      );
    }
    return { shards, window: idWindow(filter.since, filter.until), limit: filter.limit ?? Number.MAX_SAFE_INTEGER };
  }
}

function checkFilterShape(filter: RetryRunsFilter | CancelRunsFilter, name: string): void {
  if (typeof filter !== 'object' || filter === null) throw new InvalidArgumentError(`${name} needs a filter: { workflow, status, since?, until?, limit? }.`);
  if (typeof filter.workflow !== 'string' || filter.workflow === '') {
    throw new InvalidArgumentError(`${name}: workflow must be a workflow's name (got ${describe(filter.workflow)}).`);
  }
  for (const bound of ['since', 'until'] as const) {
    const value = filter[bound];
    if (value !== undefined && (!(value instanceof Date) || Number.isNaN(value.getTime()) || value.getTime() < 0)) {
      throw new InvalidArgumentError(`${name}: ${bound} must be a valid Date (got ${describe(value)}).`);
    }
  }
  if (filter.since && filter.until && filter.since.getTime() > filter.until.getTime()) {
    throw new InvalidArgumentError(`${name}: since (${filter.since.toISOString()}) is after until (${filter.until.toISOString()}); no run can match.`);
  }
  if (filter.limit !== undefined && (!Number.isSafeInteger(filter.limit) || filter.limit < 1)) {
    throw new InvalidArgumentError(`${name}: limit must be a whole number of at least 1 (got ${describe(filter.limit)}); leave it out for no limit.`);
  }
}

/**
 * The window as bounds on run ids: a run id starts with its creation time (ULID, 10 characters), and an
 * index orders its ids lexicographically. `since` is inclusive, `until` exclusive; the upper bound stops
 * before the index's sentinel ('~', lua/includes/01-common.lua).
 */
function idWindow(since?: Date, until?: Date): Window {
  return {
    min: since ? `[${encodeTime(since.getTime(), 10)}` : '-',
    max: until ? `(${encodeTime(until.getTime(), 10)}` : '(~',
  };
}

function describe(value: unknown): string {
  if (value instanceof Date) return 'an invalid Date';
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
