import type { LoggerService } from '@nestjs/common';
import type { RunMeta, StepContext, WorkflowContext, WorkflowStepApi } from '../interfaces/workflow.interfaces.js';

/**
 * The contexts handed to user code (a handler's `ctx`, a step's `step`).
 *
 * Classes with getters on the prototype, never object literals with getters: V8 gives each literal whose
 * getters are fresh closures a hidden class of its own, and a hidden class lives in old space. Its
 * getters then keep the run they close over reachable for every minor GC until the next full one, so
 * every run of a burst was promoted to old space: 10,000 runs parked in a sleep grew the worker by 40 MB
 * (bench/NOTES.md, "Fourth round").
 */

/** Where a context reads its signal and logger from when user code asks for them (both are made lazily). */
export interface ContextSource {
  readonly signal: AbortSignal;
  readonly logger: LoggerService;
  setEvent(key: string, value: unknown): Promise<void>;
  patched(patchId: string): boolean;
  deprecatePatch(patchId: string): void;
  continueAsNew(input: unknown): Promise<never>;
}

export class HandlerContext<I> implements WorkflowContext<I> {
  readonly #source: ContextSource;

  constructor(
    source: ContextSource,
    readonly input: I,
    readonly run: RunMeta,
    readonly step: WorkflowStepApi,
    readonly dependencies?: Record<string, unknown>,
  ) {
    this.#source = source;
  }

  get signal(): AbortSignal {
    return this.#source.signal;
  }

  get logger(): LoggerService {
    return this.#source.logger;
  }

  setEvent(key: string, value: unknown): Promise<void> {
    return this.#source.setEvent(key, value);
  }

  patched(patchId: string): boolean {
    return this.#source.patched(patchId);
  }

  deprecatePatch(patchId: string): void {
    this.#source.deprecatePatch(patchId);
  }

  continueAsNew(input: I): Promise<never> {
    return this.#source.continueAsNew(input);
  }
}

export class StepCallContext implements StepContext {
  readonly #source: { readonly signal: AbortSignal };

  /** `source`: the step's own AbortController when it has a timeout, else the run's execution. */
  constructor(
    readonly idempotencyKey: string,
    readonly attempt: number,
    source: { readonly signal: AbortSignal },
    readonly fencingToken: string,
  ) {
    this.#source = source;
  }

  get signal(): AbortSignal {
    return this.#source.signal;
  }
}
