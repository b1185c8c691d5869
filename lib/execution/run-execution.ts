import { progressText } from './progress.js';
import { decodeErrorJson, describeError, encodeErrorJson } from '../errors/error-codec.js';
import {
  CanceledError,
  NonDeterminismError,
  NonRetriableError,
  CorruptedRunError,
  PayloadError,
  InvalidArgumentError,
  WorkflowError,
} from '../errors/workflow.errors.js';
import type { ResolvedWorkflowOptions } from '../discovery/workflow-definition.js';
import type { RunObservation } from '../observability/workflow-observer.js';
import type { ClaimedRun, Handoff, TransitionResult, WorkflowStore } from '../redis/workflow-store.js';
import { backoffDelay } from './backoff.js';
import { checkDuration, checkInstant, checkStepOptions, quoteName } from './call-limits.js';
import type { PendingCommit } from './commit-batcher.js';
import { ExecutionState, type ExecutionOutcome } from './execution-state.js';
import { executionScope } from './execution-scope.js';
import { readDependencies } from './graph-reads.js';
import { prepareInput } from './input-validation.js';
import { fromPayload, toPayload } from './payload.js';
import { parseStoredStep } from './step-record.js';
import { settle } from './promises.js';
import { HandlerContext } from './user-contexts.js';

export type { ExecutableDefinition, ExecutionOutcome, ExecutionSettings, KeepsWarm, SlotRefill } from './execution-state.js';

/**
 * One execution of a claimed run: replays the handler from the top, returning stored step results and
 * executing the steps not yet committed, under the lease identified by the claim's fencing token.
 *
 * This class is the lifecycle: start, succeed, fail (retry, or compensate and finalize), and the
 * transitions that stop it; parking and losing the lease are in ExecutionState and Parking. Each
 * mechanism lives in a part named for it, made once per execution and given the execution's state
 * (execution-state.ts): the replay Journal (journal.ts), StepAttempts (step-attempts.ts), the
 * CommitBatcher of each turn's records (commit-batcher.ts), Parking (parking.ts), the Waits on time and
 * events (waits.ts), Children (children.ts) and the Saga of compensations and @OnFailure (saga.ts).
 * A new kind of call from the handler is a new part, routed to from runHandler.
 *
 * The common run (no input DTO, not finalizing, no damaged record) starts and succeeds without
 * async/await (see executeRun; why in step-attempts.ts).
 */
export class RunExecution extends ExecutionState {
  /** What ended this execution, for the hooks. */
  private failure?: unknown;
  private retryInMs?: number;
  /** The handler's promise: a warm resume goes on waiting for it. */
  private handler?: Promise<unknown>;

  private get options(): ResolvedWorkflowOptions {
    return this.definition.options;
  }

  execute(): Promise<ExecutionOutcome> {
    if (this.journal.needsPreparing) return this.journal.prepare().then(() => (this.state === 'executing' ? this.execute() : this.stopped));
    const node = this.claim.graphNode;
    // a root comes after nothing: no read
    if (node?.root) this.dependencies ??= {};
    if (node && !this.dependencies) {
      return readDependencies(this.store, this.shard, node.graphId, node.node).then((dependencies) => {
        this.dependencies = dependencies;
        return this.state === 'executing' ? this.execute() : this.stopped;
      });
    }
    if (this.needsScheduledAt) return this.readScheduledAt().then(() => (this.state === 'executing' ? this.execute() : this.stopped));
    const observation = this.settings.observer?.runStarted(this.runMeta(), { workerId: this.settings.workerId, resumed: this.claim.steps.size > 0 || !!this.claim.finalizing });
    if (!observation) return this.executeRun();
    this.observation = observation;
    return this.executeObserved(observation);
  }

  private async executeObserved(observation: RunObservation): Promise<ExecutionOutcome> {
    const outcome = await this.executeRun();
    const canceled = outcome === 'lost' && this.abortReason instanceof CanceledError;
    observation.ended(canceled ? 'canceled' : outcome, { error: canceled ? this.abortReason : (this.failure ?? (outcome === 'lost' ? this.abortReason : undefined)), retryInMs: this.retryInMs });
    return outcome;
  }

  private executeRun(): Promise<ExecutionOutcome> {
    // The common case without async/await (see step-attempts.ts): a run that is not finalizing, with no
    // input DTO and no damaged record.
    if (this.claim.finalizing || this.options.input || this.journal.unreadableRecords) return this.executeRunInFull();
    try {
      this.input = fromPayload(this.claim.input);
    } catch {
      return this.executeRunInFull();
    }
    // Rejects with the reason as soon as the execution stops (parked, lost, canceled): every stop aborts.
    return this.untilHandlerEnds((this.handler = this.runHandler()));
  }

  /** The handler's outcome under this claim: the run succeeds or fails with it, unless it stopped first. */
  private untilHandlerEnds(handler: Promise<unknown>): Promise<ExecutionOutcome> {
    return this.untilAborted(handler).then(
      (output) => {
        this.handlerSettled = true;
        return this.succeed(output);
      },
      (error: unknown) => {
        // the execution stopped (parked, lost) while the handler still runs: it has not settled
        if (error !== this.abortReason) this.handlerSettled = true;
        if (this.state !== 'executing') return this.stopped;
        return this.fail(error);
      },
    );
  }

  private async executeRunInFull(): Promise<ExecutionOutcome> {
    try {
      let plain: unknown;
      try {
        plain = fromPayload(this.claim.input);
      } catch (error) {
        throw new WorkflowError(`The stored input of run ${this.id} is not valid JSON (damaged in Redis?): ${describeError(error)}`);
      }
      this.input = this.options.input ? await prepareInput(this.options.input, plain, this.options.validation) : plain;
    } catch (error) {
      if (this.claim.finalizing) this.input = safeParse(this.claim.input);
      else return this.fail(error instanceof WorkflowError ? new NonRetriableError(error.message, { cause: error }) : error);
    }
    const unreadable = this.journal.unreadableRecords;
    if (unreadable) {
      const error = new CorruptedRunError(
        `The stored record of step ${unreadable.map((field) => `'${field}'`).join(', ')} of run ${this.id} is damaged (not a step record), so the run cannot be replayed without running committed steps again. Inspect it with getRunSteps, then emit a new run.`,
      );
      if (!this.claim.finalizing) return this.fail(error);
      this.logger.error(`${error.message} Its compensations run without that step's.`);
    }
    if (this.claim.finalizing === 'hook') {
      // Canceled at once (no compensations): only its @OnFailure is left to run.
      const error = decodeErrorJson(this.claim.error) ?? new CanceledError();
      if (this.definition.onFailure) await this.saga.runOnFailure(this.definition.onFailure, error);
      if (this.state !== 'executing') return this.stopped;
      const done = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'hook-done');
      return this.afterTransition(done, 'canceled');
    }
    if (this.claim.finalizing) {
      const error = decodeErrorJson(this.claim.error) ?? new WorkflowError('The run failed.');
      await this.saga.collect();
      return this.finalize(this.claim.finalizing, error);
    }
    let output: unknown;
    try {
      // Rejects with the reason as soon as the execution stops (parked, lost, canceled): every stop aborts.
      output = await this.untilAborted((this.handler = this.runHandler()));
      this.handlerSettled = true;
    } catch (error) {
      if (error !== this.abortReason) this.handlerSettled = true;
      if (this.state !== 'executing') return this.stopped;
      return this.fail(error);
    }
    return this.succeed(output);
  }

  // ---- warm resumes (ExecutionCache) ----

  /** Parked with its handler suspended on waits that a warm claim can settle (see Parking.resumeWaits). */
  get resumable(): boolean {
    return (
      this.state === 'stopped' &&
      this.parking.resumable &&
      !this.handlerSettled &&
      !this.refusedWhileParked &&
      this.mode === 'execute' &&
      !this.fatal &&
      this.handler !== undefined
    );
  }

  /**
   * Whether `claim` (a warm claim of this run by this worker, ClaimedRun.warm) continues this execution:
   * the next fence, the same attempt and epoch, nothing to finalize. Anything else is a doubt, and the run
   * is replayed from all its records instead.
   */
  continuesWith(claim: ClaimedRun): boolean {
    return (
      this.resumable &&
      claim.warm === true &&
      !claim.finalizing &&
      claim.attempt === this.claim.attempt &&
      claim.epoch === this.claim.epoch &&
      claim.input === this.claim.input &&
      fenceOf(claim.token) === fenceOf(this.token) + 1 &&
      allReadable(claim.steps)
    );
  }

  /**
   * Goes on with the suspended handler under a warm claim (see continuesWith): the records written since
   * the park join the journal, each wait the run parked on decides again, and the handler continues where
   * it waited; nothing is replayed.
   */
  resume(claim: ClaimedRun): Promise<ExecutionOutcome> {
    this.rebind(claim);
    this.failure = undefined;
    this.retryInMs = undefined;
    this.journal.takeDelta(claim.steps);
    if (this.journal.needsPreparing) {
      return this.journal.prepare().then(() => (this.state === 'executing' ? this.resumeHandler() : this.stopped));
    }
    return this.resumeHandler();
  }

  private resumeHandler(): Promise<ExecutionOutcome> {
    const observation = this.settings.observer?.runStarted(this.runMeta(), { workerId: this.settings.workerId, resumed: true });
    this.observation = observation;
    this.parking.resumeWaits();
    const outcome = this.untilHandlerEnds(this.handler!);
    if (!observation) return outcome;
    return outcome.then((result) => {
      const canceled = result === 'lost' && this.abortReason instanceof CanceledError;
      observation.ended(canceled ? 'canceled' : result, { error: canceled ? this.abortReason : (this.failure ?? (result === 'lost' ? this.abortReason : undefined)), retryInMs: this.retryInMs });
      return result;
    });
  }

  /** The handler returned: the run completes with its output, and the step records not committed yet. */
  private succeed(output: unknown): ExecutionOutcome | Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    if (this.fatal) return this.fail(this.fatal);
    if (this.continuation !== undefined) return this.continueRun(this.continuation);
    let text: string;
    try {
      text = toPayload(output, `The output of workflow '${this.claim.workflow}'`, this.settings.maxPayloadBytes) ?? 'null';
    } catch (error) {
      return this.fail(error);
    }
    if (!this.commits.flushing) return this.completeRun(text, this.commits.takeNow());
    return this.commits.takeAfterFlush().then(
      (steps) => this.completeRun(text, steps),
      () => this.stopped,
    );
  }

  private completeRun(text: string, steps: PendingCommit[]): Promise<ExecutionOutcome> {
    const refill = this.settings.refill?.();
    let completion: ReturnType<WorkflowStore['complete']>;
    try {
      completion = this.store.complete(this.shard, this.id, this.token, text, this.settings.retentionMs.succeeded, steps, refill?.request);
    } catch (error) {
      refill?.settle([]);
      return Promise.reject(error);
    }
    return completion.then(
      (result) => {
        refill?.settle(result.claimed ?? []);
        if (result.ok) {
          const committedAt = Math.round(this.serverNow());
          for (const step of steps) step.committed(this.journal.remember(step.field, committedAt, 'S', step.parsed, step.record.length));
        }
        return this.afterTransition(result, 'succeeded');
      },
      (error: unknown) => {
        refill?.settle([]);
        throw error;
      },
    );
  }

  /** ctx.setProgress: one call under the run's lease (lua/ops-progress.lua); a refusal stops the execution as a refused commit does. */
  setProgress(value: unknown): Promise<void> {
    let text: string;
    try {
      this.assertExecuting();
      text = progressText(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.store.setProgress(this.shard, this.id, this.token, text).then((result) => {
      if (result.ok) return;
      this.lose(result.reason);
      throw this.stopReason();
    });
  }

  /**
   * ctx.continueAsNew was called: this execution ends as succeeded and the new run (same shard, same
   * workflow, `input`, no records) is created in the same call, with the step records not committed yet.
   */
  private async continueRun(input: string): Promise<ExecutionOutcome> {
    let steps: PendingCommit[];
    try {
      steps = this.commits.flushing ? await this.commits.takeAfterFlush() : this.commits.takeNow();
    } catch {
      return this.stopped;
    }
    if (this.state !== 'executing') return this.stopped;
    const newRunId = this.store.keys.newRunId(this.shard);
    const result = await this.store.continueAsNew(this.shard, this.id, this.token, newRunId, input, this.settings.retentionMs.succeeded, steps);
    if (result.ok) {
      const committedAt = Math.round(this.serverNow());
      for (const step of steps) step.committed(this.journal.remember(step.field, committedAt, 'S', step.parsed));
      this.logger.debug?.(`Continued as new run ${newRunId}`);
    }
    return this.afterTransition(result, 'succeeded');
  }

  /** Runs the workflow's handler from the top, with the step API that routes each call to its part. */
  runHandler(): Promise<unknown> {
    const ctx = new HandlerContext(this, this.input, this.runMeta(), {
      run: (name, fn, opts) => {
        try {
          if (opts !== undefined) checkStepOptions(opts, () => `step.run(${quoteName(name)})`);
        } catch (error) {
          return Promise.reject(error);
        }
        return this.attempts.runStep({ name, kind: 'step', fn, ...opts });
      },
      sleep: (name, ms) => this.waits.sleep(name, () => `in:${Math.floor(checkDuration(ms, () => `sleep(${quoteName(name)})`))}`),
      sleepUntil: (name, at) => this.waits.sleep(name, () => `at:${checkInstant(at, () => `sleepUntil(${quoteName(name)})`)}`),
      runWorkflow: (name, workflow, input, opts) => this.children.runChild(name, workflow, input, opts) as never,
      emitWorkflow: (name, workflow, input, opts) => this.children.emitChild(name, workflow, input, opts),
      waitForEvent: (name, opts) => this.waits.waitForEvent(name, opts) as never,
      waitForAny: (name, waits) => this.races.waitForAny(name, waits) as never,
      graph: (name, nodes, opts) => this.graphs.graph(name, nodes, opts) as never,
      redis: (name, build, opts) => this.redisSteps.execute(name, build, opts),
    }, this.dependencies);
    const start = () => executionScope.run({ execution: this }, () => settle(() => this.definition.instance.execute(ctx)));
    return this.observation ? this.observation.within(start) : start();
  }

  // ---- failure, retries, finalization ----

  private async fail(thrown: unknown): Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    if (this.continuation !== undefined && !this.fatal) return this.continueRun(this.continuation);
    try {
      // The steps that succeeded before the failure are committed: their compensations are known then.
      await this.commits.flush();
    } catch {
      return this.stopped;
    }
    let error = this.fatal ?? thrown;
    // A run that took a patch's new path, replayed by a worker whose code does not know the patch (an old
    // worker during a rolling deploy): not a bug of the run, so it is retried, after its backoff, by a
    // worker that may have newer code, instead of failing for good.
    const newerPatch = error instanceof NonDeterminismError ? this.journal.unreachedPatch() : undefined;
    if (newerPatch !== undefined) {
      error = new NonDeterminismError(
        `${(error as Error).message} This run took the new path of patch '${newerPatch}', which this worker's code (version ${this.settings.version ?? 'not set'}) does not know: the attempt is retried, after its backoff, for a worker with newer code.`,
      );
    }
    const final =
      error instanceof NonRetriableError ||
      (error instanceof NonDeterminismError && newerPatch === undefined) ||
      error instanceof PayloadError ||
      error instanceof InvalidArgumentError ||
      this.claim.attempt >= this.claim.maxAttempts;
    this.failure = error;
    if (!final) {
      const delayMs = backoffDelay(this.options.backoff, this.claim.attempt);
      this.retryInMs = delayMs;
      this.logger.warn(`Attempt ${this.claim.attempt}/${this.claim.maxAttempts} failed (${describeError(error)}); retrying in ${delayMs} ms`);
      const result = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'retry', { delayMs });
      return this.afterTransition(result, 'retrying');
    }
    return this.finalize('failed', error instanceof Error ? error : new WorkflowError(describeError(error)));
  }

  /** The run failed for good (or was canceled): compensations in reverse order, @OnFailure, final state. */
  private async finalize(target: 'failed' | 'canceled', error: Error): Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    this.failure = error;
    const pending = this.sagaPart?.pending() ?? [];
    const onFailure = this.definition.onFailure;
    if (pending.length > 0 || onFailure) {
      if (!this.claim.finalizing) {
        const marked = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'finalize', {
          compensating: pending.length > 0,
        });
        if (!marked.ok) return this.afterTransition(marked, target);
      }
      if (!(await this.saga.compensate(pending))) return this.stopped;
      if (onFailure) await this.saga.runOnFailure(onFailure, error);
      if (this.state !== 'executing') return this.stopped;
    }
    // A cancellation or a NonRetriableError is the business's outcome, not the engine's fault: ERROR is kept
    // for what an operator must look into.
    if (target === 'canceled' || error instanceof CanceledError) this.logger.log(`Run ${target}: ${describeError(error)}`);
    else if (error instanceof NonRetriableError) this.logger.warn(`Run ${target}: ${describeError(error)}`);
    else this.logger.error(`Run ${target}: ${describeError(error)}`);
    const retentionMs = target === 'failed' ? this.settings.retentionMs.failed : this.settings.retentionMs.canceled;
    const result = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), target, { retentionMs });
    return this.afterTransition(result, target);
  }

  private afterTransition(result: TransitionResult & { handoff?: Handoff }, outcome: ExecutionOutcome): ExecutionOutcome {
    if (result.ok) {
      this.state = 'stopped';
      if (result.handoff) {
        // Best effort now; housekeeping of this shard delivers it later if this fails.
        this.store.deliver(result.handoff).catch((error) => this.logger.warn(`Hand-off to the parent failed, will be retried: ${describeError(error)}`));
      }
      return outcome;
    }
    this.lose(result.reason);
    return 'lost';
  }
}

/** A damaged record fails the run with CorruptedRunError, which a replay from all records reports. */
function allReadable(steps: Map<string, string>): boolean {
  for (const [field, value] of steps) {
    try {
      parseStoredStep(field, value);
    } catch {
      return false;
    }
  }
  return true;
}

function fenceOf(token: string): number {
  return Number(token.slice(0, token.indexOf(':')));
}

function safeParse(text: string): unknown {
  try {
    return fromPayload(text);
  } catch {
    return undefined;
  }
}
