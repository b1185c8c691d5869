import { progressText } from './progress.js';
import { InlineRunCore } from './inline-run-core.js';
import { describeError } from '../errors/error-codec.js';
import { Logger } from '@nestjs/common';
import { readWorkflowMetadata } from '../discovery/workflow-definition.js';
import { ChildWorkflowError, NonRetriableError, PayloadError, TimeoutError, WorkflowConfigurationError, WorkflowError, InvalidArgumentError, LeaseLostError } from '../errors/workflow.errors.js';
import { checkPublishedKey, MAX_PUBLISHED_VALUE_BYTES, PUBLISHED_STEP_PREFIX } from './published-values.js';
import { checkWaits } from './races.js';
import { FaultInjector, InjectedFaultStop } from './fault-injector.js';
import { RedisTxBuilder } from './redis-tx.js';
import type { RedisCompensation, RedisStepOptions, RedisTx } from '../interfaces/redis-step.interfaces.js';
import type { FaultKind } from '../interfaces/fault-injection.interfaces.js';
import { mayRetryStep } from './retry-policy.js';
import { CONTINUED_TWICE, ContinueAsNewSignal } from './continue-as-new.js';
import { checkDuration, checkEvent, checkInstant, checkStepOptions, quoteName } from './call-limits.js';
import type { ChildOutcome, ChildRunOptions, InputData, RaceResult, RaceWait, StepContext, WaitForEventOptions, WorkflowClass, WorkflowContext, WorkflowHandler } from '../interfaces/workflow.interfaces.js';
import { raceAbort } from './backoff.js';
import { checkPatchId } from './patches.js';
import { executionScope, type StepRequest } from './execution-scope.js';
import { prepareInput } from './input-validation.js';
import { fromPayload, toPayload } from './payload.js';
import type { InlineOptions, InlineResult, InlineStep } from '../interfaces/inline.interfaces.js';

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

/** The step kinds a handler executed by runInline calls (ctx.step.*, @Step methods, ctx.setEvent …). */
class InlineRun extends InlineRunCore {
  protected async executeAttempt(inputText: string): Promise<unknown> {
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
      setProgress: (value) => checked(() => progressText(value), () => {
        this.progress.push(JSON.parse(progressText(value)));
        return Promise.resolve();
      }),
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
  protected async withFaults(
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

  protected instant(name: string, kind: 'sleep'): Promise<void> {
    return this.durable(name, kind, undefined, false, async (_field, entry) => {
      entry.attempts += 1;
      return undefined;
    }) as Promise<void>;
  }

  protected waitForEvent(name: string, opts: WaitForEventOptions): Promise<unknown> {
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
  protected setEvent(key: string, value: unknown): Promise<void> {
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
  protected settledChild(name: string, workflow: string | WorkflowClass, input: unknown): Promise<ChildOutcome> {
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
  protected waitForAny(name: string, waits: readonly RaceWait[]): Promise<RaceResult> {
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
  protected redisStep(name: string, build: (tx: RedisTx) => void, opts: RedisStepOptions = {}): Promise<unknown[]> {
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

  protected child(name: string, kind: 'child' | 'child-emit', workflow: string | WorkflowClass, input: unknown): Promise<unknown> {
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
  protected graph(name: string): Promise<unknown> {
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

  protected resolveChild(stepName: string, workflow: string | WorkflowClass): WorkflowHandler {
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
}

const NO_FAULTS: FaultKind[] = [];

/** Runs `check` (which throws on a bad argument), then `call`; a bad argument becomes a rejection. */
function checked<T>(check: () => unknown, call: () => Promise<T>): Promise<T> {
  try {
    check();
  } catch (error) {
    return Promise.reject(error);
  }
  return call();
}
