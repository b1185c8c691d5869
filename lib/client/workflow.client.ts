import { Injectable, Logger, type Type } from '@nestjs/common';
import { createHash, randomInt } from 'node:crypto';
import { ulid } from 'ulid';
import { readWorkflowMetadata, resolveWorkflowOptions, type ResolvedWorkflowOptions } from '../discovery/workflow-definition.js';
import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { encodeErrorJson, errorMessage } from '../errors/error-codec.js';
import { CanceledError, RunNotFoundError, UnknownWorkflowError, WorkflowError } from '../errors/workflow.errors.js';
import type { ChildLauncher, ChildStart } from '../execution/child-launcher.js';
import { checkDuration, checkEvent, checkInstant, MAX_TIMER_MS } from '../execution/call-limits.js';
import { prepareInput } from '../execution/input-validation.js';
import { assertPayloadDepth, toPayload } from '../execution/payload.js';
import type {
  EmitOptions,
  ListRunsParams,
  RunEvent,
  RunHandle,
  RunInfo,
  RunPage,
  StepInfo,
  WorkflowMeta,
  WorkflowStats,
} from '../interfaces/run.interfaces.js';
import { RunInspector } from './run-inspector.js';
import type { InputData, WorkflowClass, WorkflowInput, WorkflowOutput } from '../interfaces/workflow.interfaces.js';
import { assertKeySegment, type ShardRef } from '../redis/keys.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import type { EmitArgs, Handoff } from '../redis/workflow-store.js';
import { ResultWaiter } from './result-waiter.js';
import { UnservedWorkflows } from './unserved-workflows.js';
import { mergeStepEvents, toRunEvents, toRunInfo, toStepInfos } from './run-info.mapper.js';

/** What the client knows of a workflow it emits: from this app's providers, the class, or Redis. */
interface EmitTarget {
  name: string;
  options: Pick<ResolvedWorkflowOptions, 'queue' | 'maxConcurrency'> & Partial<ResolvedWorkflowOptions>;
  /** The workflow's class, when the app has it (a provider, or a class passed to emit). */
  type?: Type;
}

type WorkflowRef = string | WorkflowClass;
type InputOf<W> = W extends WorkflowClass ? InputData<WorkflowInput<W>> : unknown;
type OutputOf<W, O> = W extends WorkflowClass ? WorkflowOutput<W> : O;

/** Starts runs, waits for their results and inspects them. Inject it anywhere in the app. */
@Injectable()
export class WorkflowClient implements ChildLauncher {
  private readonly logger = new Logger('WorkflowClient');
  private readonly waiter: ResultWaiter;
  private readonly inspector: RunInspector;
  private readonly unserved: UnservedWorkflows;
  private readonly remoteTargets = new Map<string, EmitTarget>();
  private liveWorkflows?: { names: Set<string>; readAt: number };
  private liveRead?: Promise<{ names: Set<string>; readAt: number }>;

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
  ) {
    this.waiter = new ResultWaiter(redis, (id) => this.getRun(id));
    this.inspector = new RunInspector(redis, registry);
    this.unserved = new UnservedWorkflows(redis.store);
  }

  /** Starts a run. With an idempotencyKey already used for this workflow, returns the existing run's handle. */
  emit<W extends WorkflowRef, O = unknown>(workflow: W, input: InputOf<W>, opts: EmitOptions = {}): Promise<RunHandle<OutputOf<W, O>>> {
    return this.create(workflow, input, opts).then(({ runId }) => this.handle<OutputOf<W, O>>(runId));
  }

  /** For a running parent: starts a child under a run id derived from the parent's step. */
  startChild(start: ChildStart): Promise<{ id: string; workflow: string; joined: boolean }> {
    return this.create(start.workflow, start.input, {
      idempotencyKey: start.idempotencyKey,
      queue: start.queue,
      runAt: start.runAt,
      parent: start,
    }).then(({ runId, workflow, joined }) => ({ id: runId, workflow, joined }));
  }

  childInShard(start: ChildStart, parentShard: ShardRef): { id: string; workflow: string; emit: EmitArgs } | undefined {
    // An idempotency key may name another run (its id is known only once stored); an explicit queue or a
    // start time go through the checks of a plain emit.
    if (start.idempotencyKey !== undefined || start.queue !== undefined || start.runAt !== undefined || !start.parentField) return undefined;
    const target = this.knownTarget(start.workflow);
    if (!target || target.options.input || !this.redis.isReady) return undefined;
    const queue = target.options.queue;
    const shard = this.pickShard(queue, target, undefined, start.seed);
    if (shard.queue !== parentShard.queue || shard.partition !== parentShard.partition) return undefined;
    // The run's history says when no live worker serves its workflow: known at once only for this app's own.
    if (this.servedByLiveWorker(target.name) !== true) return undefined;
    const id = this.redis.keys.derivedRunId(start.parentId, start.seed, shard);
    return { id, workflow: target.name, emit: this.emitArgs(target, queue, id, this.inputText(target, start.input), { parent: start }, true) };
  }

  childRunId(start: ChildStart): string {
    const name = this.workflowName(start.workflow);
    const local = typeof start.workflow === 'string' ? this.registry.get(name) : this.registry.getByType(start.workflow as Type);
    const cached = local ?? this.remoteTargets.get(name);
    const target: EmitTarget = cached ?? { name, options: resolveWorkflowOptions(readWorkflowMetadata(start.workflow) ?? { name, options: {} }) };
    const shard = this.pickShard(start.queue ?? target.options.queue, target, start.idempotencyKey, start.seed);
    return this.redis.keys.derivedRunId(start.parentId, start.seed, shard);
  }

  workflowName(workflow: string | WorkflowClass): string {
    if (typeof workflow === 'string') return workflow;
    const meta = readWorkflowMetadata(workflow);
    if (!meta) throw new UnknownWorkflowError(`${(workflow as Type).name} is not a workflow: decorate it with @Workflow('name').`);
    return meta.name;
  }

  /**
   * Validates and stores a new run. Written with then() rather than async/await, and synchronous where the
   * target, the input and the connection need no waiting: every promise pays the AsyncLocalStorage hooks
   * that @Step() needs (bench/NOTES.md, sixth round), and a producer makes this call per run.
   */
  private create(workflow: WorkflowRef, input: unknown, opts: EmitOptions & { parent?: ChildStart }): Promise<{ runId: string; workflow: string; joined: boolean }> {
    try {
      const target = this.knownTarget(workflow);
      if (!target) return this.resolveTarget(workflow).then((resolved) => this.createFor(resolved, input, opts));
      return this.createFor(target, input, opts);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private createFor(target: EmitTarget, input: unknown, opts: EmitOptions & { parent?: ChildStart }): Promise<{ runId: string; workflow: string; joined: boolean }> {
    checkEmitOptions(opts);
    if (opts.queue !== undefined && opts.queue !== target.options.queue && target.options.maxConcurrency > 0) {
      throw new WorkflowError(
        `Workflow '${target.name}' has maxConcurrency, so all its runs live in queue '${target.options.queue}'; emit it without the queue option.`,
      );
    }
    if (!target.options.input) return this.insert(target, input, opts);
    // class-transformer walks the input recursively: a deep one would overflow the stack there.
    assertPayloadDepth(input, `The input of workflow '${target.name}'`);
    return prepareInput(target.options.input, input, target.options.validation).then((validated) => this.insert(target, validated, opts));
  }

  private insert(target: EmitTarget, validated: unknown, opts: EmitOptions & { parent?: ChildStart }): Promise<{ runId: string; workflow: string; joined: boolean }> {
    const text = this.inputText(target, validated);
    const queue = opts.queue ?? target.options.queue;
    const shard = this.pickShard(queue, target, opts.idempotencyKey, opts.parent?.seed);
    if (!this.redis.isReady) return this.redis.ready().then(() => this.writeRun(target, queue, shard, text, opts));
    return this.writeRun(target, queue, shard, text, opts);
  }

  /** `joined`: the idempotency key named a run of another parent's (or a client's), and a parent waits for it. */
  private writeRun(
    target: EmitTarget,
    queue: string,
    shard: ShardRef,
    text: string,
    opts: EmitOptions & { parent?: ChildStart },
  ): Promise<{ runId: string; workflow: string; joined: boolean }> {
    const parent = opts.parent;
    const runId = parent ? this.redis.keys.derivedRunId(parent.parentId, parent.seed, shard) : this.redis.keys.newRunId(shard);
    const written = (stored: { runId: string }) => ({ runId: stored.runId, workflow: target.name, joined: stored.runId !== runId });
    const emit = (served: boolean) =>
      this.redis.store.emit(shard, this.emitArgs(target, queue, runId, text, opts, served)).then((stored) =>
        // The run named by the key had finished: the waiting parent gets its outcome before it parks.
        stored.handoff ? this.redis.store.deliver(stored.handoff).then(() => written(stored)) : written(stored),
      );
    const write = (served: boolean) => {
      const registering = served ? undefined : this.unserved.emitting(target);
      return registering ? registering.then(() => emit(served)) : emit(served);
    };
    const served = this.servedByLiveWorker(target.name);
    return typeof served === 'boolean' ? write(served) : served.then(write);
  }

  private inputText(target: EmitTarget, input: unknown): string {
    return toPayload(input ?? null, `The input of workflow '${target.name}'`, this.redis.settings.maxPayloadBytes) ?? 'null';
  }

  /** What wf1_emit stores for a new run (`served`: a live worker serves its workflow, else its history says so). */
  private emitArgs(target: EmitTarget, queue: string, runId: string, text: string, opts: EmitOptions & { parent?: ChildStart }, served: boolean): EmitArgs {
    const parent = opts.parent;
    return {
      runId,
      workflow: target.name,
      queue,
      input: text,
      priority: opts.priority ?? 0,
      runAtMs: opts.runAt?.getTime(),
      delayMs: opts.delayMs,
      idempotencyKey: opts.idempotencyKey,
      parentId: parent?.parentId,
      parentField: parent?.parentField,
      parentRoot: parent?.parentField ? parent.parentRoot : undefined,
      note: served ? undefined : `No live worker serves workflow '${target.name}' yet; the run waits (using no attempts) until one that has it starts.`,
    };
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
    return hash ? toRunInfo(runId, hash) : null;
  }

  /** The run started with this idempotency key (per workflow), if it is still retained. */
  async findRun(workflow: string | WorkflowClass, idempotencyKey: string): Promise<RunInfo | null> {
    const target = await this.resolveTarget(workflow);
    if (typeof idempotencyKey !== 'string' || idempotencyKey === '') throw new WorkflowError('findRun needs a non-empty idempotency key.');
    const shard = this.pickShard(target.options.queue, target, idempotencyKey);
    const runId = await this.redis.store.readIdempotencyKey(shard, target.name, idempotencyKey);
    return runId ? this.getRun(runId) : null;
  }

  async getRunSteps(runId: string): Promise<StepInfo[]> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return [];
    await this.redis.ready();
    return toStepInfos(await this.redis.store.readSteps(shard, runId));
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
  listRuns(params: ListRunsParams = {}): Promise<RunPage> {
    return this.inspector.listRuns(params);
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
   * Cancels a run that has not finished, and its children. A run without compensations is canceled at
   * once; one with compensations goes through 'compensating' first. Returns false for a finished (or
   * unknown) run, and changes nothing then.
   */
  async cancelRun(runId: string, opts: { reason?: string } = {}): Promise<boolean> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return false;
    await this.redis.ready();
    const reason = opts.reason === undefined ? 'The run was canceled.' : `The run was canceled: ${String(opts.reason).slice(0, 1000)}`;
    const result = await this.redis.store.cancel(
      shard,
      runId,
      encodeErrorJson(new CanceledError(reason)),
      this.redis.settings.retentionMs.canceled,
      await this.hasOnFailure(runId, shard),
    );
    if (!result.canceled) return false;
    if (result.handoff) await this.redis.store.deliver(result.handoff);
    await this.cancelChildren(runId, result);
    return true;
  }

  /**
   * Cancels a canceled run's children a page at a time (lua/cancel.lua), from `page` on, and ends the cascade
   * once the last page is canceled. Also how a worker goes on with a cascade whose canceling process stopped.
   */
  async cancelChildren(runId: string, page: { children: string[]; nextPage?: string }): Promise<void> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return;
    for (;;) {
      await Promise.all(page.children.map((child) => this.cancelRun(child, { reason: `its parent ${runId} was canceled` })));
      // builds before 48 answer every child at once and keep no cascade
      if (page.nextPage === undefined) return;
      page = await this.redis.store.cancelMore(shard, runId, page.nextPage === '0' ? 'done' : page.nextPage);
    }
  }

  /**
   * Sends a failed or canceled run back to the queue under the same id: attempt 1 again, its history
   * continued, its succeeded steps kept; compensated steps run again with a new idempotency key.
   */
  async retryRun(runId: string): Promise<RunHandle> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) throw new RunNotFoundError(runId);
    await this.redis.ready();
    const result = await this.redis.store.retry(shard, runId);
    if (!result.ok) {
      if (result.status === 'unknown') throw new RunNotFoundError(runId);
      throw new WorkflowError(`Run ${runId} is ${result.status}; only failed or canceled runs can be retried.`);
    }
    return this.handle(runId);
  }

  /**
   * Sends an event: it is kept for eventRetentionMs, and every run waiting for (event, key) is woken.
   * Returns how many runs it woke now.
   */
  async sendEvent(event: string, payload?: unknown, opts: { key?: string } = {}): Promise<number> {
    const { key } = checkEvent(event, opts?.key, 'sendEvent');
    const text = toPayload(payload ?? null, `The payload of event '${event}'`, this.redis.settings.maxPayloadBytes) ?? 'null';
    await this.redis.ready();
    const eventId = ulid();
    let page: { more: boolean; handoffs: Handoff[] } = await this.redis.store.sendEvent(eventId, event, key, text, this.redis.settings.eventRetentionMs);
    let delivered = 0;
    // A page of waiters at a time (lua/events.lua): each page is delivered before the next is taken, so that
    // Redis holds one page's hand-offs at a time and no call's work grows with the number of waiters.
    try {
      for (;;) {
        await Promise.all(page.handoffs.map((handoff) => this.redis.store.deliver(handoff)));
        delivered += page.handoffs.length;
        if (!page.more) return delivered;
        page = await this.redis.store.sendEventMore(eventId, text);
      }
    } catch (error) {
      // The event is stored, and every waiter it was not delivered to yet is in the outbox or the event's
      // fan-out, which housekeeping works off: the send has happened, only its deliveries are late.
      this.logger.warn(
        `Event '${event}' is stored, but delivering it to its waiters failed after ${delivered} (${errorMessage(error)}); housekeeping delivers it to the others once Redis accepts the writes again.`,
      );
      return delivered;
    }
  }

  /** Whether the run's workflow has an @OnFailure method (known here, or as registered by its workers). */
  private async hasOnFailure(runId: string, shard: ShardRef): Promise<boolean> {
    const hash = await this.redis.store.readRun(shard, runId);
    const workflow = hash?.wf;
    if (!workflow) return false;
    const local = this.registry.get(workflow);
    if (local) return !!local.onFailure;
    const entry = await this.redis.store.readRegistryEntry(workflow);
    try {
      return !!entry && (JSON.parse(entry) as { onFailure?: boolean }).onFailure === true;
    } catch {
      return false;
    }
  }

  /** Whether a live worker (this app's, or one in the registry seen within 5 s) serves the workflow. */
  private servedByLiveWorker(workflow: string): boolean | Promise<boolean> {
    if (this.redis.settings.worker && this.registry.get(workflow)?.instance) return true;
    const live = this.liveWorkflows;
    const age = live ? Date.now() - live.readAt : Infinity;
    if (!live || age > 5_000 || (age > 1_000 && !live.names.has(workflow))) {
      // Emits made while the registry is being read share that read.
      this.liveRead ??= this.inspector.workers().then(
        (workers) => {
          this.liveRead = undefined;
          return (this.liveWorkflows = { names: new Set(workers.flatMap((w) => w.workflows)), readAt: Date.now() });
        },
        (error: unknown) => {
          this.liveRead = undefined;
          throw error;
        },
      );
      return this.liveRead.then((read) => read.names.has(workflow));
    }
    return live.names.has(workflow);
  }

  // ---- routing ----

  /**
   * A workflow with maxConcurrency keeps its runs in partition 0 of its queue, where its concurrency is
   * counted; a keyed emit goes to the partition its key hashes to, so racing emits meet; others spread.
   */
  private pickShard(queue: string, target: EmitTarget, idempotencyKey?: string, seed?: string): ShardRef {
    const partitions = this.redis.settings.partitions(queue);
    if (partitions === 1 || target.options.maxConcurrency > 0) return { queue, partition: 0 };
    if (idempotencyKey !== undefined || seed !== undefined) {
      const hash = createHash('sha1').update(idempotencyKey !== undefined ? `${target.name}\0${idempotencyKey}` : `child\0${seed}`).digest();
      return { queue, partition: hash.readUInt32BE(0) % partitions };
    }
    return { queue, partition: randomInt(partitions) };
  }

  /** The target of an emit when it needs no look-up in Redis (a class, a local or already seen name). */
  private knownTarget(workflow: WorkflowRef): EmitTarget | undefined {
    if (typeof workflow === 'function') {
      const local = this.registry.getByType(workflow as Type);
      if (local) return local;
      const meta = readWorkflowMetadata(workflow);
      if (!meta) throw new UnknownWorkflowError(`${(workflow as Type).name} is not a workflow: decorate it with @Workflow('name').`);
      return { name: meta.name, options: resolveWorkflowOptions(meta), type: workflow as Type };
    }
    if (typeof workflow !== 'string' || workflow === '') {
      throw new UnknownWorkflowError('Name a workflow by its @Workflow name or pass its class.');
    }
    return this.registry.get(workflow) ?? this.remoteTargets.get(workflow);
  }

  private async resolveTarget(workflow: WorkflowRef): Promise<EmitTarget> {
    const known = this.knownTarget(workflow);
    if (known) return known;
    const name = workflow as string;
    await this.redis.ready();
    const entry = await this.redis.store.readRegistryEntry(name);
    if (!entry) {
      throw new UnknownWorkflowError(
        `Unknown workflow '${name}': it is not a provider of this app and no worker has registered it in Redis. Check the name, or pass the workflow class.`,
      );
    }
    const meta = JSON.parse(entry) as { queue: string; maxConcurrency: number };
    const target: EmitTarget = { name, options: { queue: meta.queue, maxConcurrency: meta.maxConcurrency ?? 0 } };
    this.remoteTargets.set(name, target);
    return target;
  }
}

function checkEmitOptions(opts: EmitOptions): void {
  if (opts === null || typeof opts !== 'object') throw new WorkflowError('emit options must be an object.');
  if (opts.priority !== undefined && (!Number.isInteger(opts.priority) || opts.priority < -500 || opts.priority > 500)) {
    throw new WorkflowError(`priority must be a whole number from -500 to 500, got ${opts.priority}.`);
  }
  if (opts.delayMs !== undefined) checkDuration(opts.delayMs, 'delayMs');
  if (opts.runAt !== undefined) checkInstant(opts.runAt, 'runAt');
  if (opts.queue !== undefined) assertKeySegment('queue', opts.queue);
  if (opts.idempotencyKey !== undefined && (typeof opts.idempotencyKey !== 'string' || opts.idempotencyKey === '' || opts.idempotencyKey.length > 512)) {
    throw new WorkflowError('idempotencyKey must be a non-empty string of at most 512 characters.');
  }
}
