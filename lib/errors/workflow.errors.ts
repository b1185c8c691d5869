import type { ValidationError } from 'class-validator';

/** Base of every error this package throws or stores. */
export class WorkflowError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The run was canceled (`cancelRun`, `handle.cancel()`, or its parent was canceled). */
export class CanceledError extends WorkflowError {
  constructor(message = 'The run was canceled.', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A run passed its whole-run deadline (`timeoutMs` of `@Workflow`), or a step passed its own. */
export class TimeoutError extends WorkflowError {}

/** A `result()` wait gave up after its own `timeoutMs`; the run itself goes on (`runId` says which, to wait again). */
export class WaitTimeoutError extends WorkflowError {
  constructor(
    message: string,
    public readonly runId?: string,
  ) {
    super(message);
  }
}

/**
 * No retained run has this id: it never existed, is not an id of this package, or expired after its
 * retention. `getRun` answers null for such an id; a handle's `getState()` and `result()`, and
 * `retryRun`, reject with this error.
 */
export class RunNotFoundError extends WorkflowError {
  constructor(public readonly runId: string) {
    super(`Run ${JSON.stringify(runId)} does not exist (or expired after its retention): check the id, or look it up with findRun(workflow, idempotencyKey).`);
  }
}

/** Thrown by user code: the run fails at once, with no further attempts. */
export class NonRetriableError extends WorkflowError {}

/** The input of an emit failed validation against the workflow's input DTO. Nothing was written. */
export class InputValidationError extends WorkflowError {
  constructor(
    message: string,
    public readonly errors: ValidationError[],
  ) {
    super(message);
  }
}

/** No workflow of that name is known to this app nor registered in Redis by a worker. */
export class UnknownWorkflowError extends WorkflowError {}

/** This worker no longer holds the run (its lease expired or was taken over); it must stop executing it. */
export class LeaseLostError extends WorkflowError {}

/**
 * A run's stored state is damaged (by hand or by a foreign writer): a record of it cannot be read, so it
 * cannot be replayed without running committed steps again. The run fails at once, with no further attempts.
 */
export class CorruptedRunError extends NonRetriableError {}

/** A Redis step's guard (tx.expect) did not hold when it committed: none of its commands ran. Retrying
 *  the run runs the step again; catch it to take another path. */
export class RedisStepGuardError extends NonRetriableError {}

/** A replay reached a step whose recorded kind or fingerprint differs from what the code now asks. */
export class NonDeterminismError extends WorkflowError {}

/** A child run failed; `cause` is the child's error. */
export class ChildWorkflowError extends WorkflowError {}

/** A value cannot be stored: not JSON (function, cycle, BigInt, ...) or larger than `maxPayloadBytes`. */
export class PayloadError extends WorkflowError {}

/** A call got an argument it cannot accept (a delay past 100 years, an invalid Date, a step name too
 *  long, ...). Nothing was written. Inside a run it fails the run at once: replaying would repeat it. */
export class InvalidArgumentError extends WorkflowError {}

/** The module was given options it cannot work with, or Redis is not what it needs. */
export class WorkflowConfigurationError extends WorkflowError {}

/** Redis could not be reached or answered with an error for a call that creates or reads state. */
export class WorkflowConnectionError extends WorkflowError {}
