import { describeError } from '../errors/error-codec.js';
import { Logger, type LoggerService } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readWorkflowMetadata, resolveWorkflowOptions, type ResolvedWorkflowOptions } from '../discovery/workflow-definition.js';
import {
  ChildWorkflowError,
  NonDeterminismError,
  NonRetriableError,
  PayloadError,
  TimeoutError,
  WorkflowConfigurationError,
  WorkflowError,
  InvalidArgumentError,
  LeaseLostError,
} from '../errors/workflow.errors.js';
import { checkPublishedKey, MAX_PUBLISHED_VALUE_BYTES, PUBLISHED_STEP_PREFIX } from './published-values.js';
import { checkWaits } from './races.js';
import { FaultInjector, InjectedFaultStop } from './fault-injector.js';
import { RedisTxBuilder } from './redis-tx.js';
import type { RedisCompensation, RedisStepOptions, RedisTx } from '../interfaces/redis-step.interfaces.js';
import type { FaultKind } from '../interfaces/fault-injection.interfaces.js';
import { mayRetryStep } from './retry-policy.js';
import { CONTINUED_TWICE, ContinueAsNewSignal } from './continue-as-new.js';
import { checkDuration, checkEvent, checkInstant, checkStepName, checkStepOptions, quoteName } from './call-limits.js';
import type {
  ChildOutcome,
  ChildRunOptions,
  InputData,
  OnFailureContext,
  RaceResult,
  RaceWait,
  RunMeta,
  StepContext,
  WaitForEventOptions,
  WorkflowClass,
  WorkflowContext,
  WorkflowHandler,
} from '../interfaces/workflow.interfaces.js';
import { ON_FAILURE_METADATA, DEFAULTS } from '../workflow.constants.js';
import { raceAbort } from './backoff.js';
import { checkPatchId, patchStepName } from './patches.js';
import { executionScope, type DurableExecution, type StepRequest } from './execution-scope.js';
import { prepareInput } from './input-validation.js';
import { fromPayload, toPayload } from './payload.js';
import { stepField } from './step-record.js';
import type { InlineOptions, InlineResult, InlineStep, InlineStepKind } from '../interfaces/inline.interfaces.js';

type HandlerInput<H> = H extends WorkflowHandler<infer I, any> ? I : unknown;
type HandlerOutput<H> = H extends WorkflowHandler<any, infer O> ? Awaited<O> : unknown;

/**
 * Executes a workflow handler in this process, with no Redis, the way the engine would: @Step() methods
 * and ctx.step.run are durable steps (JSON round-tripped results, retries, timeouts, compensations),
 * the run is retried up to maxAttempts with a replay that returns the results of the steps that
 * succeeded, and a run that fails for good runs its compensations in reverse order, then @OnFailure.
 * Sleeps return at once and retry backoff delays are skipped. Invalid input rejects the promise with
 * InputValidationError, as emit() would throw.
 */
export async function runInline<H extends WorkflowHandler<any, any>>(
  handler: H,
  options: InlineOptions<InputData<HandlerInput<H>>>,
): Promise<InlineResult<HandlerOutput<H>>> {
  const faults = options?.faults !== undefined ? new FaultInjector(options.faults, 'runInline option faults') : undefined;
  const result = await new InlineRun(handler, options, undefined, faults).execute();
  const unfired = faults?.unfired() ?? [];
  if (unfired.length > 0) {
    (options.logger ?? new Logger('runInline')).warn(
      `runInline faults named step(s) ${unfired.map((s) => `'${s}'`).join(', ')} that never executed: check the names (a @Step's name, or ctx.step.run's first argument).`,
    );
  }
  return result as InlineResult<HandlerOutput<H>>;
}

interface Memo {
  kind: InlineStepKind;
  fingerprint?: string;
  /** The result as stored (JSON text); undefined for a step that returned nothing. */
  text?: string;
}

class InlineRun implements DurableExecution {
  /** Retries follow at once (see DurableExecution.skipsBackoff). */
  readonly skipsBackoff = true;
  private readonly runId: string;
  private readonly name: string;
  private readonly options: ResolvedWorkflowOptions;
  private readonly maxAttempts: number;
  private readonly maxPayloadBytes: number;
  private readonly logger: LoggerService;
  private readonly controller = new AbortController();
  private readonly entries = new Map<string, InlineStep>();
  /** ctx.setEvent's values (InlineResult.events), and the calls that published them (step fields). */
  private readonly published: Record<string, unknown> = {};
  private readonly publications = new Set<string>();
  /** The runs this inline run started, by id: what its waitForAny races. */
  private readonly emittedRuns = new Map<string, InlineResult>();
  /** Results of steps that succeeded, kept across attempts as the engine keeps them in Redis. */
  private readonly memo = new Map<string, Memo>();
  private occurrences = new Map<string, number>();
  /** ctx.patched()'s answers of this attempt. */
  private patchAnswers = new Map<string, boolean>();
  private compensations: { field: string; run: () => unknown }[] = [];
  private attempt = 0;
  private fatal?: Error;
  /** The next execution's input (JSON text) once the handler called ctx.continueAsNew. */
  private continuation?: string;
  private continuations = 0;
  /** The validated input of the last attempt: what @OnFailure receives, as in the engine. */
  private input?: unknown;
  /** An injected crash or lease loss stopped this execution: the handler's later calls see it too. */
  private stopped?: InjectedFaultStop;

  constructor(
    private readonly handler: WorkflowHandler,
    private readonly inline: InlineOptions<unknown>,
    private readonly parentId: string | undefined,
    private readonly faults: FaultInjector | undefined,
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

  private async executeAttempt(inputText: string): Promise<unknown> {
    let input: unknown;
    try {
      input = this.input = await prepareInput(this.options.input, fromPayload(inputText), this.options.validation);
    } catch (error) {
      throw error instanceof WorkflowError ? new NonRetriableError(error.message, { cause: error }) : error;
    }
    const ctx: WorkflowContext<unknown> = {
      input,
      run: this.runMeta(),
      signal: this.controller.signal,
      logger: this.logger,
      setEvent: (key, value) => this.setEvent(key, value),
      step: {
        run: (name, fn, opts) => checked(() => checkStepOptions(opts, `step.run(${quoteName(name)})`), () => this.runStep({ name, kind: 'step', fn, ...opts })),
        sleep: (name, ms) => checked(() => checkDuration(ms, `sleep(${quoteName(name)})`), () => this.instant(name, 'sleep')),
        sleepUntil: (name, at) => checked(() => checkInstant(at, `sleepUntil(${quoteName(name)})`), () => this.instant(name, 'sleep')),
        runWorkflow: ((name: string, workflow: string | WorkflowClass, childInput: unknown, opts?: ChildRunOptions) =>
          opts?.onFailure === 'continue' ? this.settledChild(name, workflow, childInput) : this.child(name, 'child', workflow, childInput)) as never,
        emitWorkflow: (name, workflow, childInput) => this.child(name, 'child-emit', workflow, childInput) as Promise<string>,
        waitForEvent: (name, opts) => this.waitForEvent(name, opts) as Promise<any>,
        waitForAny: (name, waits) => this.waitForAny(name, waits) as Promise<any>,
        graph: (name) => this.graph(name) as Promise<any>,
        redis: (name, build, opts) => this.redisStep(name, build, opts),
      },
      patched: (patchId) => this.patched(patchId),
      deprecatePatch: (patchId) => void this.patched(checkPatchId(patchId, 'ctx.deprecatePatch()')),
      continueAsNew: (next) => {
        try {
          if (this.continuation !== undefined) throw new InvalidArgumentError(CONTINUED_TWICE);
          this.continuation = toPayload(next ?? null, `The input of ctx.continueAsNew in workflow '${this.name}'`, this.maxPayloadBytes) ?? 'null';
        } catch (error) {
          return Promise.reject(error);
        }
        return Promise.reject(new ContinueAsNewSignal());
      },
    };
    const work = executionScope.run({ execution: this }, () => Promise.resolve().then(() => this.handler.execute(ctx)));
    const output = await raceAbort(work, this.controller.signal);
    if (this.stopped) throw this.stopped;
    if (this.fatal) throw this.fatal;
    const text = toPayload(output, `The output of workflow '${this.name}'`, this.maxPayloadBytes) ?? 'null';
    return fromPayload(text);
  }

  // ---- steps ----

  async runStep<T>(request: StepRequest<T>): Promise<T> {
    const override = this.overrideFor(request.name);
    const fn: StepRequest<T>['fn'] = override.found
      ? (s) => (typeof override.value === 'function' ? override.value(...(request.kind === 'method' ? (request.args ?? []) : [s])) : override.value) as T
      : request.fn;
    return this.durable(request.name, request.kind, request.fingerprint, override.found, async (field, entry) => {
      const idempotencyKey = `${this.runId}:${field}`;
      const maxTries = 1 + Math.max(0, request.retries ?? 0);
      const faults = this.faults?.take(this.runId, request.name) ?? NO_FAULTS;
      for (let attempt = 1; ; attempt += 1) {
        entry.attempts += 1;
        const stepController = new AbortController();
        const onRunAbort = () => stepController.abort(this.controller.signal.reason);
        this.controller.signal.addEventListener('abort', onRunAbort, { once: true });
        const timer =
          request.timeoutMs !== undefined
            ? setTimeout(
                () => stepController.abort(new TimeoutError(`Step '${request.name}' timed out after ${request.timeoutMs} ms.`)),
                request.timeoutMs,
              )
            : undefined;
        const step: StepContext = { idempotencyKey, signal: stepController.signal, attempt: entry.attempts, fencingToken: '1' };
        const call = () => executionScope.run({ execution: this, step }, () => Promise.resolve().then(() => fn(step)));
        try {
          if (faults.length > 0 && attempt === 1) return await this.withFaults(faults, request.name, call, stepController, entry);
          const value = await raceAbort(call(), stepController.signal);
          return toPayload(value, `The result of step '${request.name}'`, this.maxPayloadBytes);
        } catch (error) {
          if (error instanceof InjectedFaultStop) throw (this.stopped = error);
          if (this.controller.signal.aborted || !mayRetryStep(request, error, attempt, attempt < maxTries)) throw error;
          this.logger.warn(`Step '${request.name}' attempt ${attempt} failed (${describeError(error)}); retrying at once (runInline skips backoff)`);
        } finally {
          clearTimeout(timer);
          this.controller.signal.removeEventListener('abort', onRunAbort);
        }
      }
    }, request.compensate as ((result: unknown) => unknown) | undefined) as Promise<T>;
  }

  /**
   * One execution of a step under injected faults, as the engine would meet them: a lease lost while the
   * function runs (its signal aborts, nothing is recorded), a duplicate delivery (the function runs twice,
   * the first result stands), a crash after the function returned (nothing is recorded). A stop is thrown
   * as InjectedFaultStop, which makes execute() run the handler again from the recorded steps.
   */
  private async withFaults(
    faults: FaultKind[],
    name: string,
    call: () => Promise<unknown>,
    stepController: AbortController,
    entry: InlineStep,
  ): Promise<string | undefined> {
    if (faults.includes('loseLeaseAt')) {
      const work = call();
      stepController.abort(new LeaseLostError(`Fault injection: this worker lost the lease of run ${this.runId} at step '${name}'.`));
      await work.catch(() => undefined);
      throw new InjectedFaultStop('loseLeaseAt', name);
    }
    const value = await raceAbort(call(), stepController.signal);
    if (faults.includes('repeatStep')) {
      entry.attempts += 1;
      await call().catch((error: unknown) => this.logger.warn(`Fault injection: the repeated execution of step '${name}' threw (${describeError(error)})`));
    }
    if (faults.includes('crashAfterStep')) throw new InjectedFaultStop('crashAfterStep', name);
    return toPayload(value, `The result of step '${name}'`, this.maxPayloadBytes);
  }

  /**
   * Runs one durable step: a recorded success of an earlier attempt is returned as stored; otherwise
   * `execute` produces the JSON text that is recorded and returned parsed, so first run and replay agree.
   */
  private async durable(
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

  private instant(name: string, kind: 'sleep'): Promise<void> {
    return this.durable(name, kind, undefined, false, async (_field, entry) => {
      entry.attempts += 1;
      return undefined;
    }) as Promise<void>;
  }

  private waitForEvent(name: string, opts: WaitForEventOptions): Promise<unknown> {
    if (!opts || typeof opts !== 'object') return Promise.reject(new InvalidArgumentError(`waitForEvent(${quoteName(name)}) needs { event: 'name' }.`));
    try {
      checkEvent(opts.event, opts.key, `waitForEvent(${quoteName(name)})`);
      if (opts.timeoutMs !== undefined) checkDuration(opts.timeoutMs, `waitForEvent(${quoteName(name)}): timeoutMs`);
    } catch (error) {
      return Promise.reject(error);
    }
    const events = this.inline.eventOverrides ?? {};
    const keyed = opts.key !== undefined ? `${opts.event}:${opts.key}` : undefined;
    const source = keyed !== undefined && keyed in events ? events[keyed] : events[opts.event];
    return this.durable(name, 'event', undefined, source !== undefined, async (_field, entry) => {
      entry.attempts += 1;
      const payload = typeof source === 'function' ? await (source as (o: WaitForEventOptions) => unknown)(opts) : source;
      return toPayload(payload ?? null, `The payload of event '${opts.event}'`, this.maxPayloadBytes);
    });
  }

  /** ctx.setEvent in memory: the latest value of each key ends up in InlineResult.events; a retried attempt
   *  that reaches a publication again publishes nothing, as a replay does. */
  private setEvent(key: string, value: unknown): Promise<void> {
    try {
      checkPublishedKey(key, 'ctx.setEvent()');
      const text = toPayload(value ?? null, `ctx.setEvent(${quoteName(key)})'s value`, this.maxPayloadBytes) ?? 'null';
      if (Buffer.byteLength(text, 'utf8') > MAX_PUBLISHED_VALUE_BYTES) {
        throw new PayloadError(`ctx.setEvent(${quoteName(key)})'s value is more than ${MAX_PUBLISHED_VALUE_BYTES} bytes (64 KiB). Publish a status or a summary.`);
      }
      const field = this.nextField(`${PUBLISHED_STEP_PREFIX}${key}`);
      if (!this.publications.has(field)) {
        this.publications.add(field);
        this.published[key] = fromPayload(text);
      }
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** runWorkflow with onFailure 'continue': the child's failure is an outcome, not a rejection. */
  private settledChild(name: string, workflow: string | WorkflowClass, input: unknown): Promise<ChildOutcome> {
    return this.child(name, 'child', workflow, input).then(
      (output) => ({ status: 'succeeded', output }),
      (error: unknown) => {
        if (error instanceof ChildWorkflowError) return { status: 'failed', error };
        throw error;
      },
    );
  }

  /**
   * waitForAny in memory: the first (in the array's order) of the events an eventOverride answers and the
   * runs emitted in this inline run; when none, the shortest sleep (sleeps do not wait inline). A race that
   * nothing can end inline is refused, as a run would wait for ever.
   */
  private waitForAny(name: string, waits: readonly RaceWait[]): Promise<RaceResult> {
    try {
      checkWaits(name, waits);
    } catch (error) {
      return Promise.reject(error);
    }
    const events = this.inline.eventOverrides ?? {};
    const text = this.durable(name, 'any', `any:${waits.map((w) => ('runId' in w ? 'r' : 'event' in w ? 'e' : 's')).join('')}`, false, async (_field, entry) => {
      entry.attempts += 1;
      for (const [index, wait] of waits.entries()) {
        if ('event' in wait) {
          const keyed = wait.key !== undefined ? `${wait.event}:${wait.key}` : undefined;
          const source = keyed !== undefined && keyed in events ? events[keyed] : events[wait.event];
          if (source === undefined) continue;
          const payload = typeof source === 'function' ? await (source as (o: unknown) => unknown)(wait) : source;
          return toPayload({ index, value: payload ?? null }, `The payload of event '${wait.event}'`, this.maxPayloadBytes);
        }
        if ('runId' in wait) {
          const run = this.emittedRuns.get(wait.runId);
          if (!run) continue;
          if (!run.succeeded) {
            throw new ChildWorkflowError(`Run ${run.runId} raced by waitForAny(${quoteName(name)}) failed: ${run.error?.message}`, { cause: run.error });
          }
          return toPayload({ index, value: run.output ?? null }, `The output of run ${run.runId}`, this.maxPayloadBytes);
        }
      }
      const sleeps = waits.flatMap((w, index) => ('sleepMs' in w ? [{ index, ms: w.sleepMs }] : []));
      if (sleeps.length === 0) throw new InvalidArgumentError(`waitForAny(${quoteName(name)}): nothing in this race can happen inline; give its event an eventOverride, or emit its run in this workflow.`);
      const shortest = sleeps.reduce((a, b) => (b.ms < a.ms ? b : a));
      return toPayload({ index: shortest.index, value: null }, 'a sleep', this.maxPayloadBytes);
    });
    return text as Promise<RaceResult>;
  }

  /**
   * ctx.step.redis with no Redis: the commands are checked as the engine checks them, and the step's
   * replies come from stepOverrides (a value, or a function given the queued `[command, key, ...args]`).
   */
  private redisStep(name: string, build: (tx: RedisTx) => void, opts: RedisStepOptions = {}): Promise<unknown[]> {
    const queue = (step: string, fn: RedisCompensation, replies: unknown[]) => {
      const builder = new RedisTxBuilder({ shardRoot: '{inline}', prefix: '\u0000', cluster: false, maxPayloadBytes: this.maxPayloadBytes, step });
      if (typeof fn !== 'function') throw new InvalidArgumentError(`step.redis('${name}') needs a function that queues commands on tx.`);
      fn(builder.tx, replies);
      builder.plan();
      return builder.queued();
    };
    let queued: string[][];
    try {
      queued = queue(name, build, []);
    } catch (error) {
      return Promise.reject(error);
    }
    // The compensation's commands are checked as the engine would; with no Redis they are not run.
    const compensate = opts?.compensate ? (replies: unknown) => void queue(`${name} (compensation)`, opts.compensate!, replies as unknown[]) : undefined;
    const override = this.overrideFor(name);
    return this.durable(name, 'redis', undefined, override.found, async (_field, entry) => {
      entry.attempts += 1;
      if (!override.found) {
        throw new WorkflowConfigurationError(
          `runInline has no Redis to run Redis step '${name}' on: give its replies in stepOverrides (e.g. { '${name}': [41] }, or a function of the queued commands), or test it with the module against a real Redis.`,
        );
      }
      const replies = typeof override.value === 'function' ? await override.value(queued) : override.value;
      return toPayload(replies, `The override of Redis step '${name}'`, this.maxPayloadBytes);
    }, compensate) as Promise<unknown[]>;
  }

  private child(name: string, kind: 'child' | 'child-emit', workflow: string | WorkflowClass, input: unknown): Promise<unknown> {
    const override = this.overrideFor(name);
    const childName = typeof workflow === 'string' ? workflow : (readWorkflowMetadata(workflow)?.name ?? workflow?.name);
    return this.durable(name, kind, `child:${childName}`, override.found, async (_field, entry) => {
      entry.attempts += 1;
      if (override.found) {
        const value = typeof override.value === 'function' ? await override.value(input) : override.value;
        return toPayload(value, `The override of step '${name}'`, this.maxPayloadBytes);
      }
      const handler = this.resolveChild(name, workflow);
      const result = await new InlineRun(handler, { ...this.inline, input, runId: undefined, maxAttempts: undefined, scheduledAt: undefined }, this.runId, this.faults).execute();
      entry.child = result;
      this.emittedRuns.set(result.runId, result);
      if (kind === 'child-emit') return toPayload(result.runId, 'run id', this.maxPayloadBytes);
      if (!result.succeeded) {
        const cause = result.error!;
        throw new ChildWorkflowError(`Child workflow '${name}' (run ${result.runId}) failed: ${cause.message}`, { cause });
      }
      return toPayload(result.output, `The output of child workflow '${result.workflow}'`, this.maxPayloadBytes);
    });
  }

  /** A graph needs Redis to start its nodes: inline, only its overridden value (the results by node name). */
  private graph(name: string): Promise<unknown> {
    const override = this.overrideFor(name);
    if (!override.found) {
      return Promise.reject(new InvalidArgumentError(`runInline does not run graphs: give step '${name}' its results in steps ({ '${name}': { node: { status: 'succeeded', output } } }).`));
    }
    return this.durable(name, 'graph', 'graph', true, async (_field, entry) => {
      entry.attempts += 1;
      const value = typeof override.value === 'function' ? await override.value() : override.value;
      return toPayload(value, `The override of step '${name}'`, this.maxPayloadBytes);
    });
  }

  private resolveChild(stepName: string, workflow: string | WorkflowClass): WorkflowHandler {
    const given = this.inline.workflows ?? [];
    if (typeof workflow === 'function') {
      const instance = given.find((h) => h instanceof workflow);
      if (instance) return instance;
      if (workflow.length === 0) return new workflow();
      throw new WorkflowConfigurationError(
        `runInline cannot create child workflow ${workflow.name} (step '${stepName}'): its constructor takes dependencies. ` +
          `Pass an instance in options.workflows (e.g. moduleRef.get(${workflow.name})) or override step '${stepName}' in stepOverrides.`,
      );
    }
    const instance = given.find((h) => readWorkflowMetadata(h.constructor)?.name === workflow);
    if (instance) return instance;
    throw new WorkflowConfigurationError(
      `runInline cannot run child workflow '${workflow}' (step '${stepName}'): it is named by a string. ` +
        `Pass its class instead, pass an instance in options.workflows, or override step '${stepName}' in stepOverrides.`,
    );
  }

  // ---- failure ----

  private timeOut(): void {
    this.controller.abort(new TimeoutError(`Workflow '${this.name}' did not finish within its timeoutMs (${this.options.timeoutMs} ms).`));
  }

  /** Compensations in reverse order, then @OnFailure; their errors are logged, as the engine does. */
  private async finalize(error: Error, inputText: string): Promise<Error | undefined> {
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
  private patched(patchId: string): boolean {
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

  private overrideFor(name: string): { found: boolean; value?: any } {
    const overrides = this.inline.stepOverrides;
    return overrides && Object.prototype.hasOwnProperty.call(overrides, name) ? { found: true, value: overrides[name] } : { found: false };
  }

  private nextField(name: string): string {
    checkStepName(name);
    const occurrence = this.occurrences.get(name) ?? 0;
    this.occurrences.set(name, occurrence + 1);
    return stepField(name, occurrence);
  }

  private runMeta(): RunMeta {
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

  private result(outcome: Pick<InlineResult, 'succeeded' | 'output' | 'error' | 'onFailureError'>): InlineResult {
    return {
      runId: this.runId,
      workflow: this.name,
      ...outcome,
      attempts: this.attempt,
      steps: [...this.entries.values()],
      events: { ...this.published },
      ...(this.continuations > 0 ? { continuedAsNew: this.continuations } : {}),
      ...(this.faults ? { injectedFaults: this.faults.injected.filter((f) => f.runId === this.runId) } : {}),
    };
  }
}

const NO_FAULTS: FaultKind[] = [];

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

/** Runs `check` (which throws on a bad argument), then `call`; a bad argument becomes a rejection. */
function checked<T>(check: () => unknown, call: () => Promise<T>): Promise<T> {
  try {
    check();
  } catch (error) {
    return Promise.reject(error);
  }
  return call();
}
