import type { LoggerService } from '@nestjs/common';
import type { WorkflowHandler } from './workflow.interfaces.js';
import type { FaultInjection, InjectedFault } from './fault-injection.interfaces.js';

/** The options and result of runInline (lib/execution/inline-runner.ts), for unit tests of a workflow. */

/**
 * Replaces a step by its name: a value is the step's result; a function is called instead of the step
 * with the @Step method's arguments, ctx.step.run's StepContext, or the child workflow's input.
 * A function that throws fails the step as the real one would (retries and compensations apply).
 */
export type StepOverride = unknown | ((...args: any[]) => unknown);

export interface InlineOptions<I = unknown> {
  input: I;
  /** By step name: @Step() methods, ctx.step.run, ctx.step.runWorkflow / emitWorkflow. */
  stepOverrides?: Record<string, StepOverride>;
  /**
   * Answers ctx.step.waitForEvent, by `'event:key'` (checked first) or `'event'`. A missing event resolves
   * with null, as a wait that timed out would. A function receives the wait's options.
   */
  eventOverrides?: Record<string, unknown>;
  /**
   * Handlers of child workflows that runWorkflow/emitWorkflow name (by class or name), e.g.
   * `[moduleRef.get(ShippingWorkflow)]`. A child class without constructor parameters needs none.
   */
  workflows?: WorkflowHandler<any, any>[];
  /**
   * Patch ids (ctx.patched) to answer false, as for a run in flight that recorded its steps before the
   * patch was deployed: tests the old path. Default: none (every patch is taken, as by a new run).
   */
  unpatched?: string[];
  /** Default: the workflow's maxAttempts. 1 executes a single attempt. */
  maxAttempts?: number;
  /** Default 'inline-<uuid>'. Step idempotency keys are `<runId>:<occurrence>:<name>`. */
  runId?: string;
  /** `ctx.run.scheduledAt`, as a cron tick at this time would give it. Default: none. */
  scheduledAt?: Date;
  /** Default 1 MiB, as the module's maxPayloadBytes. */
  maxPayloadBytes?: number;
  /** Default: a Nest Logger named after the run. */
  logger?: LoggerService;
  /** Crashes, duplicate deliveries and lost leases at the steps you name, as the engine would meet them
   *  (see FaultInjection): to prove that the workflow's steps are idempotent. A named step that never
   *  executes is logged as a warning. */
  faults?: FaultInjection;
}

/** As in getRunSteps(): child-emit is emitWorkflow, child is runWorkflow, patch a ctx.patched() marker, any is waitForAny. */
export type InlineStepKind = 'step' | 'method' | 'sleep' | 'event' | 'child' | 'child-emit' | 'graph' | 'redis' | 'patch' | 'any';

export interface InlineStep {
  name: string;
  occurrence: number;
  kind: InlineStepKind;
  /** 'compensated': the step succeeded and its compensation was run (even if it threw) after the run failed. */
  status: 'running' | 'succeeded' | 'failed' | 'compensated';
  /** Executions of the step over all run attempts (a replayed result does not count). */
  attempts: number;
  result?: unknown;
  error?: Error;
  /** Set when the step's compensation threw on each of its tries. */
  compensationError?: Error;
  /** Whether an override answered the step. */
  overridden: boolean;
  /** For runWorkflow / emitWorkflow executed inline: the child run's own result. */
  child?: InlineResult;
}

export interface InlineResult<O = unknown> {
  runId: string;
  workflow: string;
  succeeded: boolean;
  output?: O;
  error?: Error;
  /** Run-level attempts made. */
  attempts: number;
  /** One entry per (name, occurrence), in the order the steps were first started. */
  steps: InlineStep[];
  /** The values the run published with ctx.setEvent: the latest of each key. */
  events: Record<string, unknown>;
  /** Set when the @OnFailure method threw. */
  onFailureError?: Error;
  /** How many times the handler called ctx.continueAsNew: each started a new execution with an empty
   *  history; `output`, `attempts` and `steps` are the last execution's. */
  continuedAsNew?: number;
  /** With `faults`: the faults that fired in this run, in order. */
  injectedFaults?: InjectedFault[];
}
