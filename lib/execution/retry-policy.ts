import { InvalidArgumentError, NonRetriableError, PayloadError } from '../errors/workflow.errors.js';

/** What decides whether a failed step attempt is tried again. */
export interface RetryPolicy {
  retries?: number;
  /** Asked after each failed attempt that has tries left; false (or a throw) ends the step with the error. */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
}

/**
 * Whether a step whose attempt number `attempt` (counting from 1, across the step's earlier executions)
 * failed with `error` is tried again; `triesLeft`: whether its retries allow another attempt.
 */
export function mayRetryStep(policy: RetryPolicy, error: unknown, attempt: number, triesLeft: boolean): boolean {
  if (!triesLeft) return false;
  if (error instanceof NonRetriableError || error instanceof PayloadError || error instanceof InvalidArgumentError) return false;
  if (!policy.shouldRetry) return true;
  try {
    return policy.shouldRetry(error, attempt) === true;
  } catch {
    // a predicate that cannot decide does not retry: the step fails with its own error
    return false;
  }
}
