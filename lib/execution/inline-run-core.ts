import { describeError } from '../errors/error-codec.js';
import { Logger, type LoggerService } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readWorkflowMetadata, resolveWorkflowOptions, type ResolvedWorkflowOptions } from '../discovery/workflow-definition.js';
import { NonDeterminismError, NonRetriableError, PayloadError, TimeoutError, WorkflowConfigurationError, WorkflowError, InvalidArgumentError } from '../errors/workflow.errors.js';
import { FaultInjector, InjectedFaultStop } from './fault-injector.js';
import { checkStepName } from './call-limits.js';
import type { OnFailureContext, RunMeta, WorkflowHandler } from '../interfaces/workflow.interfaces.js';
import { ON_FAILURE_METADATA, DEFAULTS } from '../workflow.constants.js';
import { checkPatchId, patchStepName } from './patches.js';
import { type DurableExecution, type StepRequest } from './execution-scope.js';
import { prepareInput } from './input-validation.js';
import { fromPayload, toPayload } from './payload.js';
import { stepField } from './step-record.js';
import type { InlineOptions, InlineResult, InlineStep, InlineStepKind } from '../interfaces/inline.interfaces.js';

/** What a step that succeeded left for later attempts (the engine keeps it in Redis). */
interface Memo {
  kind: InlineStepKind;
  fingerprint?: string;
  /** The result as stored (JSON text); undefined for a step that returned nothing. */
  text?: string;
}

/**
 * The lifecycle of a run executed by runInline: its attempts (retried at once, replayed from the results
 * kept in `memo`), continueAsNew, injected crashes, and the final failure's compensations and @OnFailure;
 * with the bookkeeping every step kind shares (`durable`). The step kinds the handler calls are InlineRun's
 * (inline-runner.ts).
 */
export abstract class InlineRunCore implements DurableExecution {
  /** Retries follow at once (see DurableExecution.skipsBackoff). */
  readonly skipsBackoff = true;
  protected readonly runId: string;
  protected readonly name: string;
  protected readonly options: ResolvedWorkflowOptions;
  protected readonly maxAttempts: number;
  protected readonly maxPayloadBytes: number;
  protected readonly logger: LoggerService;
  protected readonly controller = new AbortController();
  protected readonly entries = new Map<string, InlineStep>();
  /** ctx.setEvent's values (InlineResult.events), and the calls that published them (step fields). */
  protected readonly published: Record<string, unknown> = {};
  protected readonly publications = new Set<string>();
  /** The runs this inline run started, by id: what its waitForAny races. */
  protected readonly emittedRuns = new Map<string, InlineResult>();
  /** Results of steps that succeeded, kept across attempts as the engine keeps them in Redis. */
  protected readonly memo = new Map<string, Memo>();
  protected occurrences = new Map<string, number>();
  /** ctx.patched()'s answers of this attempt. */
  protected patchAnswers = new Map<string, boolean>();
  protected compensations: { field: string; run: () => unknown }[] = [];
  protected attempt = 0;
  /** ctx.setProgress's values, in order, as JSON round-tripped (what getRun would show). */
  protected readonly progress: unknown[] = [];
  protected fatal?: Error;
  /** The next execution's input (JSON text) once the handler called ctx.continueAsNew. */
  protected continuation?: string;
  protected continuations = 0;
  /** The validated input of the last attempt: what @OnFailure receives, as in the engine. */
  protected input?: unknown;
  /** An injected crash or lease loss stopped this execution: the handler's later calls see it too. */
  protected stopped?: InjectedFaultStop;

  constructor(
    protected readonly handler: WorkflowHandler,
    protected readonly inline: InlineOptions<unknown>,
    protected readonly parentId: string | undefined,
    protected readonly faults: FaultInjector | undefined,
  ) {
    if (!handler || typeof handler.execute !== 'function') {
      throw new WorkflowConfigurationError('runInline needs a workflow instance with an execute(ctx) method, e.g. moduleRef.get(CheckoutWorkflow).');
    }
    const meta = readWorkflowMetadata(handler.constructor) ?? { name: handler.constructor.name, options: {} };
    this.name = meta.name;
    this.options = resolveWorkflowOptions(meta);
    this.maxAttempts = inline.maxAttempts ?? this.options.maxAttempts;
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) {
      throw new WorkflowConfigurationError(`runInline maxAttempts must be a whole number of at least 1, got ${inline.maxAttempts}.`);
    }
    this.maxPayloadBytes = inline.maxPayloadBytes ?? DEFAULTS.maxPayloadBytes;
    this.runId = inline.runId ?? `inline-${randomUUID()}`;
    this.logger = inline.logger ?? new Logger(`Workflow ${this.name} ${this.runId}`);
  }

  /** One execution of the handler (InlineRun, inline-runner.ts: the step API the handler gets). */
  protected abstract executeAttempt(inputText: string): Promise<unknown>;

  /** A @Step method called from the handler (see DurableExecution). */
  abstract runStep<T>(request: StepRequest<T>): Promise<T>;

  async execute(): Promise<InlineResult> {
    // As emit() does: validate, store as JSON; then as the worker does: read back and validate again.
    const validated = await prepareInput(this.options.input, this.inline.input, this.options.validation);
    let inputText = toPayload(validated ?? null, `The input of workflow '${this.name}'`, this.maxPayloadBytes) ?? 'null';
    const deadline = this.options.timeoutMs > 0 ? setTimeout(() => this.timeOut(), this.options.timeoutMs) : undefined;
    try {
      for (;;) {
        this.attempt += 1;
        this.occurrences = new Map();
        this.patchAnswers = new Map();
        this.compensations = [];
        this.fatal = undefined;
        this.stopped = undefined;
        let error: unknown;
        try {
          const output = await this.executeAttempt(inputText);
          if (this.continuation === undefined) return this.result({ succeeded: true, output });
        } catch (thrown) {
          if (thrown instanceof WorkflowConfigurationError) throw thrown;
          if (thrown instanceof InjectedFaultStop && !this.controller.signal.aborted) {
            // The engine executes the run again from its records, as after a crash: not a failed attempt.
            this.logger.warn(`${thrown.message}; executing the run again from its recorded steps`);
            this.attempt -= 1;
            continue;
          }
          error = thrown;
        }
        if (this.continuation !== undefined && !this.fatal) {
          // as the engine: a new execution with the given input and an empty history
          inputText = this.continuation;
          this.continuation = undefined;
          this.continuations += 1;
          this.attempt = 0;
          this.memo.clear();
          this.entries.clear();
          continue;
        }
        const final =
          error instanceof NonRetriableError ||
          error instanceof NonDeterminismError ||
          error instanceof PayloadError ||
          error instanceof InvalidArgumentError ||
          error instanceof TimeoutError ||
          this.controller.signal.aborted ||
          this.attempt >= this.maxAttempts;
        if (!final) {
          this.logger.warn(`Attempt ${this.attempt}/${this.maxAttempts} failed (${describeError(error)}); retrying at once (runInline skips backoff)`);
          continue;
        }
        const failure = error instanceof Error ? error : new WorkflowError(describeError(error));
        const onFailureError = await this.finalize(failure, inputText);
        return this.result({ succeeded: false, error: failure, onFailureError });
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  /**
   * Runs one durable step: a recorded success of an earlier attempt is returned as stored; otherwise
   * `execute` produces the JSON text that is recorded and returned parsed, so first run and replay agree.
   */
  protected async durable(
    name: string,
    kind: InlineStepKind,
    fingerprint: string | undefined,
    overridden: boolean,
    execute: (field: string, entry: InlineStep) => Promise<string | undefined>,
    compensate?: (result: unknown) => unknown,
  ): Promise<unknown> {
    if (this.controller.signal.aborted) throw this.controller.signal.reason;
    if (this.stopped) throw this.stopped;
    const field = this.nextField(name);
    const recorded = this.memo.get(field);
    if (recorded) {
      if (recorded.kind !== kind || (recorded.fingerprint ?? '') !== (fingerprint ?? '')) {
        throw (this.fatal ??= new NonDeterminismError(
          `Step '${name}' (occurrence ${field.slice(0, field.indexOf(':'))}) was recorded as ${recorded.fingerprint ?? recorded.kind} but the code now asks for ${fingerprint ?? kind}. ` +
            'The workflow code changed under a run in flight: keep old code paths for old runs, or use a new step name.',
        ));
      }
      const value = fromPayload(recorded.text);
      if (compensate) this.compensations.push({ field, run: () => compensate(value) });
      return value;
    }
    let entry = this.entries.get(field);
    if (entry) {
      entry.status = 'running';
      delete entry.error;
    } else {
      entry = { name, occurrence: this.occurrences.get(name)! - 1, kind, status: 'running', attempts: 0, overridden };
      this.entries.set(field, entry);
    }
    try {
      const text = await execute(field, entry);
      const value = fromPayload(text);
      this.memo.set(field, { kind, fingerprint, text });
      entry.status = 'succeeded';
      entry.result = fromPayload(text);
      if (compensate) this.compensations.push({ field, run: () => compensate(value) });
      return value;
    } catch (error) {
      if (error instanceof InjectedFaultStop) throw error;
      entry.status = 'failed';
      entry.error = error instanceof Error ? error : new WorkflowError(describeError(error));
      throw error;
    }
  }

  protected timeOut(): void {
    this.controller.abort(new TimeoutError(`Workflow '${this.name}' did not finish within its timeoutMs (${this.options.timeoutMs} ms).`));
  }

  /** Compensations in reverse order, then @OnFailure; their errors are logged, as the engine does. */
  protected async finalize(error: Error, inputText: string): Promise<Error | undefined> {
    for (const compensation of [...this.compensations].reverse()) {
      const entry = this.entries.get(compensation.field);
      for (let attempt = 1; attempt <= COMPENSATION_TRIES; attempt += 1) {
        try {
          await compensation.run();
          if (entry) delete entry.compensationError;
          break;
        } catch (compensationError) {
          this.logger.error(`Compensation of step '${compensation.field}' failed (try ${attempt}/${COMPENSATION_TRIES}): ${describeError(compensationError)}`);
          if (entry) entry.compensationError = compensationError instanceof Error ? compensationError : new WorkflowError(describeError(compensationError));
        }
      }
      if (entry) entry.status = 'compensated';
    }
    const method = findOnFailureMethod(this.handler);
    if (!method) return undefined;
    const failureContext: OnFailureContext<unknown> = {
      input: this.input ?? fromPayload(inputText),
      run: this.runMeta(),
      error,
      signal: this.controller.signal,
      logger: this.logger,
    };
    try {
      await (this.handler as unknown as Record<string, (c: OnFailureContext) => unknown>)[method](failureContext);
      return undefined;
    } catch (hookError) {
      this.logger.error(`@OnFailure ${method}() threw: ${describeError(hookError)}`);
      return hookError instanceof Error ? hookError : new WorkflowError(describeError(hookError));
    }
  }

  // ---- patches ----

  /**
   * As in the engine (patches.ts): true, with a marker kept for later attempts, unless the options say
   * that this run is a replay of records written without the patch (InlineOptions.unpatched).
   */
  protected patched(patchId: string): boolean {
    checkPatchId(patchId, 'ctx.patched()');
    const known = this.patchAnswers.get(patchId);
    if (known !== undefined) return known;
    const field = this.nextField(patchStepName(patchId));
    let answer = true;
    if (!this.memo.has(field)) {
      if (this.inline.unpatched?.includes(patchId)) answer = false;
      else {
        this.memo.set(field, { kind: 'patch' });
        this.entries.set(field, { name: patchStepName(patchId), occurrence: 0, kind: 'patch', status: 'succeeded', attempts: 1, overridden: false });
      }
    }
    this.patchAnswers.set(patchId, answer);
    return answer;
  }

  // ---- helpers ----

  protected overrideFor(name: string): { found: boolean; value?: any } {
    const overrides = this.inline.stepOverrides;
    return overrides && Object.prototype.hasOwnProperty.call(overrides, name) ? { found: true, value: overrides[name] } : { found: false };
  }

  protected nextField(name: string): string {
    checkStepName(name);
    const occurrence = this.occurrences.get(name) ?? 0;
    this.occurrences.set(name, occurrence + 1);
    return stepField(name, occurrence);
  }

  protected runMeta(): RunMeta {
    return {
      id: this.runId,
      workflow: this.name,
      queue: this.options.queue,
      attempt: this.attempt,
      maxAttempts: this.maxAttempts,
      ...(this.parentId ? { parentId: this.parentId } : {}),
      ...(this.inline.scheduledAt ? { scheduledAt: this.inline.scheduledAt.toISOString() } : {}),
    };
  }

  protected result(outcome: Pick<InlineResult, 'succeeded' | 'output' | 'error' | 'onFailureError'>): InlineResult {
    return {
      runId: this.runId,
      workflow: this.name,
      ...outcome,
      attempts: this.attempt,
      steps: [...this.entries.values()],
      ...(this.progress.length > 0 ? { progress: this.progress[this.progress.length - 1], progressUpdates: [...this.progress] } : {}),
      events: { ...this.published },
      ...(this.continuations > 0 ? { continuedAsNew: this.continuations } : {}),
      ...(this.faults ? { injectedFaults: this.faults.injected.filter((f) => f.runId === this.runId) } : {}),
    };
  }
}

/** As the engine: a compensation is tried this many times (inline without the pause between tries). */
const COMPENSATION_TRIES = 3;

function findOnFailureMethod(handler: object): string | undefined {
  for (let proto = Object.getPrototypeOf(handler); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key === 'constructor') continue;
      const descriptor = Object.getOwnPropertyDescriptor(proto, key);
      if (typeof descriptor?.value === 'function' && Reflect.getMetadata(ON_FAILURE_METADATA, descriptor.value)) return key;
    }
  }
  return undefined;
}
