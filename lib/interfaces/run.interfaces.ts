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
}

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
