import { TimeoutError } from '../errors/workflow.errors.js';
import type { StepContext, StepOptions } from '../interfaces/workflow.interfaces.js';
import { abortableDelay, backoffDelay, raceAbort } from './backoff.js';
import { executionScope, type ExecutionScope } from './execution-scope.js';
import { mayRetryStep } from './retry-policy.js';

/**
 * A @Step method called inside another step (ctx.step.run, or another @Step method) is part of that
 * outer step: the outer step's record holds the result and nothing is recorded for the inner call. It
 * keeps its own retries, backoff, shouldRetry and timeout for its own attempts, within the outer attempt;
 * currentStep() gives it the outer step's idempotency key, its own attempt number and, with a timeout,
 * its own signal.
 */
export function runNestedStep<T>(name: string, options: StepOptions, scope: ExecutionScope & { step: StepContext }, call: () => T | Promise<T>): T | Promise<T> {
  // the common nested call has no policy of its own: a plain call, as before
  if (!options.retries && options.timeoutMs === undefined) return call();
  return attempts(name, options, scope, call);
}

async function attempts<T>(name: string, options: StepOptions, scope: ExecutionScope & { step: StepContext }, call: () => T | Promise<T>): Promise<T> {
  const outer = scope.step;
  const maxTries = 1 + Math.max(0, options.retries ?? 0);
  for (let attempt = 1; ; attempt += 1) {
    const controller = options.timeoutMs !== undefined ? new AbortController() : undefined;
    const onOuterAbort = () => controller?.abort(outer.signal.reason);
    const timer = controller
      ? setTimeout(() => controller.abort(new TimeoutError(`Step '${name}' timed out after ${options.timeoutMs} ms.`)), options.timeoutMs)
      : undefined;
    if (controller) outer.signal.addEventListener('abort', onOuterAbort, { once: true });
    const step: StepContext = { idempotencyKey: outer.idempotencyKey, attempt, signal: controller?.signal ?? outer.signal, fencingToken: outer.fencingToken };
    try {
      const work = executionScope.run({ ...scope, step }, () => Promise.resolve().then(call));
      return await (controller ? raceAbort(work, controller.signal) : work);
    } catch (error) {
      if (outer.signal.aborted || !mayRetryStep(options, error, attempt, attempt < maxTries)) throw error;
    } finally {
      if (timer) clearTimeout(timer);
      if (controller) outer.signal.removeEventListener('abort', onOuterAbort);
    }
    // runInline skips backoff, as it does for its own steps
    if (!scope.execution.skipsBackoff) await abortableDelay(backoffDelay(options.backoff, attempt), outer.signal);
  }
}
