import { Logger } from '@nestjs/common';
import { errorMessage } from '../errors/error-codec.js';
import type { RunExecution } from '../execution/run-execution.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import type { WorkflowSettings } from '../workflow-settings.js';
import { ExecutingRuns } from './executing-runs.js';
import { ExecutionCache } from './execution-cache.js';

export type WorkerSettings = Exclude<WorkflowSettings['worker'], false>;

export interface ShardState {
  /** Undefined for the event shard, which has housekeeping but no runs to claim. */
  ref?: ShardRef;
  root: string;
  claiming: boolean;
  claimAgain: boolean;
  /** A claim is scheduled for the end of this turn of the event loop: triggers within one turn share it. */
  claimScheduled: boolean;
  /** The last claim came back full: there may be more ready runs. */
  backlog: boolean;
  /** Redis woke runs this worker keeps warm ('s' message): the next claim takes its sticky queue first. */
  stickyPending?: boolean;
  tickTimer?: NodeJS.Timeout;
  tickAt?: number;
  ticking: boolean;
  channel: string;
  onMessage: (message: string) => void;
}

export interface Executing {
  execution: RunExecution;
  shard: ShardState;
  done: Promise<void>;
}

/**
 * What a worker's parts (claims, housekeeping, the lease heartbeat) share: whether it runs, its shards,
 * the runs it executes, the server clock's offset, and how an outage is reported (logged once, retried
 * with backoff).
 */
export class WorkerState {
  readonly logger = new Logger('WorkflowWorker');
  readonly shards: ShardState[] = [];
  readonly executing = new ExecutingRuns<Executing>();
  /** Parked executions kept warm (the executionCache option), or undefined when it is off. */
  readonly cache?: ExecutionCache;
  running = false;
  serverOffsetMs = 0;
  private outage = false;

  constructor(
    readonly workerId: string,
    readonly redis: WorkflowRedis,
  ) {
    const cache = redis.settings.executionCache;
    if (cache && redis.settings.worker) this.cache = new ExecutionCache(cache.maxRuns, cache.maxBytes);
  }

  get concurrency(): number {
    return this.redis.settings.worker ? this.redis.settings.worker.concurrency : 0;
  }

  /** The worker settings; only read while the worker runs, which it does only when they are set. */
  get settings(): WorkerSettings {
    return this.redis.settings.worker as WorkerSettings;
  }

  retryDelay(): number {
    const worker = this.redis.settings.worker;
    return Math.min(5_000, Math.max(worker ? worker.reaperIntervalMs : 100, 250));
  }

  failed(what: string, error: unknown): void {
    if (this.outage) return;
    this.outage = true;
    this.logger.error(`Redis call failed during ${what} (${errorMessage(error)}); retrying until it is back`);
  }

  recovered(): void {
    if (!this.outage) return;
    this.outage = false;
    this.logger.log('Redis is reachable again; worker resumed');
  }
}
