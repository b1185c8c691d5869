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
  /** The run's flow-control key: what the workflow's concurrency (or rateLimit) key function returned
   *  for its input ('*' for a rateLimit without a key). */
  flowKey?: string;
  /** Why a queued run is held back: its key is at its concurrency limit or out of rate. */
  delayedBy?: DelayReason;
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

export interface RunHandle<O = unknown> {
  id: string;
  getState(): Promise<RunInfo<unknown, O>>;
  result(opts?: { timeoutMs?: number }): Promise<O>;
  cancel(reason?: string): Promise<boolean>;
}

export const RUN_STATUSES: readonly RunStatus[] = ['scheduled', 'queued', 'running', 'waiting', 'compensating', 'succeeded', 'failed', 'canceled'];

export interface ListRunsParams {
  workflow?: string;
  status?: RunStatus;
  parentId?: string;
  /** 1..1000, default 50. */
  limit?: number;
  /** The `cursor` of the previous page. */
  cursor?: string;
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
}

export interface WorkflowMeta {
  name: string;
  queue: string;
  options: { maxAttempts: number; maxConcurrency?: number; timeoutMs?: number; backoff?: unknown; input?: string };
  cron: { id?: string; expression: string; timezone?: string }[];
  /** Workers alive that serve this workflow. */
  workers: WorkerInfo[];
  counts: StatusCounts;
  registeredAt?: string;
}

export interface WorkflowStats {
  /** `workers`: how many live workers serve the workflow (0: its runs wait in 'queued' until one does). */
  /** `heldBack`: queued runs held back by flow control, by reason (absent when none). */
  workflows: { name: string; queue: string; counts: StatusCounts; queueDepth: number; oldestQueuedAgeMs?: number; workers: number; heldBack?: Record<string, number> }[];
  queues: { name: string; counts: StatusCounts; queueDepth: number; oldestQueuedAgeMs?: number; heldBack?: Record<string, number> }[];
  workers: { alive: number; list: WorkerInfo[] };
}
