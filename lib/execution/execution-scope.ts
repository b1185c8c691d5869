import { AsyncLocalStorage } from 'node:async_hooks';
import type { BackoffOptions, StepContext } from '../interfaces/workflow.interfaces.js';

/** What a durable step asks of the execution it runs in. */
export interface StepRequest<T> {
  name: string;
  /** 'step' for ctx.step.run, 'method' for a @Step() method. */
  kind: 'step' | 'method';
  /** For a @Step() method: the method and a hash of its arguments; compared on replay. */
  fingerprint?: string;
  /** For a @Step() method: the arguments it was called with (runInline hands them to a step override). */
  args?: unknown[];
  fn: (step: StepContext) => Promise<T> | T;
  timeoutMs?: number;
  retries?: number;
  backoff?: BackoffOptions;
  compensate?: (result: T) => unknown;
  shouldRetry?: (error: unknown, attempt: number) => boolean;
}

/** An execution that makes steps durable: the real engine's RunExecution, or the in-process runInline. */
export interface DurableExecution {
  runStep<T>(request: StepRequest<T>): Promise<T>;
  /** runInline: retries follow at once, without their backoff. */
  readonly skipsBackoff?: boolean;
}

export interface ExecutionScope {
  execution: DurableExecution;
  /** Set while a step's function runs: steps called from inside a step are plain calls. */
  step?: StepContext;
}

export const executionScope = new AsyncLocalStorage<ExecutionScope>();

/** The step being executed: its idempotency key, signal and attempt. Undefined outside a run. */
export function currentStep(): StepContext | undefined {
  return executionScope.getStore()?.step;
}
