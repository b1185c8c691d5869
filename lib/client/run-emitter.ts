import { Logger } from '@nestjs/common';
import type { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { InvalidArgumentError, WorkflowError } from '../errors/workflow.errors.js';
import type { ChildStart, GraphNodeRun } from '../execution/child-launcher.js';
import { checkDuration, checkInstant } from '../execution/call-limits.js';
import { prepareInput } from '../execution/input-validation.js';
import { assertPayloadDepth, toPayload } from '../execution/payload.js';
import type { EmitOptions } from '../interfaces/run.interfaces.js';
import { assertKeySegment, type ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import type { EmitArgs } from '../redis/workflow-store.js';
import type { EmitTarget, EmitTargets, WorkflowRef } from './emit-targets.js';
import type { RunInspector } from './run-inspector.js';
import { flowOfRun, type RunFlow } from './flow-keys.js';
import { UnservedWorkflows } from './unserved-workflows.js';

export type EmitRequest = EmitOptions & { parent?: ChildStart };
export interface EmittedRun {
  runId: string;
  workflow: string;
  /** The idempotency key named a run of another parent's (or a client's), and a parent waits for it. */
  joined: boolean;
}

/**
 * Stores new runs: the emit options' checks, input validation and size, the shard, whether a live worker
 * serves the workflow, and the run a parent's child gets in its own shard.
 *
 * Written with then() rather than async/await, and synchronous where the target, the input and the
 * connection need no waiting: every promise pays the AsyncLocalStorage hooks that @Step() needs
 * (bench/NOTES.md, sixth round), and a producer makes this call per run.
 */
export class RunEmitter {
  private readonly unserved: UnservedWorkflows;
  private liveWorkflows?: { names: Set<string>; versions: Set<string>; readAt: number };
  private liveRead?: Promise<{ names: Set<string>; versions: Set<string>; readAt: number }>;
  /** When a held-back pinned run was last logged, per workflow and version (one line a minute each). */
  private readonly heldBackLogged = new Map<string, number>();
  private readonly logger = new Logger('WorkflowClient');

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
    private readonly targets: EmitTargets,
    private readonly inspector: RunInspector,
  ) {
    this.unserved = new UnservedWorkflows(redis.store);
  }

  /** Validates and stores a new run. */
  create(workflow: WorkflowRef, input: unknown, opts: EmitRequest): Promise<EmittedRun> {
    try {
      const target = this.targets.known(workflow);
      if (!target) return this.targets.resolve(workflow).then((resolved) => this.createFor(resolved, input, opts));
      return this.createFor(target, input, opts);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  childInShard(start: ChildStart, parentShard: ShardRef): { id: string; workflow: string; emit: EmitArgs } | undefined {
    // An idempotency key may name another run (its id is known only once stored); an explicit queue or a
    // start time go through the checks of a plain emit.
    if (start.idempotencyKey !== undefined || start.queue !== undefined || start.runAt !== undefined || !start.parentField) return undefined;
    const target = this.targets.known(start.workflow);
    if (!target || target.options.input || target.options.flow || !this.redis.isReady) return undefined;
    const queue = target.options.queue;
    const shard = this.targets.pickShard(queue, target, undefined, start.seed);
    if (shard.queue !== parentShard.queue || shard.partition !== parentShard.partition) return undefined;
    // The run's history says when no live worker serves its workflow: known at once only for this app's own.
    if (this.servedByLiveWorker(target.name) !== true) return undefined;
    const id = this.redis.keys.derivedRunId(start.parentId, start.seed, shard);
    return { id, workflow: target.name, emit: this.emitArgs(target, queue, id, this.inputText(target, start.input), { parent: start }, true) };
  }

  /** See ChildLauncher.graphNodeRun: a node runs in its parent's shard, so its workflow must live in that queue. */
  async graphNodeRun(start: ChildStart, parentShard: ShardRef): Promise<GraphNodeRun> {
    const target = await this.targets.resolve(start.workflow);
    if (target.options.queue !== parentShard.queue) {
      throw new InvalidArgumentError(
        `Workflow '${target.name}' lives in queue '${target.options.queue}', but the nodes of a graph run in their parent's queue ('${parentShard.queue}'). Start it with step.runWorkflow, or give both the same queue.`,
      );
    }
    if (target.options.maxConcurrency > 0 && parentShard.partition !== 0) {
      throw new InvalidArgumentError(
        `Workflow '${target.name}' has maxConcurrency, so its runs live in partition 0 of queue '${parentShard.queue}', and this parent is in partition ${parentShard.partition}: start it with step.runWorkflow.`,
      );
    }
    let input = start.input;
    if (target.options.input) {
      assertPayloadDepth(input, `The input of workflow '${target.name}'`);
      input = await prepareInput(target.options.input, input, target.options.validation);
    }
    const flow = target.options.flow ? this.graphNodeFlow(target, input, parentShard) : undefined;
    return { id: this.redis.keys.derivedRunId(start.parentId, start.seed, parentShard), workflow: target.name, input: this.inputText(target, input), flow };
  }

  /**
   * The flow key a graph node of a flow-controlled workflow takes a slot of: its run is created by Redis in
   * the parent's shard, so the key's state must live there (always so with one partition). Debounce folds
   * an emit into another run, which a node cannot be: refused, as a key of another partition is.
   */
  private graphNodeFlow(target: EmitTarget, input: unknown, parentShard: ShardRef): { key: string; spec: string } | undefined {
    const flow = flowOfRun(target.name, target.options.flow!, input);
    if (flow.debounce) {
      throw new InvalidArgumentError(
        `Workflow '${target.name}' has debounce, which folds an emit into the key's pending run, and a graph node is always a run of its own: start it with step.runWorkflow.`,
      );
    }
    if (flow.key === undefined || flow.spec === undefined) return undefined;
    const partition = this.targets.pickShard(parentShard.queue, target, undefined, undefined, flow.key).partition;
    if (partition !== parentShard.partition) {
      throw new InvalidArgumentError(
        `Workflow '${target.name}' has flow control, whose key '${flow.key}' lives in partition ${partition} of queue '${parentShard.queue}', but the nodes of a graph run in their parent's partition (${parentShard.partition}): start it with step.runWorkflow, or give the queue one partition.`,
      );
    }
    return { key: flow.key, spec: flow.spec };
  }

  private createFor(target: EmitTarget, input: unknown, opts: EmitRequest): Promise<EmittedRun> {
    checkEmitOptions(opts);
    if (opts.queue !== undefined && opts.queue !== target.options.queue && target.options.flow) {
      throw new WorkflowError(
        `Workflow '${target.name}' has flow control, whose limits are kept in its own queue '${target.options.queue}'; emit it without the queue option.`,
      );
    }
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

  private insert(target: EmitTarget, validated: unknown, opts: EmitRequest): Promise<EmittedRun> {
    const text = this.inputText(target, validated);
    const queue = opts.queue ?? target.options.queue;
    const flow = target.options.flow ? flowOfRun(target.name, target.options.flow, validated) : undefined;
    const shard = this.targets.pickShard(queue, target, opts.idempotencyKey, opts.parent?.seed, flow?.key ?? flow?.debounce?.key);
    if (!this.redis.isReady) return this.redis.ready().then(() => this.writeRun(target, queue, shard, text, opts, flow));
    return this.writeRun(target, queue, shard, text, opts, flow);
  }

  private writeRun(target: EmitTarget, queue: string, shard: ShardRef, text: string, opts: EmitRequest, flow?: RunFlow): Promise<EmittedRun> {
    const parent = opts.parent;
    const runId = parent ? this.redis.keys.derivedRunId(parent.parentId, parent.seed, shard) : this.redis.keys.newRunId(shard);
    const written = (stored: { runId: string }) => ({ runId: stored.runId, workflow: target.name, joined: stored.runId !== runId });
    const emit = (served: boolean, version: string | undefined) =>
      this.redis.store.emit(shard, this.emitArgs(target, queue, runId, text, opts, served, flow, version)).then((stored) =>
        // The run named by the key had finished: the waiting parent gets its outcome before it parks.
        stored.handoff ? this.redis.store.deliver(stored.handoff).then(() => written(stored)) : written(stored),
      );
    const write = (served: boolean, version: string | undefined) => {
      const registering = served ? undefined : this.unserved.emitting(target);
      return registering ? registering.then(() => emit(served, version)) : emit(served, version);
    };
    const served = this.servedByLiveWorker(target.name);
    const versioned = (served: boolean) => {
      // A child has its parent's version (and pin), read from the parent's run in its own shard.
      if (!parent) {
        const version = this.ownVersion(target);
        if (version?.startsWith('*')) this.warnIfHeldBack(target.name, version.slice(1), runId);
        return write(served, version);
      }
      return this.redis.store.readRunVersion(parent.parentRoot, parent.parentId).then((v) => write(served, v ?? undefined));
    };
    return typeof served === 'boolean' ? versioned(served) : served.then(versioned);
  }

  /** The version a run this app emits records: this app's, with '*' before it for a pinned workflow. */
  private ownVersion(target: EmitTarget): string | undefined {
    const version = this.redis.settings.version;
    if (!version) return undefined;
    return target.options.versioning === 'pinned' ? `*${version}` : version;
  }

  private inputText(target: EmitTarget, input: unknown): string {
    return toPayload(input ?? null, `The input of workflow '${target.name}'`, this.redis.settings.maxPayloadBytes) ?? 'null';
  }

  /**
   * What wf1_emit stores for a new run (`served`: a live worker serves its workflow, else its history says so).
   * One object literal of one shape for every emit: a copy made by spreading it with two more fields cost a
   * burst of 10,000 parked runs about 900 bytes of old space each (test/support/worker-memory.probe.ts).
   */
  private emitArgs(target: EmitTarget, queue: string, runId: string, text: string, opts: EmitRequest, served: boolean, flow?: RunFlow, version?: string): EmitArgs {
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
      deadlineMs: parent?.deadlineMs,
      note: served ? undefined : `No live worker serves workflow '${target.name}' yet; the run waits (using no attempts) until one that has it starts.`,
      flow,
      version,
    };
  }

  /**
   * Logs (once a minute per workflow and version) that a pinned run was emitted for a version that no live
   * worker serves, as far as the last read of the workers says (this app's own worker counts at once).
   */
  private warnIfHeldBack(workflow: string, version: string, runId: string): void {
    if (this.redis.settings.worker && this.registry.get(workflow)?.instance) return;
    const live = this.liveWorkflows;
    if (!live || live.versions.has(`${workflow}\n${version}`)) return;
    const key = `${workflow}\n${version}`;
    const last = this.heldBackLogged.get(key) ?? 0;
    if (Date.now() - last < 60_000) return;
    this.heldBackLogged.set(key, Date.now());
    this.logger.warn(
      `Run ${runId} of pinned workflow '${workflow}' is held back: no worker of version ${version}; ` +
        `retryRun(id, { onVersion: 'current' }) or forkRun moves it (or start a worker of version ${version}).`,
    );
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
          return (this.liveWorkflows = {
            names: new Set(workers.flatMap((w) => w.workflows)),
            versions: new Set(workers.flatMap((w) => (w.version ? w.workflows.map((name) => `${name}\n${w.version}`) : []))),
            readAt: Date.now(),
          });
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
