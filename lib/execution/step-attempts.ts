import { describeError, encodeErrorJson } from '../errors/error-codec.js';
import { TimeoutError } from '../errors/workflow.errors.js';
import type { StepObservation } from '../observability/workflow-observer.js';
import { abortableDelay, backoffDelay, raceAbort } from './backoff.js';
import type { PendingCommit } from './commit-batcher.js';
import { executionScope, type StepRequest } from './execution-scope.js';
import { storedResult } from './journal.js';
import { fromPayload, toPayload } from './payload.js';
import { isPromise, isPromiseLike, settle } from './promises.js';
import { mayRetryStep } from './retry-policy.js';
import type { ExecutionState } from './execution-state.js';
import { encodeStepRecord, parseStepField, type StepRecord, type StoredStep } from './step-record.js';
import { EndOfRecords } from './suspension.js';
import { StepCallContext } from './user-contexts.js';
import { injectFaults, injectFaultsAfter } from './worker-faults.js';

/**
 * The durable steps of one execution (ctx.step.run and @Step methods called from the handler; a @Step
 * called inside a step is part of it, see nested-step.ts): a replayed step returns its stored result;
 * another runs its attempts, with retries (shouldRetry, backoff) and a timeout, and its success is
 * recorded through the CommitBatcher.
 *
 * Promise chains, not async/await, on the common path (a replayed step, a first attempt that succeeds,
 * no timeout, no tracing): with AsyncLocalStorage active every promise in the process runs its hooks, up
 * to a quarter of the worker's CPU per three-step run (bench/NOTES.md, sixth round). A failure, a retry
 * and everything else go through the async executeAttempts.
 */
export class StepAttempts {
  constructor(private readonly run: ExecutionState) {}

  runStep<T>(request: StepRequest<T>): Promise<T> {
    const run = this.run;
    try {
      run.assertExecuting();
      const field = run.journal.nextField(request.name);
      const stored = run.journal.steps.get(field);
      if (stored) run.journal.assertSameStep(stored, request.kind, request.fingerprint ?? '');
      if (stored?.state === 'S' || (stored?.state === 'C' && run.mode === 'collect')) {
        const value = storedResult<T>(stored);
        if (stored.state === 'S' && request.compensate) run.saga.add(field, request, value, stored);
        return Promise.resolve(value);
      }
      if (run.mode === 'collect') throw new EndOfRecords();
      run.parking.inFlight += 1;
      // The steps before this one are committed before it starts: it may act on their results.
      if (run.commits.outstanding) {
        return run.commits.flush().then(
          () => this.executeAndEnd(field, request, stored),
          (error: unknown) => {
            run.parking.inFlightEnded();
            throw error;
          },
        );
      }
      const outcome = this.executeAndEnd(field, request, stored);
      return isPromise(outcome) ? outcome : Promise.resolve(outcome);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Executes a step (counted in flight by the caller) and counts it as ended when it settles. */
  private executeAndEnd<T>(field: string, request: StepRequest<T>, stored: StoredStep | undefined): T | Promise<T> {
    let outcome: T | Promise<T>;
    try {
      outcome = this.executeStep(field, request, stored);
    } catch (error) {
      this.run.parking.inFlightEnded();
      throw error;
    }
    return this.run.parking.endWhenSettled(outcome);
  }

  /**
   * Executes a step that has no committed result. The common case (a first attempt, no timeout, no
   * tracing) goes without async/await; a failure, a retry and everything else go through executeAttempts.
   * A synchronous result is returned as it is (the caller wraps it).
   */
  private executeStep<T>(field: string, request: StepRequest<T>, previous: StoredStep | undefined): T | Promise<T> {
    const run = this.run;
    if (previous || request.timeoutMs !== undefined || run.observation || run.settings.faults || run.journal.generationFloor) return this.executeAttempts(field, request, previous);
    const startedAt = run.nextStartTime();
    const step = new StepCallContext(`${run.id}:${field}`, 1, run, run.fencingToken);
    let outcome: T | Promise<T>;
    try {
      outcome = executionScope.run({ execution: run, step }, () => request.fn(step));
    } catch (error) {
      return this.executeAttempts(field, request, previous, { startedAt, error });
    }
    if (!isPromiseLike(outcome)) return this.recordFirstAttempt(field, request, outcome, startedAt);
    return run.untilAborted(Promise.resolve(outcome)).then(
      (value) => this.recordFirstAttempt(field, request, value, startedAt),
      (error: unknown) => this.executeAttempts(field, request, previous, { startedAt, error }),
    );
  }

  private recordFirstAttempt<T>(field: string, request: StepRequest<T>, value: T, startedAt: number): T | Promise<T> {
    try {
      const recorded = this.recordSuccess(field, request, value, { attempts: 1, startedAt, generation: 0 });
      return isPromise(recorded) ? recorded.catch((error: unknown) => this.executeAttempts(field, request, undefined, { startedAt, error })) : recorded;
    } catch (error) {
      return this.executeAttempts(field, request, undefined, { startedAt, error });
    }
  }

  /** The attempts of a step, with retries, timeouts and tracing; `first`: how a first attempt made elsewhere failed. */
  private async executeAttempts<T>(
    field: string,
    request: StepRequest<T>,
    previous: StoredStep | undefined,
    first?: { startedAt: number; error: unknown },
  ): Promise<T> {
    const run = this.run;
    // A compensated step runs again after retryRun under a new generation, so its idempotency key is new;
    // so does every step executed again after a retry from a step (the journal's generation floor).
    const generation = Math.max(run.journal.generationFloor, (previous?.record.g ?? 0) + (previous?.state === 'C' ? 1 : 0));
    const idempotencyKey = `${run.id}:${field}${generation > 0 ? `:${generation}` : ''}`;
    const maxTries = 1 + Math.max(0, request.retries ?? 0);
    const previousAttempts = previous?.state === 'F' ? (previous.record.a ?? 0) : 0;
    const startedAt = first?.startedAt ?? run.nextStartTime();
    const observed = run.observation?.step(request.name, parseStepField(field).occurrence, request.kind);
    const faults = run.settings.faults?.take(run.id, request.name);
    for (let attempt = 1; ; attempt += 1) {
      let error: unknown;
      if (attempt === 1 && first) error = first.error;
      else {
        // A step without a timeout is stopped only with its run, so it shares the run's signal: no
        // controller, listener or timer per step on the hot path.
        let stepController: AbortController | undefined;
        let timer: NodeJS.Timeout | undefined;
        if (request.timeoutMs !== undefined) {
          const controller = (stepController = new AbortController());
          timer = setTimeout(
            () => controller.abort(new TimeoutError(`Step '${request.name}' timed out after ${request.timeoutMs} ms.`)),
            request.timeoutMs,
          );
        }
        const onRunAbort = stepController ? () => stepController!.abort(run.signal.reason) : undefined;
        if (onRunAbort) run.signal.addEventListener('abort', onRunAbort, { once: true });
        const stepContext = new StepCallContext(idempotencyKey, previousAttempts + attempt, stepController ?? run, run.fencingToken);
        try {
          const call = () => executionScope.run({ execution: run, step: stepContext }, () => settle(() => request.fn(stepContext)));
          if (faults?.length && attempt === 1) await injectFaults(run, faults, request.name, call);
          const work = observed ? observed.within(call) : call();
          const value = await (stepController ? raceAbort(work, stepController.signal) : run.untilAborted(work));
          if (faults?.length && attempt === 1) await injectFaultsAfter(run, faults, request.name, call);
          return await this.recordSuccess(field, request, value, { attempts: previousAttempts + attempt, startedAt, generation, observed });
        } catch (thrown) {
          error = thrown;
        } finally {
          if (timer) clearTimeout(timer);
          if (onRunAbort) run.signal.removeEventListener('abort', onRunAbort);
        }
      }
      if (run.state !== 'executing') throw run.stopReason();
      if (!mayRetryStep(request, error, previousAttempts + attempt, attempt < maxTries)) {
        const record = encodeStepRecord({
          k: request.kind,
          f: request.fingerprint,
          n: run.journal.position(field),
          a: previousAttempts + attempt,
          st: startedAt,
          ...(generation ? { g: generation } : {}),
          e: JSON.parse(encodeErrorJson(error)),
        });
        await run.commits.commit(field, 'F', record);
        observed?.ended('failed', previousAttempts + attempt, error);
        throw error;
      }
      run.logger.warn(`Step '${request.name}' attempt ${attempt} failed (${describeError(error)}); retrying`);
      await abortableDelay(backoffDelay(request.backoff, attempt), run.signal);
    }
  }

  /**
   * A step's function returned `value`: its record is deferred (see CommitBatcher) and the result returned
   * at once, or, when the lease may be short, committed before the result is returned.
   */
  private recordSuccess<T>(
    field: string,
    request: StepRequest<T>,
    value: T,
    attempt: { attempts: number; startedAt: number; generation: number; observed?: StepObservation },
  ): T | Promise<T> {
    const run = this.run;
    run.assertExecuting();
    const text = toPayload(value, `The result of step '${request.name}'`, run.settings.maxPayloadBytes);
    const fields: StepRecord = { k: request.kind, f: request.fingerprint, n: run.journal.position(field), st: attempt.startedAt };
    if (attempt.attempts !== 1) fields.a = attempt.attempts;
    if (attempt.generation) fields.g = attempt.generation;
    if (request.compensate) fields.c = 1;
    const record = encodeStepRecord(fields, text);
    const result = fromPayload<T>(text);
    // The record kept in memory is the one just encoded (no re-parse); its result is a separate copy
    // only when a compensation may later read it after the handler had the result in hand.
    fields.r = request.compensate ? fromPayload(text) : result;
    const observed = attempt.observed;
    const pending: PendingCommit = {
      field,
      record,
      parsed: fields,
      hasCompensation: !!request.compensate,
      committed: (stored) => {
        observed?.ended('succeeded', attempt.attempts);
        if (request.compensate) run.saga.add(field, request, result, stored);
      },
    };
    if (run.leaseSurelyHeld()) {
      run.commits.defer(pending);
      return result;
    }
    return run.commits.commit(field, 'S', record, { hasCompensation: pending.hasCompensation }, fields).then((stored) => {
      pending.committed(stored);
      return result;
    });
  }
}
