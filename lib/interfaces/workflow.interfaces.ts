import type { RedisStepOptions, RedisTx } from './redis-step.interfaces.js';
import type { LoggerService, Type } from '@nestjs/common';

export interface BackoffOptions {
  type: 'fixed' | 'exponential';
  delayMs: number;
  maxDelayMs?: number;
}

export interface CronTrigger {
  id?: string;
  expression: string;
  timezone?: string;
  input?: object;
  /** Ticks missed while no instance ran: 'none' (default) starts none of them; 'latest' starts the latest
   *  one, once across the fleet, when an instance mounts the trigger again. */
  catchUp?: 'none' | 'latest';
}

/**
 * How the input DTO is validated (class-validator options). Set on the workflow, so that every producer
 * that emits the class and every worker that executes it validate alike. Defaults: both true.
 */
export interface InputValidationOptions {
  /** Strip properties without a class-validator decorator. Default true. */
  whitelist?: boolean;
  /** Refuse (instead of stripping) properties without a class-validator decorator. Default true. */
  forbidNonWhitelisted?: boolean;
}

export interface WorkflowOptions {
  /** Default 'default'. */
  queue?: string;
  /** class-validator DTO: emit() validates the input against it; ctx.input is an instance of it. */
  input?: Type<object>;
  /** class-validator options for `input`. Default { whitelist: true, forbidNonWhitelisted: true }. */
  validation?: InputValidationOptions;
  /** Run-level attempts, default 3. */
  maxAttempts?: number;
  backoff?: BackoffOptions;
  /** Runs of this workflow executing at once across all workers. Default unlimited. */
  maxConcurrency?: number;
  cron?: CronTrigger[];
  /** Whole-run deadline; the run fails with TimeoutError. */
  timeoutMs?: number;
  // Key functions take `any`: a function typed with the workflow's own input must be assignable here.
  /** At most `limit` runs per key execute at once, across all workers (README "Flow control"). */
  concurrency?: { key: (input: any) => string; limit: number };
  /** At most `limit` runs start per `periodMs` (per key when `key` is given), in any window of that length. */
  rateLimit?: { key?: (input: any) => string; limit: number; periodMs: number };
  /** Emits of one key within `periodMs` of each other collapse into one run, which starts `periodMs`
   *  after the last of them (at most `maxWaitMs` after the first) with the latest input. */
  debounce?: { key: (input: any) => string; periodMs: number; maxWaitMs?: number };
  /** Round-robin between the concurrency key's (else the rateLimit key's) runs: one key's backlog cannot
   *  starve the others. */
  fairness?: boolean;
  /**
   * How runs in flight meet changed code (docs/versioning.md). 'patch' (default): any worker executes a
   * run, and code that changes a run's steps guards the change with ctx.patched(id). 'pinned': a run is
   * claimed only by workers whose WorkflowModuleOptions.version equals the run's.
   */
  versioning?: 'pinned' | 'patch';
}

/** The flow-control options of a workflow, checked (see resolveWorkflowOptions). */
export interface FlowControl {
  /** The key function: concurrency's, else rateLimit's (undefined: one key for the whole workflow). */
  key?: (input: unknown) => string;
  concurrency: number; // 0 = none
  rateLimit: number; // 0 = none
  ratePeriodMs: number;
  fairness: boolean;
  /** false when the workflow has no concurrency, rateLimit or fairness (only debounce). */
  limited: boolean;
  debounce?: { key: (input: unknown) => string; periodMs: number; maxWaitMs?: number };
}

export interface StepOptions {
  name?: string;
  timeoutMs?: number;
  retries?: number;
  backoff?: BackoffOptions;
  /** Asked after a failed attempt that has retries left: false ends the step with that error. */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
  /** A method of the same class, called with the step's result and then the step's arguments when the
   *  run's saga unwinds (the run failed for good or was canceled). */
  compensate?: string;
}

export interface StepContext {
  /** run id + step id + generation: stable across retries and replays of that step. */
  idempotencyKey: string;
  signal: AbortSignal;
  attempt: number;
  /**
   * The run's fencing token: a decimal number as a string that grows with every claim of the run (a
   * worker that takes the run over after a lost lease has a greater one). Hand it to a store that refuses
   * writes carrying a token older than the newest it has seen, so a stalled worker cannot overwrite the
   * new owner's work. Compare as numbers (`BigInt(token)`), not as strings.
   */
  fencingToken: string;
}

export interface RunStepOptions<T> {
  timeoutMs?: number;
  retries?: number;
  backoff?: BackoffOptions;
  compensate?: (result: T) => unknown;
  /** Asked after a failed attempt that has retries left: false ends the step with that error. */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
}

export interface RunMeta {
  id: string;
  workflow: string;
  queue: string;
  attempt: number;
  maxAttempts: number;
  parentId?: string;
  /** The scheduled time (ISO) of the cron tick that started the run, or the time triggerSchedule was called. */
  scheduledAt?: string;
}

export interface ChildRunOptions {
  /**
   * The child's deadline, from its start: past it the child run fails with TimeoutError (its compensations
   * and @OnFailure run) and runWorkflow rejects with TimeoutError. With the child workflow's own timeoutMs,
   * the earlier deadline stands.
   */
  timeoutMs?: number;
  /**
   * true: the child also gets the parent's deadline (its workflow's timeoutMs, counted from the parent's first
   * claim) when that is earlier, so a child never outlives its parent's. Default false: a child's deadline is
   * its own (timeoutMs, its workflow's timeoutMs), whatever the parent's.
   */
  inheritDeadline?: boolean;
  idempotencyKey?: string;
  queue?: string;
  /**
   * What a failure of this child does to the parent: 'fail' (the default) rejects runWorkflow at once, and
   * a `Promise.all` over children wakes the parent as soon as one fails; 'continue' resolves runWorkflow with
   * a ChildOutcome instead, and the parent wakes once, when all of its children have finished, as
   * `Promise.allSettled` would.
   */
  onFailure?: 'fail' | 'continue';
}

/** How a child run started with `onFailure: 'continue'` ended (as a GraphNodeResult names it). */
export type ChildOutcome<O = unknown> = { status: 'succeeded'; output: O } | { status: 'failed'; error: Error };

export interface ChildEmitOptions {
  idempotencyKey?: string;
  runAt?: Date;
  queue?: string;
}

export interface WaitForEventOptions {
  event: string;
  key?: string;
  timeoutMs?: number;
}

/** One wait of ctx.step.waitForAny: a run (an id emitWorkflow returned), an event, or a sleep. */
export type RaceWait = { runId: string } | { event: string; key?: string } | { sleepMs: number };

/** What ctx.step.waitForAny resolves with: which wait happened first, and its value. */
export interface RaceResult<T = unknown> {
  index: number;
  value: T;
}

/** A node of ctx.step.graph: a child run started once every node named in `after` has succeeded. */
export interface GraphNode {
  workflow: string | WorkflowClass;
  input?: unknown;
  /** Names of nodes of the same graph that must succeed before this one starts. */
  after?: string[];
}

export interface GraphOptions {
  /** 'fail' (default): graph() rejects at the first failed node, as Promise.all; 'continue': the nodes after a
   *  failed one are skipped, the others run, and graph() resolves with every node's result. */
  onNodeFailure?: 'fail' | 'continue';
}

/** A node's outcome in the result of ctx.step.graph. */
export interface GraphNodeResult<O = unknown> {
  status: 'succeeded' | 'failed' | 'canceled' | 'skipped';
  output?: O;
  error?: Error;
  /** The node's run (absent for a skipped node: it never had one). */
  runId?: string;
}

export interface WorkflowStepApi {
  run<T>(name: string, fn: (s: StepContext) => Promise<T> | T, opts?: RunStepOptions<T>): Promise<T>;
  /** Durable: the run is parked, no worker slot is held. */
  sleep(name: string, ms: number): Promise<void>;
  sleepUntil(name: string, at: Date): Promise<void>;
  /** As below, with onFailure 'continue': resolves with how the child ended, never rejects for its failure. */
  runWorkflow<W extends string | WorkflowClass, O = unknown>(
    name: string,
    workflow: W,
    input: W extends WorkflowClass ? InputData<WorkflowInput<W>> : unknown,
    opts: ChildRunOptions & { onFailure: 'continue' },
  ): Promise<ChildOutcome<W extends WorkflowClass ? WorkflowOutput<W> : O>>;
  /** Starts a child run (once, even across replays), parks until it finishes and returns its output. */
  runWorkflow<W extends string | WorkflowClass, O = unknown>(
    name: string,
    workflow: W,
    input: W extends WorkflowClass ? InputData<WorkflowInput<W>> : unknown,
    opts?: ChildRunOptions,
  ): Promise<W extends WorkflowClass ? WorkflowOutput<W> : O>;
  /** Starts a child run (once, even across replays) and returns its id at once. */
  emitWorkflow<W extends string | WorkflowClass>(
    name: string,
    workflow: W,
    input: W extends WorkflowClass ? InputData<WorkflowInput<W>> : unknown,
    opts?: ChildEmitOptions,
  ): Promise<string>;
  /** Parks until an event (event, key) is sent; null when timeoutMs passes first. */
  waitForEvent<T = unknown>(name: string, opts: WaitForEventOptions): Promise<T | null>;
  /**
   * Parks until the first of `waits` happens (a run from emitWorkflow finishes, an event is sent, a sleep
   * ends) and resolves with its index and value (the run's output, the event's payload, null for a sleep);
   * rejects with ChildWorkflowError when the first is a run that failed. Every replay resolves the same way.
   */
  waitForAny<T = unknown>(name: string, waits: readonly RaceWait[]): Promise<RaceResult<T>>;
  /**
   * Runs a graph of child runs (Gush's `after:`): each node starts as soon as every node it comes after has
   * succeeded, started in Redis by the call that ended its last dependency. The run parks once, and resumes
   * with every node's result (see GraphOptions for failures).
   */
  graph<O = unknown>(name: string, nodes: Record<string, GraphNode>, opts?: GraphOptions): Promise<Record<string, GraphNodeResult<O>>>;
  /** A step whose effect is on this Redis: the commands `build` queues on `tx` run in the call that
   *  commits the step, exactly once across crashes, retries and replays. Resolves with their replies. */
  redis(name: string, build: (tx: RedisTx) => void, opts?: RedisStepOptions): Promise<unknown[]>;
}

export interface WorkflowContext<I = unknown> {
  input: I;
  run: RunMeta;
  /** Aborted when the run is canceled or its lease is lost. */
  signal: AbortSignal;
  /** Nest logger scoped to the run. */
  logger: LoggerService;
  step: WorkflowStepApi;
  /**
   * Stores `value` (JSON, at most 4 KiB) as the run's latest progress: RunInfo.progress in getRun and
   * listRuns, a bar in the dashboard when it is a number from 0 to 1 or an object with such a `fraction`,
   * the CLI's `runs show`. Not a step: nothing is replayed, and each call is one Redis call, so call it per
   * batch or every few seconds, not per item of a tight loop. Rejects with LeaseLostError (or
   * CanceledError) when this worker no longer holds the run.
   */
  setProgress(value: unknown): Promise<void>;
  /**
   * Publishes a value of this run under `key` (a status, an intermediate result; JSON, at most 64 KiB) for
   * client.getEvent to read or wait for. Recorded: a replay that reaches this call again publishes nothing.
   * The latest value of a key stands; values are deleted with the run by retention.
   */
  setEvent(key: string, value: unknown): Promise<void>;
  /**
   * Guards a change of the workflow's steps for runs in flight (docs/versioning.md): true when the run
   * reaches this point for the first time (a marker is recorded) or recorded the marker here before;
   * false on a replay of a run whose records were written without it (keep the old path for it).
   * Decided from the run's records alone, once per id and execution.
   */
  patched(patchId: string): boolean;
  /**
   * The patch's old path is gone (no run in flight needs it): records the marker as patched() does, for
   * workers that still run code calling patched(patchId), and returns nothing. Remove the call once no
   * such worker is left.
   */
  deprecatePatch(patchId: string): void;
  /**
   * Ends this execution as `succeeded` (RunInfo.continuedAs names the new run) and starts the same
   * workflow with `input` and an empty history, in one atomic call: for a loop that would otherwise grow
   * one run without bound. Never resolves: the handler stops here (code after it does not run, and what it
   * returns is ignored). A handle of the first run, and a parent waiting for it, get the chain's final
   * outcome. See docs/versioning.md.
   */
  continueAsNew(input: I): Promise<never>;
  /** In a node of a graph (ctx.step.graph): the outputs of the nodes it comes after, by node name. */
  dependencies?: Record<string, unknown>;
}

export interface OnFailureContext<I = unknown> {
  input: I;
  run: RunMeta;
  error: Error;
  signal: AbortSignal;
  logger: LoggerService;
}

export interface WorkflowHandler<I = unknown, O = unknown> {
  execute(ctx: WorkflowContext<I>): Promise<O> | O;
}

/** A class decorated with @Workflow(). */
export type WorkflowClass<I = any, O = any> = Type<WorkflowHandler<I, O>>;

/**
 * What a producer passes as the input of type I: its data properties, without methods. A DTO class's
 * methods exist only on the instance the handler receives, which is built from this data.
 */
export type InputData<I> = I extends object
  ? I extends readonly unknown[]
    ? I
    : { [K in keyof I as I[K] extends (...args: any[]) => any ? never : K]: I[K] }
  : I;

export type WorkflowInput<W> = W extends Type<WorkflowHandler<infer I, any>> ? I : never;
export type WorkflowOutput<W> = W extends Type<WorkflowHandler<any, infer O>> ? Awaited<O> : never;
