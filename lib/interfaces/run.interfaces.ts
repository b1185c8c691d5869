export type RunStatus =
  | 'scheduled'
  | 'queued'
  | 'running'
  | 'waiting'
  | 'compensating'
  | 'succeeded'
  | 'failed'
  | 'canceled';

export interface RunErrorInfo {
  name: string;
  message: string;
  stack?: string;
  cause?: RunErrorInfo;
  data?: Record<string, unknown>;
}

export interface RunInfo<I = unknown, O = unknown> {
  id: string;
  workflow: string;
  queue: string;
  status: RunStatus;
  input: I;
  output?: O;
  error?: RunErrorInfo;
  attempt: number;
  maxAttempts?: number;
  priority: number;
  createdAt: string;
  scheduledFor?: string;
  startedAt?: string;
  finishedAt?: string;
  parentId?: string;
  idempotencyKey?: string;
  /** What a waiting run waits for. */
  waitingFor?: unknown;
  /** The worker that holds or last held the run. */
  workerId?: string;
  /** The latest value the run gave ctx.setProgress (cleared by retryRun). */
  progress?: unknown;
  /** The run's flow-control key: what the workflow's concurrency (or rateLimit) key function returned
   *  for its input ('*' for a rateLimit without a key). */
  flowKey?: string;
  /** Why a queued run is held back: its key is at its concurrency limit or out of rate, or its workflow is
   *  paused (pauseWorkflow); a debounced run waits 'scheduled' with 'debounce'. */
  delayedBy?: DelayReason;
  /** The `version` of the app that emitted the run (a child: its parent's; a cron tick: the instance's).
   *  Absent when that app set none. */
  version?: string;
  /** The run is pinned to its version (its workflow has versioning 'pinned'): only workers of that
   *  version claim it. */
  pinned?: true;
  /** This execution ended with ctx.continueAsNew: the run that took over (a `succeeded` run without output). */
  continuedAs?: string;
  /** The run whose ctx.continueAsNew started this one. */
  continuedFrom?: string;
  /** The run this one was forked from (client.forkRun). */
  forkedFrom?: string;
}

/** Why a queued run is held back (RunInfo.delayedBy; the reasons of WorkflowStats' heldBack). */
export type DelayReason = 'concurrency' | 'rateLimit' | 'debounce' | 'paused';

export type StepStatus = 'succeeded' | 'failed' | 'waiting' | 'compensated';

export interface StepInfo {
  name: string;
  occurrence: number;
  kind: string;
  status: StepStatus;
  attempts: number;
  result?: unknown;
  error?: RunErrorInfo;
  startedAt?: string;
  finishedAt?: string;
  /** For a child workflow step: the child's run id. */
  childRunId?: string;
  /** For an event wait: the event and key it waits for or received. */
  event?: { name: string; key?: string };
  /** For a graph step (ctx.step.graph): the graph's id (see WorkflowClient.getRunGraphs). */
  graphId?: string;
}

/** A graph of child runs (ctx.step.graph) as getRunGraphs shows it. */
export interface GraphInfo {
  /** The step that runs it, and its status ('waiting' while the graph runs). */
  step: string;
  status: StepStatus;
  /** How many nodes the graph has; `nodes` holds the first GRAPH_NODES_SHOWN (500) of them. */
  size: number;
  nodes: GraphNodeInfo[];
}

export interface GraphNodeInfo {
  name: string;
  /** 'pending': waits for the nodes it comes after; 'skipped': will never run (a node before it failed). */
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'canceled' | 'skipped';
  after: string[];
  /** Its place in the graph: 0 for a node after nothing, else one more than the highest of the nodes it comes after. */
  level: number;
  runId?: string;
}

export interface RunEvent {
  type: string;
  /** ISO time from the Redis server's clock. */
  at: string;
  step?: string;
  attempt?: number;
  workerId?: string;
  error?: RunErrorInfo;
  data?: Record<string, unknown>;
}

export interface EmitOptions {
  idempotencyKey?: string;
  runAt?: Date;
  delayMs?: number;
  queue?: string;
  /** Higher runs first, -500..500, default 0. */
  priority?: number;
}

export interface SendEventOptions {
  /** Only runs waiting for this key (and only waits without a key when absent). */
  key?: string;
  /**
   * Names this send (a webhook's delivery id, say): a send with an id already sent for the same event name
   * within eventRetentionMs delivers nothing and returns 0.
   */
  id?: string;
}

export interface RunHandle<O = unknown> {
  id: string;
  getState(): Promise<RunInfo<unknown, O>>;
  result(opts?: { timeoutMs?: number }): Promise<O>;
  cancel(reason?: string): Promise<boolean>;
}

export const RUN_STATUSES: readonly RunStatus[] = ['scheduled', 'queued', 'running', 'waiting', 'compensating', 'succeeded', 'failed', 'canceled'];

/**
 * Which runs retryRuns moves: a workflow's runs in `status`, created in [since, until) (the window is on
 * creation time, which orders the status indexes), oldest first, at most `limit` (default: all).
 */
export interface RetryRunsFilter {
  workflow: string;
  status: 'failed' | 'canceled';
  since?: Date;
  until?: Date;
  limit?: number;
}

/** Which runs cancelRuns cancels: as RetryRunsFilter; without `status`, every run that has not finished
 *  (scheduled, queued, running, waiting). `reason` goes into each run's CanceledError. */
export interface CancelRunsFilter {
  workflow: string;
  status?: 'scheduled' | 'queued' | 'running' | 'waiting';
  since?: Date;
  until?: Date;
  limit?: number;
  reason?: string;
}

export interface ListRunsParams {
  workflow?: string;
  status?: RunStatus;
  parentId?: string;
  /** 1..1000, default 50. */
  limit?: number;
  /** The `cursor` of the previous page. */
  cursor?: string;
  /** Only runs of this version (RunInfo.version). Runs are read a page at a time and filtered, at most
   *  20 pages of max(limit, 100) runs per call; a page may then come back short with a cursor to go on. */
  version?: string;
  /** Leave out each run's input, output and waitingFor: only the fields a list shows are read from Redis,
   *  so a page costs the same whatever the runs carry. Default false. */
  summary?: boolean;
}

export interface RunPage {
  runs: RunInfo[];
  /** Present when there may be more runs: pass it to get the next (older) page. */
  cursor?: string;
}

export type StatusCounts = Record<RunStatus, number>;

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  workflows: string[];
  concurrency: number;
  activeRuns: number;
  startedAt: string;
  lastHeartbeatAt: string;
  /** The worker's WorkflowModuleOptions.version, when set. */
  version?: string;
  /** The worker's warm executions (the executionCache option), as of its last registry beat (every 5 s);
   *  absent when the cache is off or the worker is older. */
  executionCache?: ExecutionCacheStats;
}

/** A worker's cache of warm executions (sticky executions, the executionCache option). */
export interface ExecutionCacheStats {
  /** Executions kept warm now, and an estimate of the memory they take (bytes, from their step records). */
  runs: number;
  bytes: number;
  maxRuns: number;
  maxBytes: number;
  /** Warm claims resumed from the cache; warm claims that found nothing to resume (evicted) and replayed. */
  hits: number;
  misses: number;
  /** Executions dropped to stay within maxRuns and maxBytes. */
  evictions: number;
}

export interface WorkflowMeta {
  name: string;
  queue: string;
  options: { maxAttempts: number; maxConcurrency?: number; timeoutMs?: number; backoff?: unknown; input?: string; versioning?: 'pinned' };
  cron: { id?: string; expression: string; timezone?: string }[];
  /** Workers alive that serve this workflow. */
  workers: WorkerInfo[];
  counts: StatusCounts;
  registeredAt?: string;
  /** Set while the workflow is paused (pauseWorkflow): when it was paused. */
  pausedAt?: string;
}

export interface WorkflowStats {
  /** `workers`: how many live workers serve the workflow (0: its runs wait in 'queued' until one does).
   *  `versions`: its runs that have not finished, per version (absent when none has a version).
   *  `leaseExpiries`: leases of its runs that expired (their worker died or stalled) and housekeeping took
   *  back, since its shards began (a count kept in Redis for the whole fleet).
   *  `heldBack`: queued runs held back by flow control, by reason (absent when none). */
  workflows: {
    name: string;
    queue: string;
    counts: StatusCounts;
    queueDepth: number;
    oldestQueuedAgeMs?: number;
    workers: number;
    leaseExpiries: number;
    versioning?: 'pinned';
    versions?: VersionStats[];
    /** Nothing of the workflow is claimed until resumeWorkflow (its queued runs wait). */
    paused?: boolean;
    heldBack?: Record<string, number>;
  }[];
  queues: { name: string; counts: StatusCounts; queueDepth: number; oldestQueuedAgeMs?: number; heldBack?: Record<string, number> }[];
  /** `versions`: the versions live workers serve, and how many workers each. */
  workers: { alive: number; list: WorkerInfo[]; versions: { version: string; workers: number }[] };
}

/** A workflow's runs of one version that have not finished (scheduled, queued, running, waiting, compensating). */
export interface VersionStats {
  version: string;
  /** Runs pinned to this version (versioning 'pinned'), and runs that are not. */
  pinned: number;
  unpinned: number;
  /** Pinned runs ready to execute, waiting for a worker of this version. */
  pinnedReady: number;
  /** Live workers of this version that serve the workflow. */
  workers: number;
  /** Pinned runs that no live worker serves (no worker of this version has the workflow): they move once
   *  one starts, or when retryRun(id, { onVersion: 'current' }) or forkRun moves them. */
  heldBack: number;
}

/** A cron trigger of a registered workflow, with its run-time state in Redis (listSchedules). */
export interface ScheduleInfo {
  workflow: string;
  /** The trigger's `id`, or '<expression>@<timezone or local>'. */
  id: string;
  expression: string;
  timezone?: string;
  catchUp: 'none' | 'latest';
  /** Paused with pauseSchedule: no instance starts its ticks until resumeSchedule. */
  paused: boolean;
  /** The next tick (ISO), as the instances that run the trigger last computed it. */
  next?: string;
  /** The latest tick that started a run, or the latest triggerSchedule (ISO). */
  last?: string;
  /** Live workers that have the workflow: the trigger fires only while one of them runs (with cron enabled). */
  workers: number;
}

/** Runs of a workflow that started and finished in one minute (by the Redis server's clock). */
export interface ThroughputMinute {
  /** The minute's start (ISO). */
  at: string;
  /** First claims: runs that began executing. */
  started: number;
  succeeded: number;
  failed: number;
  canceled: number;
}

/** Per-minute counts over the last minutes, per workflow (getThroughput), kept in Redis for the whole fleet. */
export interface Throughput {
  /** Start of the oldest minute and end of the current one (ISO). */
  from: string;
  to: string;
  /** One row per registered workflow; `minutes` oldest first, the last one the current (partial) minute. */
  workflows: { name: string; queue: string; minutes: ThroughputMinute[] }[];
}
