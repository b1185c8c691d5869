import { Logger } from '@nestjs/common';
import { decodeError, decodeErrorJson, describeError, encodeErrorJson } from '../errors/error-codec.js';
import {
  CanceledError,
  ChildWorkflowError,
  LeaseLostError,
  NonDeterminismError,
  NonRetriableError,
  CorruptedRunError,
  PayloadError,
  InvalidArgumentError,
  TimeoutError,
  WorkflowError,
} from '../errors/workflow.errors.js';
import { mayRetryStep } from './retry-policy.js';
import { checkDuration, checkEvent, checkInstant, checkStepName, checkStepOptions, quoteName } from './call-limits.js';
import type { ResolvedWorkflowOptions, WorkflowDefinition } from '../discovery/workflow-definition.js';
import type {
  ChildEmitOptions,
  ChildRunOptions,
  OnFailureContext,
  RunMeta,
  WaitForEventOptions,
  WorkflowClass,
  WorkflowHandler,
} from '../interfaces/workflow.interfaces.js';
import { asStoredText, type ShardRef } from '../redis/keys.js';
import type { ClaimRequest, ClaimedRun, CommitResult, EventThreshold, Handoff, TransitionResult, WaitSpec, WorkflowStore } from '../redis/workflow-store.js';
import { abortableDelay, backoffDelay, raceAbort } from './backoff.js';
import type { ChildLauncher, ChildStart } from './child-launcher.js';
import { executionScope, type DurableExecution, type ExecutionScope, type StepRequest } from './execution-scope.js';
import { prepareInput } from './input-validation.js';
import { fromPayload, toPayload } from './payload.js';
import { encodeStepRecord, parseStepField, parseStoredStep, stepField, type RecordState, type StepRecord, type StoredStep } from './step-record.js';
import { HandlerContext, StepCallContext } from './user-contexts.js';
import type { ExecutionObserver, RunObservation, StepObservation } from '../observability/workflow-observer.js';

export type ExecutionOutcome = 'succeeded' | 'retrying' | 'failed' | 'canceled' | 'parked' | 'lost';

export interface ExecutionSettings {
  workerId: string;
  maxPayloadBytes: number;
  retentionMs: { succeeded: number; failed: number; canceled: number };
  children: ChildLauncher;
  shardRoot: string;
  /** The lease the claim granted, in ms (renewed by the worker's heartbeats, see leaseRenewed). */
  leaseMs?: number;
  /** Most step records a run may have (every kind counts); past it the step fails the run. */
  maxStepsPerRun?: number;
  /** Asked as the run completes: a claim to make in the same call, for the slot the run frees. */
  refill?: () => SlotRefill | undefined;
  /** Lifecycle hooks and tracing spans at run and step boundaries. */
  observer?: ExecutionObserver;
}

/** A claim made together with a completion; `settle` gets the runs it claimed (none if the call failed). */
export interface SlotRefill {
  request: ClaimRequest;
  settle(runs: ClaimedRun[]): void;
}

export type ExecutableDefinition = WorkflowDefinition & { instance: WorkflowHandler };

/** The scope end-of-turn work is scheduled under: none, so that it does not carry one run's scope. */
const NO_SCOPE = undefined as unknown as ExecutionScope;

/** Ends the handler's pending calls once the run has parked or stopped; never committed anywhere. */
class Suspended extends Error {}
/** One instance each, made once: an Error captures a stack trace when made, and every parked run used to make one. */
const PARKED = new Suspended('parked');
const PARKING = new Suspended('parking');
/** Ends a replay that only collects compensations, at the first step that never completed. */
class EndOfRecords extends Error {}

interface Compensation {
  field: string;
  name: string;
  record: StoredStep['record'];
  run: () => unknown;
}

/** How a record is committed (see WorkflowStore.commitStep). */
type CommitOptions = { hasCompensation?: boolean; ifOpen?: boolean; childId?: string };

/** A succeeded step whose record is not committed yet (see deferCommit). */
interface PendingCommit {
  field: string;
  record: string;
  parsed: StepRecord;
  hasCompensation: boolean;
  /** Called once the record is in Redis, with the record as stored. */
  committed: (stored: StoredStep) => void;
}

const COMPENSATION_TRIES = 3;
/** How long the replay that finds a failing run's compensations may take. */
const COLLECT_REPLAY_MS = 10_000;

/**
 * One execution of a claimed run: replays the handler from the top, returning stored step results and
 * executing the steps not yet committed, under the lease identified by the claim's fencing token.
 * Waits (sleeps, children, events) are collected while steps are in flight and the run parks once none
 * is: its lease is released and a timer or a hand-off brings it back.
 */
export class RunExecution implements DurableExecution {
  readonly id: string;
  readonly token: string;
  private loggerInstance?: Logger;
  /** Created when someone asks for the signal: most runs never do, and a controller per run costs. */
  private controller?: AbortController;
  /** Why the execution stopped (lease lost, canceled, timed out, parked); set once. */
  private abortReason?: Error;
  /** Steps racing the run's end (see untilAborted). */
  private readonly abortWaiters = new Set<(reason: Error) => void>();
  private readonly steps = new Map<string, StoredStep>();
  /** Step records of the claim that could not be parsed (damaged in Redis). */
  private unreadableRecords?: string[];
  private readonly occurrences = new Map<string, number>();
  /** Each step field this execution reached, and its position in the run's calls (StepRecord.n). */
  private readonly callOrder = new Map<string, number>();
  private readonly compensations: Compensation[] = [];
  /** (event, key) -> the log position of the event the run's last wait for them received. */
  private readonly eventThresholds = new Map<string, number>();
  private readonly claimedAtLocal = Date.now();
  /** Local time by which the lease surely still holds (the claim or the last heartbeat, sent before this, plus leaseMs). */
  private leaseHeldUntil: number;
  private lastStartedAt = 0;
  private inFlight = 0;
  private handlerSettled = false;
  private pendingWaits: WaitSpec[] = [];
  /** Succeeded steps waiting to be committed: by the end of this event-loop turn, before the run's next
   *  step, child, wait or failure, or together with its completion. */
  private pendingCommits: PendingCommit[] = [];
  private commitFlush?: Promise<void>;
  /** Waiting in dueFlushes for the end of this event-loop turn. */
  private flushQueued = false;
  /** Executions whose deferred records are committed at the end of this turn: one immediate for all of them. */
  private static dueFlushes: RunExecution[] = [];
  private parkScheduled = false;
  private state: 'executing' | 'parking' | 'stopped' = 'executing';
  /** 'collect': a replay after a takeover of a failing run, to find the compensations to run. */
  private mode: 'execute' | 'collect' = 'execute';
  /** A non-determinism found during replay fails the run even if the handler caught it. */
  private fatal?: NonDeterminismError | NonRetriableError;
  /** Every step field of the run: stored ones and those this execution reached (for maxStepsPerRun). */
  private readonly knownFields: Set<string>;
  private observation?: RunObservation;
  /** What ended this execution, for the hooks. */
  private failure?: unknown;
  private retryInMs?: number;
  private input: unknown;
  /** How the execution stopped, once it has; `stopped` is made when someone waits for it (most runs never). */
  private stopOutcome?: ExecutionOutcome;
  private stoppedPromise?: Promise<ExecutionOutcome>;
  private resolveStopped?: (outcome: ExecutionOutcome) => void;

  constructor(
    private readonly claim: ClaimedRun,
    private readonly shard: ShardRef,
    private readonly definition: ExecutableDefinition,
    private readonly store: WorkflowStore,
    private readonly settings: ExecutionSettings,
  ) {
    this.id = claim.id;
    this.token = claim.token;
    this.knownFields = new Set(claim.steps.keys());
    this.leaseHeldUntil = this.claimedAtLocal + (settings.leaseMs ?? 0);
    for (const [field, value] of claim.steps) {
      this.keepStored(field, value);
      if (value.includes(',"rp":"')) this.namesPayloads = true;
    }
  }

  /** A record names an event's payload instead of carrying it: read before the replay (prepareSteps). */
  private namesPayloads = false;

  private keepStored(field: string, value: string): void {
    try {
      this.steps.set(field, parseStoredStep(field, value));
    } catch {
      // Replaying without it would run a committed step again: the run fails instead (executeRunInFull).
      const unreadable = (this.unreadableRecords ??= []);
      if (!unreadable.includes(field)) unreadable.push(field);
    }
  }

  /**
   * Before the replay: the records of a large run that its claim did not carry (see ClaimedRun.stepsCursor), and
   * the payloads of events that records name instead of carrying (WorkflowStore.withPayloads).
   */
  private prepareSteps(): Promise<void> {
    const cursor = this.claim.stepsCursor;
    this.claim.stepsCursor = undefined;
    this.namesPayloads = false;
    const more = new Map<string, string>();
    const read = cursor === undefined ? Promise.resolve() : this.store.readStepsFrom(this.shard, this.id, cursor, more);
    return read.then(() => {
      for (const [field, value] of more) {
        this.knownFields.add(field);
        this.claim.steps.set(field, value);
      }
      return this.store.withPayloads(this.shard, this.claim.steps);
    }).then(
      (steps) => {
        for (const [field, value] of steps) this.keepStored(field, value);
      },
      (error: unknown) => {
        this.logger.error(`Could not read the run's step records: ${describeError(error)}`);
        this.lose('STEPS_UNREADABLE');
      },
    );
  }

  /** A heartbeat sent at `sentAt` (local ms) extended the lease. */
  leaseRenewed(sentAt: number): void {
    this.leaseHeldUntil = Math.max(this.leaseHeldUntil, sentAt + (this.settings.leaseMs ?? 0));
  }

  get workflow(): string {
    return this.claim.workflow;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** The run's logger, made on first use. */
  get logger(): Logger {
    return (this.loggerInstance ??= new Logger(`Workflow ${this.claim.workflow} ${this.claim.id}`));
  }

  private signalAbort(reason: Error): void {
    this.abortReason = reason;
    this.controller?.abort(reason);
    for (const reject of this.abortWaiters) reject(reason);
    this.abortWaiters.clear();
  }

  /** Settles as `work` does, or rejects as soon as the execution stops (the run's signal, without one). */
  private untilAborted<T>(work: Promise<T>): Promise<T> {
    if (this.abortReason) return Promise.reject(this.abortReason);
    return new Promise<T>((resolve, reject) => {
      this.abortWaiters.add(reject);
      work.then(
        (value) => {
          this.abortWaiters.delete(reject);
          resolve(value);
        },
        (error) => {
          this.abortWaiters.delete(reject);
          reject(error);
        },
      );
    });
  }

  /** Settles with the outcome once the execution has stopped (lost, canceled, parked). */
  private get stopped(): Promise<ExecutionOutcome> {
    return (this.stoppedPromise ??=
      this.stopOutcome !== undefined ? Promise.resolve(this.stopOutcome) : new Promise((resolve) => (this.resolveStopped = resolve)));
  }

  private resolveStop(outcome: ExecutionOutcome): void {
    if (this.stopOutcome !== undefined) return;
    this.stopOutcome = outcome;
    this.resolveStopped?.(outcome);
  }

  private get options(): ResolvedWorkflowOptions {
    return this.definition.options;
  }

  /** Stops the execution: the lease was lost, or the run canceled or timed out. Steps in flight see their signal aborted. */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.signalAbort(reason);
    this.state = 'stopped';
    this.resolveStop('lost');
  }

  execute(): Promise<ExecutionOutcome> {
    if (this.claim.stepsCursor !== undefined || this.namesPayloads) return this.prepareSteps().then(() => (this.state === 'executing' ? this.execute() : this.stopped));
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
    // The common case without async/await (see runStep): a run that is not finalizing, with no input DTO
    // and no damaged record.
    if (this.claim.finalizing || this.options.input || this.unreadableRecords) return this.executeRunInFull();
    try {
      this.input = fromPayload(this.claim.input);
    } catch {
      return this.executeRunInFull();
    }
    // Rejects with the reason as soon as the execution stops (parked, lost, canceled): every stop aborts.
    return this.untilAborted(this.runHandler()).then(
      (output) => {
        this.handlerSettled = true;
        return this.succeed(output);
      },
      (error: unknown) => {
        this.handlerSettled = true;
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
    if (this.unreadableRecords) {
      const error = new CorruptedRunError(
        `The stored record of step ${this.unreadableRecords.map((field) => `'${field}'`).join(', ')} of run ${this.id} is damaged (not a step record), so the run cannot be replayed without running committed steps again. Inspect it with getRunSteps, then emit a new run.`,
      );
      if (!this.claim.finalizing) return this.fail(error);
      this.logger.error(`${error.message} Its compensations run without that step's.`);
    }
    if (this.claim.finalizing === 'hook') {
      // Canceled at once (no compensations): only its @OnFailure is left to run.
      const error = decodeErrorJson(this.claim.error) ?? new CanceledError();
      if (this.definition.onFailure) await this.runOnFailure(this.definition.onFailure, error);
      if (this.state !== 'executing') return this.stopped;
      const done = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'hook-done');
      return this.afterTransition(done, 'canceled');
    }
    if (this.claim.finalizing) {
      const error = decodeErrorJson(this.claim.error) ?? new WorkflowError('The run failed.');
      await this.collectCompensations();
      return this.finalize(this.claim.finalizing, error);
    }
    let output: unknown;
    try {
      // Rejects with the reason as soon as the execution stops (parked, lost, canceled): every stop aborts.
      output = await this.untilAborted(this.runHandler());
      this.handlerSettled = true;
    } catch (error) {
      this.handlerSettled = true;
      if (this.state !== 'executing') return this.stopped;
      return this.fail(error);
    }
    return this.succeed(output);
  }

  /** The handler returned: the run completes with its output, and the step records not committed yet. */
  private succeed(output: unknown): ExecutionOutcome | Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    if (this.fatal) return this.fail(this.fatal);
    let text: string;
    try {
      text = toPayload(output, `The output of workflow '${this.claim.workflow}'`, this.settings.maxPayloadBytes) ?? 'null';
    } catch (error) {
      return this.fail(error);
    }
    if (!this.commitFlush) return this.completeRun(text, this.takePendingCommitsNow());
    return this.takePendingCommits().then(
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
          for (const step of steps) step.committed(this.remember(step.field, committedAt, 'S', step.parsed));
        }
        return this.afterTransition(result, 'succeeded');
      },
      (error: unknown) => {
        refill?.settle([]);
        throw error;
      },
    );
  }

  private runHandler(): Promise<unknown> {
    const ctx = new HandlerContext(this, this.input, this.runMeta(), {
      run: (name, fn, opts) => {
        try {
          if (opts !== undefined) checkStepOptions(opts, () => `step.run(${quoteName(name)})`);
        } catch (error) {
          return Promise.reject(error);
        }
        return this.runStep({ name, kind: 'step', fn, ...opts });
      },
      sleep: (name, ms) => this.sleep(name, () => `in:${Math.floor(checkDuration(ms, () => `sleep(${quoteName(name)})`))}`),
      sleepUntil: (name, at) => this.sleep(name, () => `at:${checkInstant(at, () => `sleepUntil(${quoteName(name)})`)}`),
      runWorkflow: (name, workflow, input, opts) => this.runChild(name, workflow, input, opts) as never,
      emitWorkflow: (name, workflow, input, opts) => this.emitChild(name, workflow, input, opts),
      waitForEvent: (name, opts) => this.waitForEvent(name, opts) as never,
    });
    const start = () => executionScope.run({ execution: this }, () => settle(() => this.definition.instance.execute(ctx)));
    return this.observation ? this.observation.within(start) : start();
  }

  // ---- durable steps ----

  runStep<T>(request: StepRequest<T>): Promise<T> {
    // Promise chains, not async/await, on this path: with AsyncLocalStorage active every promise in the
    // process runs its hooks, up to a quarter of the worker's CPU per three-step run (bench/NOTES.md, sixth round).
    try {
      this.assertExecuting();
      const field = this.nextField(request.name);
      const stored = this.steps.get(field);
      if (stored) this.assertSameStep(stored, request.kind, request.fingerprint ?? '');
      if (stored?.state === 'S' || (stored?.state === 'C' && this.mode === 'collect')) {
        const value = storedResult<T>(stored);
        if (stored.state === 'S') this.addCompensation(field, request, value, stored);
        return Promise.resolve(value);
      }
      if (this.mode === 'collect') throw new EndOfRecords();
      this.inFlight += 1;
      // The steps before this one are committed before it starts: it may act on their results.
      if (this.commitsOutstanding) {
        return this.flushCommits().then(
          () => this.executeAndEnd(field, request, stored),
          (error: unknown) => {
            this.inFlightEnded();
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
      this.inFlightEnded();
      throw error;
    }
    return this.endWhenSettled(outcome);
  }

  /** Counts an operation in flight (see inFlight) as ended once `outcome` settles, at once if it is a value. */
  private endWhenSettled<T>(outcome: T | Promise<T>): T | Promise<T> {
    if (!isPromise(outcome)) {
      this.inFlightEnded();
      return outcome;
    }
    return outcome.then(
      (value) => {
        this.inFlightEnded();
        return value;
      },
      (error: unknown) => {
        this.inFlightEnded();
        throw error;
      },
    );
  }

  private inFlightEnded(): void {
    this.inFlight -= 1;
    this.considerParking();
  }

  private addCompensation<T>(field: string, request: StepRequest<T>, value: T, stored: StoredStep | undefined): void {
    if (!request.compensate) return;
    this.compensations.push({
      field,
      name: request.name,
      record: stored?.record ?? { k: request.kind },
      run: () => request.compensate!(value),
    });
  }

  /**
   * Executes a step that has no committed result. The common case (a first attempt, no timeout, no
   * tracing) goes without async/await; a failure, a retry and everything else go through executeAttempts.
   * A synchronous result is returned as it is (the caller wraps it).
   */
  private executeStep<T>(field: string, request: StepRequest<T>, previous: StoredStep | undefined): T | Promise<T> {
    if (previous || request.timeoutMs !== undefined || this.observation) return this.executeAttempts(field, request, previous);
    const startedAt = this.nextStartTime();
    const step = new StepCallContext(`${this.id}:${field}`, 1, this);
    let outcome: T | Promise<T>;
    try {
      outcome = executionScope.run({ execution: this, step }, () => request.fn(step));
    } catch (error) {
      return this.executeAttempts(field, request, previous, { startedAt, error });
    }
    if (!isPromiseLike(outcome)) return this.recordFirstAttempt(field, request, outcome, startedAt);
    return this.untilAborted(Promise.resolve(outcome)).then(
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
    // A compensated step runs again after retryRun under a new generation, so its idempotency key is new.
    const generation = (previous?.record.g ?? 0) + (previous?.state === 'C' ? 1 : 0);
    const idempotencyKey = `${this.id}:${field}${generation > 0 ? `:${generation}` : ''}`;
    const maxTries = 1 + Math.max(0, request.retries ?? 0);
    const previousAttempts = previous?.state === 'F' ? (previous.record.a ?? 0) : 0;
    const startedAt = first?.startedAt ?? this.nextStartTime();
    const observed = this.observation?.step(request.name, parseStepField(field).occurrence, request.kind);
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
        const onRunAbort = stepController ? () => stepController!.abort(this.signal.reason) : undefined;
        if (onRunAbort) this.signal.addEventListener('abort', onRunAbort, { once: true });
        const stepContext = new StepCallContext(idempotencyKey, previousAttempts + attempt, stepController ?? this);
        try {
          const call = () => executionScope.run({ execution: this, step: stepContext }, () => settle(() => request.fn(stepContext)));
          const work = observed ? observed.within(call) : call();
          const value = await (stepController ? raceAbort(work, stepController.signal) : this.untilAborted(work));
          return await this.recordSuccess(field, request, value, { attempts: previousAttempts + attempt, startedAt, generation, observed });
        } catch (thrown) {
          error = thrown;
        } finally {
          if (timer) clearTimeout(timer);
          if (onRunAbort) this.signal.removeEventListener('abort', onRunAbort);
        }
      }
      if (this.state !== 'executing') throw this.stopReason();
      if (!mayRetryStep(request, error, previousAttempts + attempt, attempt < maxTries)) {
        const record = encodeStepRecord({
          k: request.kind,
          f: request.fingerprint,
          n: this.callOrder.get(field),
          a: previousAttempts + attempt,
          st: startedAt,
          ...(generation ? { g: generation } : {}),
          e: JSON.parse(encodeErrorJson(error)),
        });
        await this.commit(field, 'F', record);
        observed?.ended('failed', previousAttempts + attempt, error);
        throw error;
      }
      this.logger.warn(`Step '${request.name}' attempt ${attempt} failed (${describeError(error)}); retrying`);
      await abortableDelay(backoffDelay(request.backoff, attempt), this.signal);
    }
  }

  /**
   * A step's function returned `value`: its record is deferred (see deferCommit) and the result returned
   * at once, or, when the lease may be short, committed before the result is returned.
   */
  private recordSuccess<T>(
    field: string,
    request: StepRequest<T>,
    value: T,
    attempt: { attempts: number; startedAt: number; generation: number; observed?: StepObservation },
  ): T | Promise<T> {
    this.assertExecuting();
    const text = toPayload(value, `The result of step '${request.name}'`, this.settings.maxPayloadBytes);
    const fields: StepRecord = { k: request.kind, f: request.fingerprint, n: this.callOrder.get(field), st: attempt.startedAt };
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
        this.addCompensation(field, request, result, stored);
      },
    };
    if (this.leaseSurelyHeld()) {
      this.deferCommit(pending);
      return result;
    }
    return this.commit(field, 'S', record, { hasCompensation: pending.hasCompensation }, fields).then((stored) => {
      pending.committed(stored);
      return result;
    });
  }

  /** Commits a record now, after the deferred ones before it. */
  private async commit(
    field: string,
    state: RecordState,
    record: string,
    opts: CommitOptions = {},
    parsed?: StepRecord,
  ): Promise<StoredStep> {
    await this.flushCommits();
    return this.commitNow(field, state, record, opts, parsed);
  }

  /** At least half the lease is left by the local clock: a step that ends later (the process stalled, a
   *  heartbeat failed) commits before the handler sees its result, so a lost lease surfaces at that step. */
  private leaseSurelyHeld(): boolean {
    const leaseMs = this.settings.leaseMs ?? 0;
    return Date.now() + leaseMs / 2 < this.leaseHeldUntil;
  }

  /**
   * A succeeded step's record is committed at the latest at the end of the event-loop turn in which the
   * handler received its result, and always before anything that may act on that result leaves the
   * process: the next step, a child, an event wait, parking, a failure. When the handler returns within
   * that turn (the last step of a run), the record is committed in the same call as the completion.
   * A crash before the commit repeats the step, as a crash between a step's side effect and its commit does.
   * Only while the lease surely holds (leaseSurelyHeld); otherwise the step commits before returning.
   */
  private deferCommit(commit: PendingCommit): void {
    this.pendingCommits.push(commit);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Scheduled outside the run's scope: the immediate serves every execution deferring in this turn.
    if (RunExecution.dueFlushes.push(this) === 1) executionScope.run(NO_SCOPE, () => setImmediate(RunExecution.flushDue));
  }

  private static flushDue(this: void): void {
    const due = RunExecution.dueFlushes;
    RunExecution.dueFlushes = [];
    for (const execution of due) {
      execution.flushQueued = false;
      // A refused commit has already stopped the execution (lose); nothing else to do here.
      if (execution.pendingCommits.length > 0) execution.flushCommits().catch(() => undefined);
    }
  }

  /** Records deferred, or a flush of them still in flight. */
  private get commitsOutstanding(): boolean {
    return this.pendingCommits.length > 0 || this.commitFlush !== undefined;
  }

  /** Commits the deferred records; resolves once they, and any flush in progress, have landed. */
  private flushCommits(): Promise<void> {
    if (this.state === 'stopped' && this.pendingCommits.length > 0) {
      this.takePendingCommitsNow();
      return Promise.reject(this.stopReason());
    }
    if (this.commitFlush) return this.commitFlush;
    if (this.pendingCommits.length === 0) return Promise.resolve();
    // Written with then() rather than async/await: every promise pays the AsyncLocalStorage hooks, and
    // this runs between every two steps of every run.
    const batch = this.takePendingCommitsNow();
    const landed = () => {
      this.commitFlush = undefined;
      // Records deferred while this flush was in flight go next.
      return this.pendingCommits.length > 0 ? this.flushCommits() : undefined;
    };
    const failed = (error: unknown) => {
      this.commitFlush = undefined;
      throw error;
    };
    const flush =
      batch.length === 1
        ? this.store.commitStep(...this.commitArgs(batch[0])).then((result) => {
            this.commitFlush = undefined;
            batch[0].committed(this.applyCommit(result, batch[0].field, 'S', batch[0].record, batch[0].parsed));
            return landed();
          }, failed)
        : Promise.all(batch.map((pending) => this.commitNow(pending.field, 'S', pending.record, { hasCompensation: pending.hasCompensation }, pending.parsed).then(pending.committed))).then(landed, failed);
    this.commitFlush = flush;
    return flush;
  }

  private commitArgs(pending: PendingCommit): Parameters<WorkflowStore['commitStep']> {
    return [this.shard, this.id, this.token, pending.field, 'S', pending.record, { hasCompensation: pending.hasCompensation }];
  }

  /** Waits for a flush in progress and hands over the records still deferred (to commit with the completion). */
  private async takePendingCommits(): Promise<PendingCommit[]> {
    while (this.commitFlush) await this.commitFlush;
    return this.takePendingCommitsNow();
  }

  private takePendingCommitsNow(): PendingCommit[] {
    const taken = this.pendingCommits;
    if (taken.length > 0) this.pendingCommits = [];
    return taken;
  }

  private keep(stored: StoredStep): StoredStep {
    this.steps.set(stored.field, stored);
    return stored;
  }

  /** Keeps a record this execution committed, as the object it encoded (no re-parse). */
  private remember(field: string, committedAt: number, state: RecordState, record: StepRecord): StoredStep {
    const stored: StoredStep = { field, ...parseStepField(field), committedAt, state, record };
    this.steps.set(field, stored);
    return stored;
  }

  private commitNow(
    field: string,
    state: RecordState,
    record: string,
    opts: CommitOptions = {},
    /** The record as an object, when the caller has it: spares parsing the JSON it just encoded. */
    parsed?: StepRecord,
  ): Promise<StoredStep> {
    return this.store.commitStep(this.shard, this.id, this.token, field, state, record, opts).then((result) => this.applyCommit(result, field, state, record, parsed));
  }

  /** Keeps a committed record, or stops the execution when Redis refused the commit. */
  private applyCommit(result: CommitResult, field: string, state: RecordState, record: string, parsed?: StepRecord): StoredStep {
    if (!result.ok) {
      this.lose(result.reason);
      throw this.stopReason();
    }
    if ('resolved' in result) return this.keep(parseStoredStep(field, result.resolved));
    const committedAt = result.committedAt ?? Math.round(this.serverNow());
    return parsed ? this.remember(field, committedAt, state, parsed) : this.keep(parseStoredStep(field, `${committedAt}|${state}|${record}`));
  }

  // ---- waits: sleeps, children, events. The run parks once no step of it is in flight. ----

  /** `spec`: checks the argument (before anything is counted or written) and gives the wait's spec. */
  private sleep(name: string, describeWait: () => string): Promise<void> {
    let spec: string;
    try {
      spec = describeWait();
    } catch (error) {
      return Promise.reject(error);
    }
    this.assertExecuting();
    const field = this.nextField(name);
    const stored = this.steps.get(field);
    if (stored) {
      this.assertSameStep(stored, 'sleep', '');
      if (stored.state !== 'W' || (stored.record.u ?? 0) <= this.serverNow()) return Promise.resolve();
    }
    return this.waitFor({ kind: 'sleep', field, spec });
  }

  /** Without async/await on the common paths (a replayed result, a first start): see runStep. */
  private runChild(name: string, workflow: string | WorkflowClass, input: unknown, opts: ChildRunOptions = {}): Promise<unknown> {
    try {
      this.assertExecuting();
      if (opts?.timeoutMs !== undefined) checkDuration(opts.timeoutMs, () => `runWorkflow(${quoteName(name)}): timeoutMs`);
      const field = this.nextField(name);
      const workflowName = this.settings.children.workflowName(workflow);
      const fingerprint = `child:${workflowName}`;
      const stored = this.steps.get(field);
      if (stored) this.assertSameStep(stored, 'child', fingerprint);
      // A child that failed before a retry (of the attempt, or retryRun) is started again, as a new generation.
      const retryFailed = stored?.state === 'F' && (stored.record.pa ?? this.claim.epoch) < this.claim.epoch && this.mode === 'execute';
      if (stored && !retryFailed) {
        if (stored.state === 'S') return Promise.resolve(structuredClone(stored.record.r));
        if (stored.state === 'F') throw childError(name, stored);
        if (stored.state === 'W' && stored.record.dl !== undefined && stored.record.dl <= this.serverNow()) {
          return this.timeOutChild(name, field, fingerprint, stored, opts);
        }
        if (this.mode === 'collect') throw new EndOfRecords();
        return this.waitFor({ kind: 'child', field, childId: stored.record.id!, workflow: workflowName, timeoutMs: opts.timeoutMs });
      }
      if (this.mode === 'collect') throw new EndOfRecords();
      const generation = retryFailed ? (stored!.record.g ?? 0) + 1 : 0;
      const start = {
        parentId: this.id,
        parentRoot: this.settings.shardRoot,
        parentField: field,
        seed: `${this.id}|${field}|${generation}`,
        workflow,
        input,
        idempotencyKey: opts.idempotencyKey,
        queue: opts.queue,
      };
      if (!retryFailed) {
        // A child in this shard is created by the call that parks the run: one call fewer per child, and
        // the children and the wait for them appear together (see considerParking for a run that goes on).
        const inShard = this.settings.children.childInShard(start, this.shard);
        if (inShard) return this.waitFor({ kind: 'child', field, childId: inShard.id, workflow: inShard.workflow, timeoutMs: opts.timeoutMs, spawn: inShard.emit });
      }
      const started = retryFailed ? this.restartFailedChild(field, fingerprint, generation, start) : this.track(() => this.startChildAfterCommits(start));
      return started.then((child) =>
        this.waitFor({ kind: 'child', field, childId: child.id, workflow: child.workflow, timeoutMs: opts.timeoutMs, joined: child.joined }),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Starts a child once the steps before it are committed. */
  private startChildAfterCommits(start: ChildStart): Promise<{ id: string; workflow: string; joined?: boolean }> {
    return this.afterCommits(() => this.settings.children.startChild(start));
  }

  /** Runs `work` once the step records deferred so far are committed (at once when none is). */
  private afterCommits<T>(work: () => Promise<T>): Promise<T> {
    return this.commitsOutstanding ? this.flushCommits().then(work) : work();
  }

  /** A child wait whose timeout passed: resolved as timed out unless the child's outcome got there first. */
  private async timeOutChild(name: string, field: string, fingerprint: string, stored: StoredStep, opts: ChildRunOptions): Promise<unknown> {
    const timedOut = await this.resolveOpenWait(field, 'F', encodeStepRecord({
      k: 'child', f: fingerprint, s: 'failed', n: this.callOrder.get(field), id: stored.record.id,
      e: JSON.parse(encodeErrorJson(new TimeoutError(`Child workflow '${name}' did not finish within ${opts.timeoutMs} ms.`))),
    }));
    if (timedOut.state === 'S') return structuredClone(timedOut.record.r);
    throw timedOut.record.e?.name === 'TimeoutError' ? decodeError(timedOut.record.e) : childError(name, timedOut);
  }

  /** A child that failed in an earlier epoch, started again under the next generation. */
  private async restartFailedChild(
    field: string,
    fingerprint: string,
    generation: number,
    start: ChildStart,
  ): Promise<{ id: string; workflow: string; joined?: boolean }> {
    // The earlier attempt's failed record gives way to a waiting one before the new child starts, so
    // that the new child's outcome (however fast) is delivered onto it.
    const childId = this.settings.children.childRunId(start);
    const record = encodeStepRecord({ k: 'child', f: fingerprint, s: 'waiting', n: this.callOrder.get(field), id: childId, g: generation });
    await this.track(() => this.commit(field, 'W', record, { childId }));
    return this.track(() => this.startChildAfterCommits(start));
  }

  private async emitChild(name: string, workflow: string | WorkflowClass, input: unknown, opts: ChildEmitOptions = {}): Promise<string> {
    this.assertExecuting();
    if (opts?.runAt !== undefined) checkInstant(opts.runAt, () => `emitWorkflow(${quoteName(name)}): runAt`);
    const field = this.nextField(name);
    const fingerprint = `child:${this.settings.children.workflowName(workflow)}`;
    const stored = this.steps.get(field);
    if (stored) {
      this.assertSameStep(stored, 'child-emit', fingerprint);
      return String(stored.record.r);
    }
    if (this.mode === 'collect') throw new EndOfRecords();
    return this.track(async () => {
      await this.flushCommits();
      const child = await this.settings.children.startChild({
        parentId: this.id,
        parentRoot: this.settings.shardRoot,
        seed: `${this.id}|${field}|0`,
        workflow,
        input,
        idempotencyKey: opts.idempotencyKey,
        queue: opts.queue,
        runAt: opts.runAt,
      });
      await this.commit(field, 'S', encodeStepRecord({ k: 'child-emit', f: fingerprint, s: 'succeeded', n: this.callOrder.get(field) }, JSON.stringify(child.id)), {
        childId: child.id,
      });
      return child.id;
    });
  }

  private async waitForEvent(name: string, opts: WaitForEventOptions): Promise<unknown> {
    this.assertExecuting();
    if (!opts || typeof opts !== 'object') throw new InvalidArgumentError(`waitForEvent(${quoteName(name)}) needs { event: string, key?: string, timeoutMs?: number }.`);
    const { key } = checkEvent(opts.event, opts.key, () => `waitForEvent(${quoteName(name)})`);
    if (opts.timeoutMs !== undefined) checkDuration(opts.timeoutMs, () => `waitForEvent(${quoteName(name)}): timeoutMs`);
    const field = this.nextField(name);
    // as the records the library writes name the event (a lone surrogate in it arrives as U+FFFD)
    const fingerprint = `event:${asStoredText(opts.event)}`;
    const stored = this.steps.get(field);
    const streamKey = `${opts.event}\u0000${key}`;
    if (stored) this.assertSameStep(stored, 'event', fingerprint, stored.record.ev === undefined ? undefined : `event:${stored.record.ev}`);
    const resolved = (s: StoredStep) => {
      if (s.record.th !== undefined) this.eventThresholds.set(streamKey, s.record.th);
      return s.record.r === undefined ? null : structuredClone(s.record.r);
    };
    if (stored?.state === 'S') return resolved(stored);
    if (this.mode === 'collect') throw new EndOfRecords();
    if (stored?.state === 'W') {
      if (stored.record.dl !== undefined && stored.record.dl <= this.serverNow()) {
        // A wait that timed out received no event, so the next one goes on from the same place in the log
        // (no 'th'): an event whose delivery lost the race with the timeout is not missed.
        const record = encodeStepRecord({ k: 'event', f: fingerprint, s: 'succeeded', n: this.callOrder.get(field), ev: opts.event, key }, 'null');
        return resolved(await this.resolveOpenWait(field, 'S', record));
      }
      return this.waitFor({ kind: 'event', field, event: opts.event, key, timeoutMs: opts.timeoutMs });
    }
    const position = this.eventThresholds.get(streamKey);
    const after: EventThreshold = position === undefined ? { runCreatedAt: this.claim.createdAt } : { position };
    const matched = await this.track(async () => {
      await this.flushCommits();
      return this.store.waitEvent(opts.event, key, this.id, field, after, this.settings.shardRoot);
    });
    if (matched !== undefined) {
      const record = matched.slice(0, -1) + `,"f":${JSON.stringify(fingerprint)},"n":${this.callOrder.get(field)}}`;
      return resolved(await this.track(() => this.resolveOpenWait(field, 'S', record)));
    }
    return this.waitFor({ kind: 'event', field, event: opts.event, key, timeoutMs: opts.timeoutMs });
  }

  /** Resolves a wait unless a delivery resolved it first; returns the record that stands. */
  private resolveOpenWait(field: string, state: RecordState, record: string): Promise<StoredStep> {
    return this.commit(field, state, record, { ifOpen: true }).then((stored) => {
      const eventId = stored.record.rp;
      if (eventId === undefined) return stored;
      // the delivery that got there first named the event's payload instead of carrying it
      return this.store.readSharedPayload(this.shard, eventId).then((payload) => {
        if (payload !== null) stored.record.r = JSON.parse(payload);
        return stored;
      });
    });
  }

  /** Counts an operation as in flight, so that the run does not park before it ends. */
  private track<T>(operation: () => Promise<T>): Promise<T> {
    this.inFlight += 1;
    let work: Promise<T>;
    try {
      work = operation();
    } catch (error) {
      this.inFlightEnded();
      return Promise.reject(error);
    }
    return this.endWhenSettled(work) as Promise<T>;
  }

  private waitFor(wait: WaitSpec): Promise<never> {
    if (this.mode === 'collect') return Promise.reject(new EndOfRecords());
    this.pendingWaits.push(wait);
    this.considerParking();
    return new Promise<never>(() => undefined); // settled by parking: the handler is abandoned and replayed later
  }

  private considerParking(): void {
    if (this.parkScheduled || !(this.mayPark() || this.spawnsPending())) return;
    this.parkScheduled = true;
    // Let the handler's other branches (Promise.all) reach their own waits before deciding.
    setImmediate(() => {
      this.parkScheduled = false;
      if (!this.mayPark()) {
        // The run goes on (a step is in flight): its children start now, as they would without the park.
        this.startSpawns();
        return;
      }
      // Steps that succeeded before the waits are committed first; then parking is considered again.
      if (this.commitsOutstanding) {
        this.startSpawns();
        this.flushCommits().then(() => this.considerParking(), () => undefined);
        return;
      }
      void this.park();
    });
  }

  /** Children waited for that are to be created by the park (see runChild). */
  private spawnsPending(): boolean {
    return this.pendingWaits.some((wait) => wait.kind === 'child' && wait.spawn !== undefined);
  }

  /** Starts the children the park was to create, each on its own, once the steps before them are committed. */
  private startSpawns(): void {
    if (this.state !== 'executing') return;
    for (const wait of this.pendingWaits) {
      if (wait.kind !== 'child' || !wait.spawn) continue;
      const spawn = wait.spawn;
      wait.spawn = undefined;
      this.track(() => this.afterCommits(() => this.store.emit(this.shard, spawn))).catch(
        (error: unknown) => {
          // The handler already waits for this child: the run is given up, and replayed by the next claim.
          if (this.state !== 'executing') return;
          this.logger.error(`Could not start child run ${spawn.runId}: ${describeError(error)}`);
          this.lose('CHILD_START_FAILED');
        },
      );
    }
  }

  /** Waits are pending, no step is in flight, and the handler has not already returned or thrown (a
   *  Promise.all that rejected leaves its other branches waiting: the run fails instead of parking). */
  private mayPark(): boolean {
    return this.state === 'executing' && !this.handlerSettled && this.pendingWaits.length > 0 && this.inFlight === 0;
  }

  private async park(): Promise<void> {
    this.state = 'parking';
    const waits = this.pendingWaits;
    this.pendingWaits = [];
    const waitingFor = JSON.stringify(describeWaits(waits));
    try {
      const result = await this.store.park(this.shard, this.id, this.token, waitingFor, waits);
      if (result.outcome === 'lost') return this.lose(result.reason);
      this.state = 'stopped';
      this.signalAbort(PARKED);
      this.resolveStop('parked');
    } catch (error) {
      this.logger.error(`Could not park the run: ${describeError(error)}`);
      this.lose('PARK_FAILED');
    }
  }

  /**
   * A step's start time (display only): never the same as the previous step's of this execution, so that
   * steps sort in the order they started even when several start within one millisecond.
   */
  private nextStartTime(): number {
    this.lastStartedAt = Math.max(Date.now(), this.lastStartedAt + 1);
    return this.lastStartedAt;
  }

  /** The Redis server's time now, estimated from the claim's server time and local elapsed time. */
  private serverNow(): number {
    return this.claim.serverNow + (Date.now() - this.claimedAtLocal);
  }

  // ---- failure, retries, finalization ----

  private async fail(thrown: unknown): Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    try {
      // The steps that succeeded before the failure are committed: their compensations are known then.
      await this.flushCommits();
    } catch {
      return this.stopped;
    }
    const error = this.fatal ?? thrown;
    const final =
      error instanceof NonRetriableError ||
      error instanceof NonDeterminismError ||
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

  /** After a takeover of a failing or canceled run: replays the records to find the compensations to run. */
  private async collectCompensations(): Promise<void> {
    this.mode = 'collect';
    let timer: NodeJS.Timeout | undefined;
    // Code between steps that waits on something else (a plain timer, an external promise) must not
    // keep a failing run from its compensations: the replay gets a bounded time.
    const enough = new Promise<void>((resolve) => (timer = setTimeout(resolve, COLLECT_REPLAY_MS)));
    try {
      await Promise.race([this.runHandler(), this.stopped, enough]);
    } catch {
      // The replay ends at the first step that never completed (or wherever the handler failed).
    } finally {
      clearTimeout(timer);
    }
    this.occurrences.clear();
    this.callOrder.clear();
  }

  /** The run failed for good (or was canceled): compensations in reverse order, @OnFailure, final state. */
  private async finalize(target: 'failed' | 'canceled', error: Error): Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    this.failure = error;
    const pending = this.compensations.filter((c) => this.steps.get(c.field)?.state !== 'C');
    const onFailure = this.definition.onFailure;
    if (pending.length > 0 || onFailure) {
      if (!this.claim.finalizing) {
        const marked = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'finalize', {
          compensating: pending.length > 0,
        });
        if (!marked.ok) return this.afterTransition(marked, target);
      }
      for (const compensation of pending.reverse()) {
        if (!(await this.compensate(compensation))) return this.stopped;
      }
      if (onFailure) await this.runOnFailure(onFailure, error);
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

  /** Runs one compensation (a few tries) and commits it as compensated. False when the run was lost. */
  private async compensate(compensation: Compensation): Promise<boolean> {
    for (let attempt = 1; attempt <= COMPENSATION_TRIES; attempt += 1) {
      try {
        await compensation.run();
        break;
      } catch (error) {
        this.logger.error(`Compensation of step '${compensation.name}' failed (try ${attempt}/${COMPENSATION_TRIES}): ${describeError(error)}`);
        if (attempt === COMPENSATION_TRIES) break;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
    if (this.state !== 'executing') return false;
    const current = this.steps.get(compensation.field);
    const record = JSON.stringify({
      ...(current?.record ?? compensation.record),
      s: 'compensated',
      ...(current?.state === 'S' ? { sc: current.committedAt } : {}),
    });
    try {
      await this.commit(compensation.field, 'C', record);
      return true;
    } catch {
      return false;
    }
  }

  private async runOnFailure(method: string, error: Error): Promise<void> {
    const failureContext: OnFailureContext<unknown> = {
      input: this.input,
      run: this.runMeta(),
      error,
      signal: this.signal,
      logger: this.logger,
    };
    try {
      await (this.definition.instance as unknown as Record<string, (c: OnFailureContext) => unknown>)[method](failureContext);
    } catch (hookError) {
      this.logger.error(`@OnFailure ${method}() threw: ${describeError(hookError)}`);
    }
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

  private lose(reason: string): void {
    const error = reason.startsWith('NOT_EXECUTING:canceled') || reason.startsWith('NOT_EXECUTING:compensating')
      ? new CanceledError('The run was canceled while this worker executed it.')
      : new LeaseLostError(`This worker no longer holds run ${this.id} (${reason}); another worker's results stand.`);
    this.logger.warn(error.message);
    this.abort(error);
  }

  private stopReason(): Error {
    return this.abortReason ?? new LeaseLostError(`This worker no longer holds run ${this.id}.`);
  }

  // ---- helpers ----

  private runMeta(): RunMeta {
    return {
      id: this.id,
      workflow: this.claim.workflow,
      queue: this.shard.queue,
      attempt: this.claim.attempt,
      maxAttempts: this.claim.maxAttempts,
      ...(this.claim.parentId ? { parentId: this.claim.parentId } : {}),
    };
  }

  private nextField(name: string): string {
    checkStepName(name);
    const occurrence = this.occurrences.get(name) ?? 0;
    this.occurrences.set(name, occurrence + 1);
    // as Redis keeps the field (a lone surrogate arrives as U+FFFD), so that a replay finds its record
    const field = stepField(asStoredText(name), occurrence);
    this.callOrder.set(field, this.callOrder.size);
    if (!this.knownFields.has(field) && this.mode === 'execute') {
      this.knownFields.add(field);
      const max = this.settings.maxStepsPerRun;
      if (max !== undefined && this.knownFields.size > max) {
        throw (this.fatal ??= new NonRetriableError(
          `Run ${this.id} reached the limit of ${max} steps per run (maxStepsPerRun) at step '${name}'. ` +
            'Split the work into child workflows (step.runWorkflow), or raise maxStepsPerRun in WorkflowModule.forRoot().',
        ));
      }
    }
    return field;
  }

  private assertExecuting(): void {
    if (this.state === 'executing') return;
    if (this.state === 'parking') throw PARKING;
    throw this.stopReason();
  }

  private assertSameStep(stored: StoredStep, kind: string, fingerprint: string, recorded = stored.record.f ?? ''): void {
    if (stored.record.k !== kind || recorded !== fingerprint) {
      throw (this.fatal ??= new NonDeterminismError(
        `Step '${stored.name}' (occurrence ${stored.occurrence}) was recorded as ${recorded || stored.record.k} but the code now asks for ${fingerprint || kind}. ` +
          'The workflow code changed under a run in flight: keep old code paths for old runs, or use a new step name.',
      ));
    }
  }
}

/** Calls user code and gives its outcome as a promise (a synchronous throw becomes a rejection). */
function settle<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return value instanceof Promise;
}

/** A value with a then method, as await and Promise.resolve treat it. */
function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

function childError(name: string, stored: StoredStep): ChildWorkflowError {
  const cause = stored.record.e ? decodeError(stored.record.e) : new WorkflowError('The child run failed.');
  return new ChildWorkflowError(`Child workflow '${name}' (run ${stored.record.id}) failed: ${cause.message}`, { cause });
}

/** What RunInfo.waitingFor shows, kept in the run hash: at most WAITS_SHOWN of each kind, with their total past that
 *  (a fan-out of 10,000 children would otherwise store and carry 300 KB of ids with the park). */
function describeWaits(waits: WaitSpec[]): unknown {
  const sleeps = waits.filter((w) => w.kind === 'sleep').map((w) => w.field.slice(w.field.indexOf(':') + 1));
  const children = waits.flatMap((w) => (w.kind === 'child' ? [w.childId] : []));
  const events = waits.flatMap((w) => (w.kind === 'event' ? [{ event: w.event, ...(w.key ? { key: w.key } : {}) }] : []));
  return {
    ...shownWaits('sleep', sleeps),
    ...shownWaits('children', children),
    ...shownWaits('events', events),
  };
}

const WAITS_SHOWN = 100;

function shownWaits(kind: string, list: unknown[]): Record<string, unknown> {
  if (list.length === 0) return {};
  if (list.length <= WAITS_SHOWN) return { [kind]: list };
  return { [kind]: list.slice(0, WAITS_SHOWN), [`${kind}Total`]: list.length };
}

function storedResult<T>(stored: StoredStep): T {
  return (stored.record.r === undefined ? undefined : structuredClone(stored.record.r)) as T;
}

function safeParse(text: string): unknown {
  try {
    return fromPayload(text);
  } catch {
    return undefined;
  }
}

