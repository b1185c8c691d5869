import { Logger } from '@nestjs/common';
import { decodeErrorJson, encodeErrorJson } from '../errors/error-codec.js';
import {
  CanceledError,
  LeaseLostError,
  NonDeterminismError,
  NonRetriableError,
  PayloadError,
  TimeoutError,
  WorkflowError,
} from '../errors/workflow.errors.js';
import type { ResolvedWorkflowOptions, WorkflowDefinition } from '../discovery/workflow-definition.js';
import type { OnFailureContext, RunMeta, StepContext, WorkflowContext } from '../interfaces/workflow.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { ClaimedRun, TransitionResult, WorkflowStore } from '../redis/workflow-store.js';
import { abortableDelay, backoffDelay, raceAbort } from './backoff.js';
import { executionScope, type DurableExecution, type StepRequest } from './execution-scope.js';
import { prepareInput } from './input-validation.js';
import { fromPayload, toPayload } from './payload.js';
import { encodeStepRecord, parseStoredStep, stepField, type StoredStep } from './step-record.js';

export type ExecutionOutcome = 'succeeded' | 'retrying' | 'failed' | 'canceled' | 'parked' | 'lost';

export interface ExecutionSettings {
  workerId: string;
  maxPayloadBytes: number;
  retentionMs: { succeeded: number; failed: number; canceled: number };
}

/** Thrown into a handler's pending step calls once the run has parked; never seen by user code's result. */
class Suspended extends Error {}

interface PendingSleep {
  field: string;
  /** set for a sleep first reached now: 'in:<ms>' or 'at:<ms>' */
  spec?: string;
  /** set for a sleep recorded earlier: its wake-up time on the server clock */
  until?: number;
}

/**
 * One execution of a claimed run: replays the handler from the top, returning stored step results and
 * executing the steps not yet committed, under the lease identified by the claim's fencing token.
 */
export class RunExecution implements DurableExecution {
  readonly id: string;
  readonly token: string;
  private readonly logger: Logger;
  private readonly controller = new AbortController();
  private readonly steps = new Map<string, StoredStep>();
  private readonly occurrences = new Map<string, number>();
  private readonly compensations: { name: string; run: () => unknown }[] = [];
  private readonly claimedAtLocal = Date.now();
  private inFlight = 0;
  private pendingSleeps: PendingSleep[] = [];
  private parkScheduled = false;
  private state: 'executing' | 'parking' | 'stopped' = 'executing';
  /** A non-determinism found during replay fails the run even if the handler caught it. */
  private fatal?: NonDeterminismError;
  private resolveStop!: (outcome: ExecutionOutcome) => void;
  private readonly stopped = new Promise<ExecutionOutcome>((resolve) => (this.resolveStop = resolve));

  constructor(
    private readonly claim: ClaimedRun,
    private readonly shard: ShardRef,
    private readonly definition: WorkflowDefinition & { instance: NonNullable<WorkflowDefinition['instance']> },
    private readonly store: WorkflowStore,
    private readonly settings: ExecutionSettings,
  ) {
    this.id = claim.id;
    this.token = claim.token;
    this.logger = new Logger(`Workflow ${claim.workflow} ${claim.id}`);
    for (const [field, value] of claim.steps) {
      try {
        this.steps.set(field, parseStoredStep(field, value));
      } catch {
        this.logger.warn(`Ignoring unreadable record of step ${field}`);
      }
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private get options(): ResolvedWorkflowOptions {
    return this.definition.options;
  }

  /** Stops the execution: the lease was lost or the run canceled. Steps in flight see their signal aborted. */
  abort(reason: Error): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(reason);
    this.state = 'stopped';
    this.resolveStop('lost');
  }

  async execute(): Promise<ExecutionOutcome> {
    const meta = this.runMeta();
    if (this.claim.finalizing) {
      return this.finalize(this.claim.finalizing, decodeErrorJson(this.claim.error) ?? new WorkflowError('unknown failure'));
    }
    let input: unknown;
    try {
      input = await prepareInput(this.options.input, fromPayload(this.claim.input), this.options.validation);
    } catch (error) {
      return this.fail(error instanceof WorkflowError ? new NonRetriableError(error.message, { cause: error }) : error);
    }
    const ctx: WorkflowContext<unknown> = {
      input,
      run: meta,
      signal: this.signal,
      logger: this.logger,
      step: {
        run: (name, fn, opts) => this.runStep({ name, kind: 'step', fn, ...opts }),
        sleep: (name, ms) => this.sleep(name, `in:${Math.max(0, Math.floor(ms))}`),
        sleepUntil: (name, at) => this.sleep(name, `at:${at.getTime()}`),
        runWorkflow: () => Promise.reject(new WorkflowError('step.runWorkflow is being built (composition issue).')),
        emitWorkflow: () => Promise.reject(new WorkflowError('step.emitWorkflow is being built (composition issue).')),
        waitForEvent: () => Promise.reject(new WorkflowError('step.waitForEvent is being built (composition issue).')),
      },
    };
    let output: unknown;
    try {
      const handler = executionScope.run({ execution: this }, () =>
        Promise.resolve().then(() => this.definition.instance.execute(ctx)),
      );
      const raced = await Promise.race([handler.then((value) => ({ value })), this.stopped]);
      if (typeof raced === 'string') return raced;
      output = raced.value;
    } catch (error) {
      if (this.state !== 'executing') return this.stopped;
      return this.fail(error);
    }
    if (this.state !== 'executing') return this.stopped;
    if (this.fatal) return this.fail(this.fatal);
    let text: string;
    try {
      text = toPayload(output, `The output of workflow '${this.claim.workflow}'`, this.settings.maxPayloadBytes) ?? 'null';
    } catch (error) {
      return this.fail(error);
    }
    const result = await this.store.complete(this.shard, this.id, this.token, text, this.settings.retentionMs.succeeded);
    return this.afterTransition(result, 'succeeded');
  }

  // ---- durable steps ----

  async runStep<T>(request: StepRequest<T>): Promise<T> {
    this.assertExecuting();
    const field = this.nextField(request.name);
    const stored = this.steps.get(field);
    if (stored) {
      this.assertSameStep(stored, request);
      if (stored.record.s === 'succeeded') {
        const value = storedResult<T>(stored);
        if (request.compensate) this.compensations.push({ name: request.name, run: () => request.compensate!(value) });
        return value;
      }
    }
    this.inFlight += 1;
    try {
      const value = await this.executeStep(field, request, stored);
      if (request.compensate) this.compensations.push({ name: request.name, run: () => request.compensate!(value) });
      return value;
    } finally {
      this.inFlight -= 1;
      this.considerParking();
    }
  }

  private async executeStep<T>(field: string, request: StepRequest<T>, previous: StoredStep | undefined): Promise<T> {
    const generation = previous?.record.g ?? 0;
    const idempotencyKey = `${this.id}:${field}${generation > 0 ? `:${generation}` : ''}`;
    const maxTries = 1 + Math.max(0, request.retries ?? 0);
    const previousAttempts = previous?.record.a ?? 0;
    const startedAt = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      const stepController = new AbortController();
      const onRunAbort = () => stepController.abort(this.signal.reason);
      this.signal.addEventListener('abort', onRunAbort, { once: true });
      const timer =
        request.timeoutMs !== undefined
          ? setTimeout(
              () => stepController.abort(new TimeoutError(`Step '${request.name}' timed out after ${request.timeoutMs} ms.`)),
              request.timeoutMs,
            )
          : undefined;
      const stepContext: StepContext = { idempotencyKey, signal: stepController.signal, attempt: previousAttempts + attempt };
      try {
        const value = await raceAbort(
          executionScope.run({ execution: this, step: stepContext }, () => Promise.resolve().then(() => request.fn(stepContext))),
          stepController.signal,
        );
        this.assertExecuting();
        const text = toPayload(value, `The result of step '${request.name}'`, this.settings.maxPayloadBytes);
        const record = encodeStepRecord(
          { k: request.kind, f: request.fingerprint, s: 'succeeded', a: previousAttempts + attempt, st: startedAt, g: generation, ...(request.compensate ? { c: 1 } : {}) },
          text,
        );
        await this.commit(field, record, !!request.compensate);
        return fromPayload<T>(text);
      } catch (error) {
        if (this.state !== 'executing') throw this.signal.reason ?? new LeaseLostError('The run is no longer held by this worker.');
        const final = attempt >= maxTries || error instanceof NonRetriableError || error instanceof PayloadError;
        if (final) {
          const record = encodeStepRecord({
            k: request.kind,
            f: request.fingerprint,
            s: 'failed',
            a: previousAttempts + attempt,
            st: startedAt,
            g: generation,
            e: JSON.parse(encodeErrorJson(error)),
          });
          await this.commit(field, record, false);
          throw error;
        }
        this.logger.warn(`Step '${request.name}' attempt ${attempt} failed (${describe(error)}); retrying`);
        await abortableDelay(backoffDelay(request.backoff, attempt), this.signal);
      } finally {
        clearTimeout(timer);
        this.signal.removeEventListener('abort', onRunAbort);
      }
    }
  }

  private async commit(field: string, record: string, hasCompensation: boolean): Promise<void> {
    const result = await this.store.commitStep(this.shard, this.id, this.token, field, record, hasCompensation);
    if (!result.ok) {
      this.lose(result.reason);
      throw this.signal.reason;
    }
    this.steps.set(field, parseStoredStep(field, `${Date.now()}|${record}`));
  }

  // ---- durable sleep: the run parks once no step of it is in flight ----

  private sleep(name: string, spec: string): Promise<void> {
    this.assertExecuting();
    const field = this.nextField(name);
    const stored = this.steps.get(field);
    if (stored) {
      if (stored.record.k !== 'sleep') throw this.nonDeterminism(stored, 'sleep');
      const until = stored.record.u ?? 0;
      if (stored.record.s === 'succeeded' || until <= this.serverNow()) return Promise.resolve();
      this.pendingSleeps.push({ field, until });
    } else {
      this.pendingSleeps.push({ field, spec });
    }
    this.considerParking();
    return new Promise<void>(() => undefined); // settled by parking: the handler is abandoned and replayed later
  }

  private considerParking(): void {
    if (this.parkScheduled || this.state !== 'executing' || this.pendingSleeps.length === 0 || this.inFlight > 0) return;
    this.parkScheduled = true;
    // Let the handler's other branches (Promise.all) reach their own waits before deciding.
    setImmediate(() => {
      this.parkScheduled = false;
      if (this.state !== 'executing' || this.inFlight > 0 || this.pendingSleeps.length === 0) return;
      void this.park();
    });
  }

  private async park(): Promise<void> {
    this.state = 'parking';
    const sleeps = this.pendingSleeps;
    this.pendingSleeps = [];
    const recorded = sleeps.filter((s) => s.until !== undefined).map((s) => s.until!);
    const wakeAt = recorded.length > 0 ? Math.min(...recorded) : undefined;
    const fresh = sleeps.filter((s) => s.spec !== undefined).map((s) => ({ field: s.field, spec: s.spec! }));
    const waitingFor = JSON.stringify({ sleep: sleeps.map((s) => parseStoredName(s.field)) });
    try {
      const result = await this.store.park(this.shard, this.id, this.token, waitingFor, wakeAt, fresh);
      if (!result.ok) return this.lose(result.reason);
      this.state = 'stopped';
      this.controller.abort(new Suspended('parked'));
      this.resolveStop('parked');
    } catch (error) {
      this.logger.error(`Could not park the run: ${describe(error)}`);
      this.lose('PARK_FAILED');
    }
  }

  /** The Redis server's time now, estimated from the claim's server time and local elapsed time. */
  private serverNow(): number {
    return this.claim.serverNow + (Date.now() - this.claimedAtLocal);
  }

  // ---- failure, retries, finalization ----

  private async fail(thrown: unknown): Promise<ExecutionOutcome> {
    if (this.state !== 'executing') return this.stopped;
    const error = this.fatal ?? thrown;
    const final =
      error instanceof NonRetriableError ||
      error instanceof NonDeterminismError ||
      error instanceof PayloadError ||
      this.claim.attempt >= this.claim.maxAttempts;
    if (!final) {
      const delayMs = backoffDelay(this.options.backoff, this.claim.attempt);
      this.logger.warn(`Attempt ${this.claim.attempt}/${this.claim.maxAttempts} failed (${describe(error)}); retrying in ${delayMs} ms`);
      const result = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'retry', { delayMs });
      return this.afterTransition(result, 'retrying');
    }
    return this.finalize('failed', error instanceof Error ? error : new WorkflowError(describe(error)));
  }

  /** The run failed for good (or was canceled): compensations in reverse order, @OnFailure, final state. */
  private async finalize(target: 'failed' | 'canceled', error: Error): Promise<ExecutionOutcome> {
    const hasCompensations = this.compensations.length > 0;
    const onFailure = this.definition.onFailure;
    if (hasCompensations || onFailure) {
      if (!this.claim.finalizing) {
        const marked = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), 'finalize', {
          compensating: hasCompensations,
        });
        if (!marked.ok) return this.afterTransition(marked, target);
      }
      for (const compensation of [...this.compensations].reverse()) {
        try {
          await compensation.run();
        } catch (compensationError) {
          this.logger.error(`Compensation of step '${compensation.name}' failed: ${describe(compensationError)}`);
        }
      }
      if (onFailure) {
        const failureContext: OnFailureContext<unknown> = {
          input: safeParse(this.claim.input),
          run: this.runMeta(),
          error,
          signal: this.signal,
          logger: this.logger,
        };
        try {
          await (this.definition.instance as unknown as Record<string, (c: OnFailureContext) => unknown>)[onFailure](failureContext);
        } catch (hookError) {
          this.logger.error(`@OnFailure ${onFailure}() threw: ${describe(hookError)}`);
        }
      }
      if (this.state !== 'executing') return this.stopped;
    }
    this.logger.error(`Run ${target}: ${describe(error)}`);
    const retentionMs = target === 'failed' ? this.settings.retentionMs.failed : this.settings.retentionMs.canceled;
    const result = await this.store.fail(this.shard, this.id, this.token, encodeErrorJson(error), target, { retentionMs });
    return this.afterTransition(result, target);
  }

  private afterTransition(result: TransitionResult, outcome: ExecutionOutcome): ExecutionOutcome {
    if (result.ok) {
      this.state = 'stopped';
      return outcome;
    }
    this.lose(result.reason);
    return 'lost';
  }

  private lose(reason: string): void {
    const error = reason.startsWith('NOT_EXECUTING:canceled')
      ? new CanceledError('The run was canceled while this worker executed it.')
      : new LeaseLostError(`This worker no longer holds run ${this.id} (${reason}); another worker's results stand.`);
    this.logger.warn(error.message);
    this.abort(error);
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
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('A step needs a non-empty name.');
    const occurrence = this.occurrences.get(name) ?? 0;
    this.occurrences.set(name, occurrence + 1);
    return stepField(name, occurrence);
  }

  private assertExecuting(): void {
    if (this.state === 'executing') return;
    if (this.state === 'parking') throw new Suspended('parking');
    throw this.signal.reason ?? new LeaseLostError(`This worker no longer holds run ${this.id}.`);
  }

  private assertSameStep<T>(stored: StoredStep, request: StepRequest<T>): void {
    if (stored.record.k !== request.kind || (stored.record.f ?? '') !== (request.fingerprint ?? '')) {
      throw this.nonDeterminism(stored, request.fingerprint ?? request.kind);
    }
  }

  private nonDeterminism(stored: StoredStep, asked: string): NonDeterminismError {
    return (this.fatal ??= new NonDeterminismError(
      `Step '${stored.name}' (occurrence ${stored.occurrence}) was recorded as ${stored.record.f ?? stored.record.k} but the code now asks for ${asked}. ` +
        'The workflow code changed under a run in flight: keep old code paths for old runs, or use a new step name.',
    ));
  }
}

function storedResult<T>(stored: StoredStep): T {
  return (stored.record.r === undefined ? undefined : structuredClone(stored.record.r)) as T;
}

function parseStoredName(field: string): string {
  return field.slice(field.indexOf(':') + 1);
}

function safeParse(text: string): unknown {
  try {
    return fromPayload(text);
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
