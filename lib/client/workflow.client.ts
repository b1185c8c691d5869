import { Injectable } from '@nestjs/common';
import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { InvalidArgumentError, RunNotFoundError, WorkflowError } from '../errors/workflow.errors.js';
import type { ChildLauncher, ChildStart, GraphNodeRun } from '../execution/child-launcher.js';
import { checkDuration, MAX_TIMER_MS } from '../execution/call-limits.js';
import type {
  CancelRunsFilter,
  GraphInfo,
  EmitOptions,
  RetryRunsFilter,
  ListRunsParams,
  RunEvent,
  RunHandle,
  RunInfo,
  RunPage,
  SendEventOptions,
  ScheduleInfo,
  StepInfo,
  Throughput,
  WorkflowMeta,
  WorkflowStats,
} from '../interfaces/run.interfaces.js';
import { RunInspector } from './run-inspector.js';
import type { InputData, WorkflowClass, WorkflowInput, WorkflowOutput } from '../interfaces/workflow.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import type { EmitArgs } from '../redis/workflow-store.js';
import { EmitTargets, type WorkflowRef } from './emit-targets.js';
import { PublishedReader } from './published-reader.js';
import { readRunGraphs } from './graph-inspector.js';
import { ResultWaiter } from './result-waiter.js';
import { BulkActions } from './bulk-actions.js';
import { PausedWorkflows } from './paused-workflows.js';
import { liveRunOf } from './run-chain.js';
import { RunRecovery, type ForkRunOptions, type RetryRunOptions } from './run-recovery.js';
import { RunActions } from './run-actions.js';
import { RunEmitter } from './run-emitter.js';
import { ScheduleActions } from './schedule-actions.js';
import { ThroughputReader } from './throughput-reader.js';
import { mergeStepEvents, toRunEvents, toRunInfo, toStepInfos } from './run-info.mapper.js';

type InputOf<W> = W extends WorkflowClass ? InputData<WorkflowInput<W>> : unknown;
type OutputOf<W, O> = W extends WorkflowClass ? WorkflowOutput<W> : O;

/**
 * Starts runs, waits for their results and inspects them. Inject it anywhere in the app. The work is done
 * by its parts: RunEmitter (new runs), RunActions (cancel, retry, events), RunInspector and ResultWaiter.
 */
@Injectable()
export class WorkflowClient implements ChildLauncher {
  private readonly waiter: ResultWaiter;
  private readonly inspector: RunInspector;
  private readonly targets: EmitTargets;
  private readonly emitter: RunEmitter;
  private readonly actions: RunActions;
  private readonly bulk: BulkActions;
  private readonly paused: PausedWorkflows;
  private readonly published: PublishedReader;
  private readonly recovery: RunRecovery;
  private readonly schedules: ScheduleActions;
  private readonly throughput: ThroughputReader;

  constructor(
    private readonly redis: WorkflowRedis,
    registry: WorkflowRegistry,
  ) {
    this.waiter = new ResultWaiter(redis, (id) => this.getRun(id), (id, shard) => liveRunOf(redis.store, shard, id).then((live) => live?.id));
    this.inspector = new RunInspector(redis, registry);
    this.targets = new EmitTargets(redis, registry);
    this.emitter = new RunEmitter(redis, registry, this.targets, this.inspector);
    this.actions = new RunActions(redis, registry);
    this.bulk = new BulkActions(redis, this.inspector, this.actions);
    this.paused = new PausedWorkflows(redis, this.inspector);
    this.published = new PublishedReader(redis);
    this.recovery = new RunRecovery(redis);
    this.schedules = new ScheduleActions(redis, this.inspector, (workflow, input, idempotencyKey) => this.emit(workflow, input, { idempotencyKey }));
    this.throughput = new ThroughputReader(redis, this.inspector);
  }

  /** Starts a run. With an idempotencyKey already used for this workflow, returns the existing run's handle. */
  emit<W extends WorkflowRef, O = unknown>(workflow: W, input: InputOf<W>, opts: EmitOptions = {}): Promise<RunHandle<OutputOf<W, O>>> {
    return this.emitter.create(workflow, input, opts).then(({ runId }) => this.handle<OutputOf<W, O>>(runId));
  }

  /** For a running parent: starts a child under a run id derived from the parent's step. */
  startChild(start: ChildStart): Promise<{ id: string; workflow: string; joined: boolean }> {
    return this.emitter
      .create(start.workflow, start.input, {
        idempotencyKey: start.idempotencyKey,
        queue: start.queue,
        runAt: start.runAt,
        parent: start,
      })
      .then(({ runId, workflow, joined }) => ({ id: runId, workflow, joined }));
  }

  childInShard(start: ChildStart, parentShard: ShardRef): { id: string; workflow: string; emit: EmitArgs } | undefined {
    return this.emitter.childInShard(start, parentShard);
  }

  graphNodeRun(start: ChildStart, parentShard: ShardRef): Promise<GraphNodeRun> {
    return this.emitter.graphNodeRun(start, parentShard);
  }

  childRunId(start: ChildStart): string {
    const target = this.targets.forChild(start);
    const shard = this.targets.pickShard(start.queue ?? target.options.queue, target, start.idempotencyKey, start.seed);
    return this.redis.keys.derivedRunId(start.parentId, start.seed, shard);
  }

  workflowName(workflow: string | WorkflowClass): string {
    return this.targets.workflowName(workflow);
  }

  /** Starts a run and waits for its output (rejects with its error). */
  async run<W extends WorkflowRef, O = unknown>(
    workflow: W,
    input: InputOf<W>,
    opts: EmitOptions & { timeoutMs?: number } = {},
  ): Promise<OutputOf<W, O>> {
    if (opts?.timeoutMs !== undefined) checkDuration(opts.timeoutMs, 'run(): timeoutMs', 0, MAX_TIMER_MS);
    const handle = await this.emit<W, O>(workflow, input, opts);
    return handle.result({ timeoutMs: opts.timeoutMs });
  }

  /**
   * A handle on a run by its id. It does not read Redis: for an id that names no retained run (unknown,
   * expired, or not an id of this package: the ids `getRun` answers null for), `getState()` and
   * `result()` reject with RunNotFoundError and `cancel()` returns false.
   */
  handle<O = unknown>(runId: string): RunHandle<O> {
    return {
      id: runId,
      getState: async () => {
        const run = await this.getRun(runId);
        if (!run) throw new RunNotFoundError(runId);
        return run as RunInfo<unknown, O>;
      },
      result: async (opts = {}) => {
        if (opts?.timeoutMs !== undefined) checkDuration(opts.timeoutMs, 'result(): timeoutMs', 0, MAX_TIMER_MS);
        const shard = this.redis.keys.parseRunId(runId);
        if (!shard) throw new RunNotFoundError(runId);
        return this.waiter.wait<O>(runId, shard, opts?.timeoutMs);
      },
      cancel: (reason?: string) => this.cancelRun(runId, { reason }),
    };
  }

  async getRun(runId: string): Promise<RunInfo | null> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return null;
    await this.redis.ready();
    const hash = await this.redis.store.readRun(shard, runId);
    if (!hash) return null;
    const [info] = await this.paused.markDelayed([toRunInfo(runId, hash)]);
    return info;
  }

  /** The run started with this idempotency key (per workflow), if it is still retained. */
  async findRun(workflow: string | WorkflowClass, idempotencyKey: string): Promise<RunInfo | null> {
    const target = await this.targets.resolve(workflow);
    if (typeof idempotencyKey !== 'string' || idempotencyKey === '') throw new WorkflowError('findRun needs a non-empty idempotency key.');
    const shard = this.targets.pickShard(target.options.queue, target, idempotencyKey);
    const runId = await this.redis.store.readIdempotencyKey(shard, target.name, idempotencyKey);
    return runId ? this.getRun(runId) : null;
  }

  async getRunSteps(runId: string): Promise<StepInfo[]> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return [];
    await this.redis.ready();
    return toStepInfos(await this.redis.store.readSteps(shard, runId));
  }

  /** The graphs of child runs the run's steps started (ctx.step.graph): each node's status, what it comes after, its run. */
  async getRunGraphs(runId: string): Promise<GraphInfo[]> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return [];
    return readRunGraphs(this.redis.store, shard, await this.getRunSteps(runId));
  }

  /** The run's transitions and its steps' outcomes, in server-time order (see mergeStepEvents). */
  async getRunHistory(runId: string): Promise<RunEvent[]> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return [];
    await this.redis.ready();
    const [history, steps] = await Promise.all([this.redis.store.readHistory(shard, runId), this.redis.store.readSteps(shard, runId)]);
    return mergeStepEvents(toRunEvents(history), steps);
  }

  /** Runs newest first, filtered by workflow, status or parent; page with the returned cursor. */
  async listRuns(params: ListRunsParams = {}): Promise<RunPage> {
    const page = await this.inspector.listRuns(params);
    await this.paused.markDelayed(page.runs);
    return page;
  }

  /** The workflows workers registered (and this app's own), with the workers serving each and counts by status. */
  listWorkflows(): Promise<WorkflowMeta[]> {
    return this.inspector.listWorkflows();
  }

  getWorkflowMeta(name: string): Promise<WorkflowMeta | null> {
    return this.inspector.getWorkflowMeta(name);
  }

  /** Counts by status per workflow and queue, queue depth, oldest queued age, workers alive. */
  getStats(): Promise<WorkflowStats> {
    return this.inspector.getStats();
  }

  /**
   * Runs started, succeeded, failed and canceled per minute over the last `minutes` (1-60, default 60),
   * per workflow (or only `workflow`), as every instance sees them: the counts are kept in Redis.
   */
  getThroughput(opts: { minutes?: number; workflow?: string } = {}): Promise<Throughput> {
    return this.throughput.read(opts);
  }

  /** The cron triggers of registered workflows, with their state: paused, next and last tick. */
  listSchedules(): Promise<ScheduleInfo[]> {
    return this.schedules.list();
  }

  /** Stops a cron trigger on every instance: its ticks start no run until resumeSchedule. Returns false when it was paused already. */
  pauseSchedule(workflow: string, id: string): Promise<boolean> {
    return this.schedules.setPaused(workflow, id, true);
  }

  /** Lets a paused cron trigger tick again (from its next tick on; the ticks missed while paused are not started). */
  resumeSchedule(workflow: string, id: string): Promise<boolean> {
    return this.schedules.setPaused(workflow, id, false);
  }

  /** Starts a cron trigger's run now, once per call, paused or not, with `ctx.run.scheduledAt` the time of the call. */
  triggerSchedule(workflow: string, id: string): Promise<RunHandle> {
    return this.schedules.trigger(workflow, id);
  }

  /**
   * Cancels a run that has not finished, and its children. A run without compensations is canceled at
   * once; one with compensations goes through 'compensating' first. Returns false for a finished (or
   * unknown) run, and changes nothing then.
   */
  cancelRun(runId: string, opts: { reason?: string } = {}): Promise<boolean> {
    return this.actions.cancelRun(runId, opts);
  }

  /**
   * Cancels a canceled run's children a page at a time (lua/cancel.lua), from `page` on, and ends the cascade
   * once the last page is canceled. Also how a worker goes on with a cascade whose canceling process stopped.
   */
  cancelChildren(runId: string, page: { children: string[]; nextPage?: string }): Promise<void> {
    return this.actions.cancelChildren(runId, page);
  }

  /**
   * Sends a failed or canceled run back to the queue under the same id: attempt 1 again, its history
   * continued, its succeeded steps kept; compensated steps run again with a new idempotency key. With
   * `fromStep`, the records from that step on (in call order) are forgotten first, so that step and every
   * one after it run again on today's code, each with a new idempotency key.
   * `{ onVersion: 'current' }` moves the run to this app's version first (see RetryRunOptions): then a
   * run that has not finished is moved, not retried.
   */
  async retryRun(runId: string, opts: RetryRunOptions = {}): Promise<RunHandle> {
    if (opts?.fromStep !== undefined && opts.onVersion !== undefined) {
      throw new InvalidArgumentError("retryRun takes fromStep or onVersion, not both: move the run with { onVersion: 'current' } first, then retry it with { fromStep }.");
    }
    if (opts?.fromStep !== undefined) await this.recovery.retryFromStep(runId, opts.fromStep);
    else await this.actions.retryRun(runId, opts);
    return this.handle(runId);
  }

  /**
   * Retries a workflow's failed (or canceled) runs created in [since, until), oldest first, at most `limit`;
   * returns how many went back to the queue. Works in bounded batches; repeating it after a crash midway
   * retries only the runs the first call did not (a retried run is no longer failed).
   */
  retryRuns(filter: RetryRunsFilter): Promise<number> {
    return this.bulk.retryRuns(filter);
  }

  /**
   * Cancels a workflow's runs that have not finished (or those in `status`) created in [since, until), with
   * their children; returns how many were canceled. Bounded batches, safe to repeat, as retryRuns.
   */
  cancelRuns(filter: CancelRunsFilter): Promise<number> {
    return this.bulk.cancelRuns(filter);
  }

  /**
   * Pauses a workflow: emits are still accepted, and nothing of it is claimed (new runs, children, cron
   * ticks, woken runs, retries) until resumeWorkflow; runs executing now go on. Queued runs show
   * `delayedBy: 'paused'`. Safe to repeat.
   */
  pauseWorkflow(name: string): Promise<void> {
    return this.paused.pause(name);
  }

  /** Resumes a paused workflow: workers are told at once and claim its queued runs. Safe to repeat. */
  resumeWorkflow(name: string): Promise<void> {
    return this.paused.resume(name);
  }

  /**
   * A new run of the same workflow on today's code, with copies of the run's step records before
   * `fromStep` (default: before its first call that did not succeed), their compensations included; the
   * steps from there on are executed (with new idempotency keys: the fork has its own id). The run must
   * have finished. See docs/versioning.md, "Recovering a run failed by a bug".
   */
  async forkRun<O = unknown>(runId: string, opts: ForkRunOptions = {}): Promise<RunHandle<O>> {
    return this.handle<O>(await this.recovery.forkRun(runId, opts));
  }

  /**
   * Sends an event: it is kept for eventRetentionMs, and every run waiting for (event, key) is woken.
   * Returns how many runs it woke now.
   */
  sendEvent(event: string, payload?: unknown, opts: SendEventOptions = {}): Promise<number> {
    return this.actions.sendEvent(event, payload, opts);
  }

  /**
   * The value run `runId` published under `key` with ctx.setEvent, or undefined while it has published none.
   * With timeoutMs, waits up to that long for the key to be set (undefined when it is not, or when the run
   * ended without setting it). Rejects with RunNotFoundError for an unknown (or expired) run.
   */
  getEvent<T = unknown>(runId: string, key: string, opts: { timeoutMs?: number } = {}): Promise<T | undefined> {
    return this.published.getEvent(runId, key, opts) as Promise<T | undefined>;
  }
}
