import { Logger } from '@nestjs/common';
import { CanceledError, LeaseLostError, type NonDeterminismError, type NonRetriableError } from '../errors/workflow.errors.js';
import type { WorkflowDefinition } from '../discovery/workflow-definition.js';
import { scheduledAtFromKey } from '../scheduler/missed-tick.js';
import { triggerId } from '../scheduler/trigger-id.js';
import type { RunMeta, WorkflowHandler } from '../interfaces/workflow.interfaces.js';
import type { ExecutionObserver, RunObservation } from '../observability/workflow-observer.js';
import type { ShardRef } from '../redis/keys.js';
import type { ClaimRequest, ClaimedRun, WorkflowStore } from '../redis/workflow-store.js';
import type { ChildLauncher } from './child-launcher.js';
import { Graphs } from './graphs.js';
import type { DurableExecution, StepRequest } from './execution-scope.js';
import { Children } from './children.js';
import { CONTINUED_TWICE, ContinueAsNewSignal } from './continue-as-new.js';
import { toPayload } from './payload.js';
import { EndOfRecords } from './suspension.js';
import { InvalidArgumentError } from '../errors/workflow.errors.js';
import { CommitBatcher } from './commit-batcher.js';
import { Journal } from './journal.js';
import { Parking } from './parking.js';
import { publishValue } from './published-values.js';
import { Races } from './races.js';
import { Saga } from './saga.js';
import { Patches } from './patches.js';
import { StepAttempts } from './step-attempts.js';
import { PARKING } from './suspension.js';
import { Waits } from './waits.js';
import { RedisSteps } from './redis-steps.js';
import type { FaultInjector } from './fault-injector.js';

export type ExecutionOutcome = 'succeeded' | 'retrying' | 'failed' | 'canceled' | 'parked' | 'lost';

/**
 * How a worker keeps parked executions warm (ExecutionCache): a park of a run with at least `minRecords`
 * step records asks Redis to route its wake to `workerId` for `windowMs`, and keeps the handler suspended
 * for a warm resume.
 */
export interface KeepsWarm {
  windowMs: number;
  workerId: string;
  minRecords: number;
}

export interface ExecutionSettings {
  workerId: string;
  maxPayloadBytes: number;
  retentionMs: { succeeded: number; failed: number; canceled: number };
  children: ChildLauncher;
  shardRoot: string;
  /** Where the run's Redis steps may write: keys outside the engine's prefix, in the run's slot on a Cluster. */
  redisSteps?: { prefix: string; cluster: boolean };
  /** The lease the claim granted, in ms (renewed by the worker's heartbeats, see leaseRenewed). */
  leaseMs?: number;
  /** Most step records a run may have (every kind counts); past it the step fails the run. */
  maxStepsPerRun?: number;
  /** Asked as the run completes: a claim to make in the same call, for the slot the run frees. */
  refill?: () => SlotRefill | undefined;
  /** Lifecycle hooks and tracing spans at run and step boundaries. */
  observer?: ExecutionObserver;
  /** This deployment's version (for messages). */
  version?: string;
  /** The worker keeps parked executions warm (ExecutionCache). */
  keepsWarm?: KeepsWarm;
  /** The module's `faults` option (tests only). */
  faults?: FaultInjector;
}

/** A claim made together with a completion; `settle` gets the runs it claimed (none if the call failed). */
export interface SlotRefill {
  request: ClaimRequest;
  settle(runs: ClaimedRun[]): void;
}

export type ExecutableDefinition = WorkflowDefinition & { instance: WorkflowHandler };

/**
 * What the parts of one execution share: the claim and where it runs, the execution's state, its parts
 * (each made once per execution and given this object: no closure per call), its lease, and how it stops
 * (lost, canceled, parked), which every pending call of the handler observes. The lifecycle that drives
 * it is RunExecution (run-execution.ts); its members are read by the parts in lib/execution only.
 *
 * untilAborted runs once per step: a plain promise, no async (see step-attempts.ts).
 */
export abstract class ExecutionState implements DurableExecution {
  readonly id: string;
  /** The claim's fencing token; a warm resume (RunExecution.resume) takes the new claim's. */
  token: string;
  /** The counter part of the token ('<fence>:<claim id>'), handed to steps (StepContext.fencingToken). */
  get fencingToken(): string {
    const colon = this.token.indexOf(':');
    return colon < 0 ? this.token : this.token.slice(0, colon);
  }
  readonly journal: Journal;
  readonly attempts: StepAttempts;
  readonly commits: CommitBatcher;
  readonly parking: Parking;
  state: 'executing' | 'parking' | 'stopped' = 'executing';
  /** 'collect': a replay after a takeover of a failing run, to find the compensations to run. */
  mode: 'execute' | 'collect' = 'execute';
  /** A non-determinism found during replay fails the run even if the handler caught it. */
  fatal?: NonDeterminismError | NonRetriableError;
  /** The new run's input (JSON text) once the handler called ctx.continueAsNew. */
  continuation?: string;
  /** The handler returned or threw (a run whose handler settled does not park). */
  handlerSettled = false;
  /** A durable call of the handler was refused because the run was parking or stopped (see assertExecuting). */
  refusedWhileParked = false;
  observation?: RunObservation;
  input: unknown;
  /** Why the execution stopped (lease lost, canceled, timed out, parked); set once. */
  protected abortReason?: Error;
  private waitsPart?: Waits;
  private patchesPart?: Patches;
  private childrenPart?: Children;
  private racesPart?: Races;
  private graphsPart?: Graphs;
  /** A node of a graph: its dependencies' outputs (ctx.dependencies), read before the handler runs. */
  dependencies?: Record<string, unknown>;
  private redisStepsPart?: RedisSteps;
  protected sagaPart?: Saga;
  private loggerInstance?: Logger;
  /** Created when someone asks for the signal: most runs never do, and a controller per run costs. */
  private controller?: AbortController;
  /** Steps racing the run's end (see untilAborted). */
  private readonly abortWaiters = new Set<(reason: Error) => void>();
  private claimedAtLocal = Date.now();
  /** Local time by which the lease surely still holds (the claim or the last heartbeat, sent before this, plus leaseMs). */
  private leaseHeldUntil: number;
  private lastStartedAt = 0;
  /** How the execution stopped, once it has; `stopped` is made when someone waits for it (most runs never). */
  private stopOutcome?: ExecutionOutcome;
  private stoppedPromise?: Promise<ExecutionOutcome>;
  private resolveStopped?: (outcome: ExecutionOutcome) => void;

  constructor(
    public claim: ClaimedRun,
    readonly shard: ShardRef,
    readonly definition: ExecutableDefinition,
    readonly store: WorkflowStore,
    readonly settings: ExecutionSettings,
  ) {
    this.id = claim.id;
    this.token = claim.token;
    this.leaseHeldUntil = this.claimedAtLocal + (settings.leaseMs ?? 0);
    this.journal = new Journal(this);
    this.attempts = new StepAttempts(this);
    this.commits = new CommitBatcher(this);
    this.parking = new Parking(this);
  }

  /** Runs the workflow's handler from the top (the Saga replays it to collect compensations). */
  abstract runHandler(): Promise<unknown>;

  /** A @Step method called from the handler (see DurableExecution). */
  runStep<T>(request: StepRequest<T>): Promise<T> {
    return this.attempts.runStep(request);
  }

  /** ctx.patched() and ctx.deprecatePatch() (see patches.ts), made on the first. */
  get patches(): Patches {
    return (this.patchesPart ??= new Patches(this));
  }

  patched(patchId: string): boolean {
    return this.patches.patched(patchId);
  }

  deprecatePatch(patchId: string): void {
    this.patches.deprecatePatch(patchId);
  }

  /** Sleeps and event waits, made on the first. */
  get waits(): Waits {
    return (this.waitsPart ??= new Waits(this));
  }

  /** ctx.setEvent (published-values.ts). */
  setEvent(key: string, value: unknown): Promise<void> {
    return publishValue(this, key, value);
  }

  /** waitForAny's races, made on the first. */
  get races(): Races {
    return (this.racesPart ??= new Races(this));
  }

  /** Child workflows, made on the first. */
  get children(): Children {
    return (this.childrenPart ??= new Children(this));
  }

  /** Graphs of child runs, made on the first. */
  get graphs(): Graphs {
    return (this.graphsPart ??= new Graphs(this));
  }

  /** Redis steps (ctx.step.redis), made on the first. */
  get redisSteps(): RedisSteps {
    return (this.redisStepsPart ??= new RedisSteps(this));
  }

  /** Compensations and @OnFailure, made on the first compensated step or at the final failure. */
  get saga(): Saga {
    return (this.sagaPart ??= new Saga(this));
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

  runMeta(): RunMeta {
    return {
      id: this.id,
      workflow: this.claim.workflow,
      queue: this.shard.queue,
      attempt: this.claim.attempt,
      maxAttempts: this.claim.maxAttempts,
      ...(this.claim.parentId ? { parentId: this.claim.parentId } : {}),
      ...(this.scheduledAt ? { scheduledAt: this.scheduledAt } : {}),
    };
  }

  /** ctx.continueAsNew: recorded here, then the handler is unwound (see ContinueAsNewSignal). */
  continueAsNew(input: unknown): Promise<never> {
    try {
      this.assertExecuting();
      if (this.mode === 'collect') throw new EndOfRecords();
      if (this.continuation !== undefined) throw new InvalidArgumentError(CONTINUED_TWICE);
      this.continuation = toPayload(input ?? null, `The input of ctx.continueAsNew in workflow '${this.workflow}'`, this.settings.maxPayloadBytes) ?? 'null';
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.reject(new ContinueAsNewSignal());
  }

  /** The cron tick that started the run (RunMeta.scheduledAt): read before the first execution of a run of a
   *  workflow with cron triggers (null: read, none), from its idempotency key; other runs never read it. */
  scheduledAt?: string | null;

  get needsScheduledAt(): boolean {
    return this.scheduledAt === undefined && this.definition.options.cron.length > 0;
  }

  readScheduledAt(): Promise<void> {
    return this.store.readRuns([{ shard: this.shard, id: this.id }], ['ik']).then(([fields]) => {
      const ids = this.definition.options.cron.map((trigger) => triggerId(this.definition.name, trigger));
      this.scheduledAt = scheduledAtFromKey(fields?.ik, ids) ?? null;
    });
  }

  // ---- the lease and the clocks ----

  /** A heartbeat sent at `sentAt` (local ms) extended the lease. */
  leaseRenewed(sentAt: number): void {
    this.leaseHeldUntil = Math.max(this.leaseHeldUntil, sentAt + (this.settings.leaseMs ?? 0));
  }

  /** At least half the lease is left by the local clock: a step that ends later (the process stalled, a
   *  heartbeat failed) commits before the handler sees its result, so a lost lease surfaces at that step. */
  leaseSurelyHeld(): boolean {
    const leaseMs = this.settings.leaseMs ?? 0;
    return Date.now() + leaseMs / 2 < this.leaseHeldUntil;
  }

  /**
   * A step's start time (display only): never the same as the previous step's of this execution, so that
   * steps sort in the order they started even when several start within one millisecond.
   */
  nextStartTime(): number {
    this.lastStartedAt = Math.max(Date.now(), this.lastStartedAt + 1);
    return this.lastStartedAt;
  }

  /** The Redis server's time now, estimated from the claim's server time and local elapsed time. */
  serverNow(): number {
    return this.claim.serverNow + (Date.now() - this.claimedAtLocal);
  }

  // ---- how an execution stops ----

  assertExecuting(): void {
    if (this.state === 'executing') return;
    // The handler went on (a branch that waited on something else than a durable call) while the run
    // parked: it saw a refusal that a replay would not see, so it cannot be resumed warm.
    this.refusedWhileParked = true;
    if (this.state === 'parking') throw PARKING;
    throw this.stopReason();
  }

  stopReason(): Error {
    return this.abortReason ?? new LeaseLostError(`This worker no longer holds run ${this.id}.`);
  }

  /** Settles as `work` does, or rejects as soon as the execution stops (the run's signal, without one). */
  untilAborted<T>(work: Promise<T>): Promise<T> {
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
  get stopped(): Promise<ExecutionOutcome> {
    return (this.stoppedPromise ??=
      this.stopOutcome !== undefined ? Promise.resolve(this.stopOutcome) : new Promise((resolve) => (this.resolveStopped = resolve)));
  }

  /** Stops the execution: the lease was lost, or the run canceled or timed out. Steps in flight see their signal aborted. */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.signalAbort(reason);
    this.state = 'stopped';
    this.resolveStop('lost');
  }

  /** Redis refused a call of this execution's (`reason`): another worker holds the run, or it was canceled. */
  lose(reason: string): void {
    const error = reason.startsWith('NOT_EXECUTING:canceled') || reason.startsWith('NOT_EXECUTING:compensating')
      ? new CanceledError('The run was canceled while this worker executed it.')
      : new LeaseLostError(`This worker no longer holds run ${this.id} (${reason}); another worker's results stand.`);
    this.logger.warn(error.message);
    this.abort(error);
  }

  /** The run parked (see Parking): the handler's pending calls end with `reason`. A handler kept warm
   *  keeps its signal: nothing is in flight at a park, and a warm resume goes on with the same handler. */
  parked(reason: Error): void {
    this.state = 'stopped';
    this.signalAbort(reason, this.parking.resumable);
    this.resolveStop('parked');
  }

  /**
   * A parked execution kept warm takes over the run again under `claim`, a claim of the same run by this
   * worker with no claim in between (RunExecution.resume): a new token, lease and server time; the
   * journal, the suspended handler and everything it holds are kept.
   */
  protected rebind(claim: ClaimedRun): void {
    this.claim = claim;
    this.token = claim.token;
    this.claimedAtLocal = Date.now();
    this.leaseHeldUntil = this.claimedAtLocal + (this.settings.leaseMs ?? 0);
    this.state = 'executing';
    this.abortReason = undefined;
    this.stopOutcome = undefined;
    this.stoppedPromise = undefined;
    this.resolveStopped = undefined;
  }

  /** A warm execution that will not be resumed (evicted, or the run went on without it). */
  discard(): void {
    this.parking.forgetSuspended();
    this.controller?.abort(this.abortReason);
  }

  private signalAbort(reason: Error, keepSignal = false): void {
    this.abortReason = reason;
    if (!keepSignal) this.controller?.abort(reason);
    for (const reject of this.abortWaiters) reject(reason);
    this.abortWaiters.clear();
  }

  private resolveStop(outcome: ExecutionOutcome): void {
    if (this.stopOutcome !== undefined) return;
    this.stopOutcome = outcome;
    this.resolveStopped?.(outcome);
  }
}
