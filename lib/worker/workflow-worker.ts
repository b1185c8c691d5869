import { errorMessage } from '../errors/error-codec.js';
import { Injectable, Logger, Optional } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { WorkflowClient } from '../client/workflow.client.js';
import { CanceledError, LeaseLostError, TimeoutError } from '../errors/workflow.errors.js';
import { RunExecution, type ExecutableDefinition, type SlotRefill } from '../execution/run-execution.js';
import type { ShardRef } from '../redis/keys.js';
import type { ClaimRequest, ClaimWorkflowSpec, ClaimedRun, Handoff } from '../redis/workflow-store.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import { WorkflowObserver } from '../observability/workflow-observer.js';
import { ExecutingRuns } from './executing-runs.js';

/** Longest a worker waits between housekeeping ticks of a shard when nothing is due: a safety net for
 *  a pub/sub message lost in a reconnect, and how soon a lease or deadline created by another worker
 *  after this one's last tick is seen (shortened for sub-second leases and timeouts, see idleTickMs). */
const IDLE_TICK_MS = 1_000;
const MAX_CLAIM_BATCH = 32;
/** Entries per housekeeping part per call: under 1 ms of Redis time for 50 due timers on an idle machine (measured in
 *  test/e2e/time-scale.e2e.spec.ts), so a large backlog never blocks Redis for long. */
const TICK_BATCH = 50;
/** With a deep queue, a claim waits until this share of the slots is free, so that one FCALL claims several
 *  runs instead of one per finished run (claims were about one FCALL per run before). */
const BACKLOG_BATCH_SHARE = 8;
/** How often a worker tells the registry it is alive, and how long it counts as alive after that. */
const BEAT_INTERVAL_MS = 5_000;
const BEAT_TTL_MS = 15_000;

interface ShardState {
  /** Undefined for the event shard, which has housekeeping but no runs to claim. */
  ref?: ShardRef;
  root: string;
  claiming: boolean;
  claimAgain: boolean;
  /** A claim is scheduled for the end of this turn of the event loop: triggers within one turn share it. */
  claimScheduled: boolean;
  /** The last claim came back full: there may be more ready runs. */
  backlog: boolean;
  tickTimer?: NodeJS.Timeout;
  tickAt?: number;
  ticking: boolean;
  channel: string;
  onMessage: (message: string) => void;
}

interface Executing {
  execution: RunExecution;
  shard: ShardState;
  done: Promise<void>;
}

/**
 * Claims runs from the shards of the queues it serves and executes them, up to `concurrency` at once.
 * It never polls ready lists in a loop: a claim follows a 'ready' message on the shard's channel or a
 * freed slot, and housekeeping (timers, expired leases, deadlines, retention) runs when Redis says the
 * next entry is due.
 */
@Injectable()
export class WorkflowWorker {
  readonly workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly logger = new Logger('WorkflowWorker');
  private readonly shards: ShardState[] = [];
  private readonly executing = new ExecutingRuns<Executing>();
  private heartbeatTimer?: NodeJS.Timeout;
  private beatTimer?: NodeJS.Timeout;
  private readonly startedAt = new Date().toISOString();
  private running = false;
  private outage = false;
  private serverOffsetMs = 0;
  private rotation = 0;
  private readonly claimIdPrefix = randomBytes(3).toString('hex');
  private claimCount = 0;
  /** Slots promised to claims in flight (their runs are not executing yet). */
  private reserved = 0;
  private idleTickMs = IDLE_TICK_MS;
  private unsubscribeReconnect?: () => void;
  /** When a housekeeping tick last completed (local clock): how health checks tell the loop is alive. */
  private lastTickAt = 0;

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
    private readonly client: WorkflowClient,
    @Optional() private readonly observer?: WorkflowObserver,
  ) {}

  get concurrency(): number {
    return this.redis.settings.worker ? this.redis.settings.worker.concurrency : 0;
  }

  get activeRuns(): number {
    return this.executing.size;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Local time (ms) of the last completed housekeeping tick; ticks come at least every second per shard. */
  get lastLoopActivityAt(): number {
    return this.lastTickAt;
  }

  /** The queues this worker serves: the configured ones, or every queue a discovered workflow uses. */
  servedQueues(): string[] {
    const worker = this.redis.settings.worker;
    if (!worker) return [];
    return worker.queues ?? [...new Set(this.registry.all().map((w) => w.options.queue))];
  }

  async start(): Promise<void> {
    const worker = this.redis.settings.worker;
    if (!worker || this.running) return;
    const queues = this.servedQueues();
    for (const queue of queues) {
      if (!this.registry.all().some((w) => w.options.queue === queue)) {
        this.logger.warn(`Queue '${queue}' is served by this worker but no workflow of this app uses it as its queue.`);
      }
    }
    if (this.registry.all().length === 0) return;
    this.running = true;
    // Leases and run deadlines are written by claims, which announce nothing: a worker sees them at its
    // next tick, which must therefore come before the shortest of them can expire.
    const timeouts = this.registry.all().map((w) => w.options.timeoutMs).filter((ms) => ms > 0);
    this.idleTickMs = Math.max(worker.reaperIntervalMs, Math.min(IDLE_TICK_MS, worker.leaseMs / 3, ...timeouts.map((ms) => ms / 2)));
    const addShard = (ref: ShardRef | undefined, root: string) => {
      const shard: ShardState = {
        ref,
        root,
        claiming: false,
        claimAgain: false,
        claimScheduled: false,
        backlog: false,
        ticking: false,
        channel: this.redis.keys.workerChannel(root),
        onMessage: (message) => this.onShardMessage(shard, message),
      };
      this.shards.push(shard);
    };
    for (const queue of queues) {
      for (let partition = 0; partition < this.redis.settings.partitions(queue); partition += 1) {
        addShard({ queue, partition }, this.redis.keys.shardRoot({ queue, partition }));
      }
    }
    addShard(undefined, this.redis.keys.eventRoot());
    await Promise.all(this.shards.map((shard) => this.redis.subscriber.subscribe(shard.channel, shard.onMessage)));
    this.unsubscribeReconnect = this.redis.subscriber.onReconnect(() => this.wakeAll());
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(worker.leaseMs / 3)));
    await this.beat(BEAT_TTL_MS).catch((error) => this.failed('worker registration', error));
    this.beatTimer = setInterval(() => void this.beat(BEAT_TTL_MS).catch((error) => this.failed('worker registration', error)), BEAT_INTERVAL_MS);
    this.wakeAll();
    this.logger.log(`Worker ${this.workerId} serves ${queues.join(', ')} with concurrency ${worker.concurrency}`);
  }

  /**
   * Stops claiming, lets executing runs finish within the grace period, then releases the leases of the
   * rest so that another worker takes them at once.
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.beatTimer);
    this.unsubscribeReconnect?.();
    for (const shard of this.shards) clearTimeout(shard.tickTimer);
    await Promise.all(this.shards.map((shard) => this.redis.subscriber.unsubscribe(shard.channel, shard.onMessage)));
    const all = () => Promise.all(this.executing.values().map((e) => e.done));
    if (this.executing.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    if (this.executing.size > 0) {
      const left = this.executing.values();
      for (const e of left) e.execution.abort(new LeaseLostError('The worker is shutting down; the run was released to another worker.'));
      const byShard = new Map<ShardState, { id: string; token: string }[]>();
      for (const e of left) byShard.set(e.shard, [...(byShard.get(e.shard) ?? []), { id: e.execution.id, token: e.execution.token }]);
      for (const [shard, runs] of byShard) {
        try {
          const released = await this.redis.workerStore.release(shard.ref!, `shutdown of worker ${this.workerId}`, runs);
          this.logger.log(`Released ${released} run(s) of ${shard.root} that did not finish within ${graceMs} ms`);
        } catch (error) {
          this.logger.error(`Could not release runs on shutdown (their leases will expire instead): ${errorMessage(error)}`);
        }
      }
      await all();
    }
    this.shards.length = 0;
    await this.beat(0).catch(() => undefined);
  }

  /** Registers this worker as alive for ttlMs (0: gone), with what it serves. */
  private async beat(ttlMs: number): Promise<void> {
    const queues = this.servedQueues();
    const info = {
      id: this.workerId,
      host: hostname(),
      pid: process.pid,
      queues,
      partitions: Object.fromEntries(queues.map((q) => [q, this.redis.settings.partitions(q)])),
      workflows: this.registry.all().map((w) => w.name),
      concurrency: this.concurrency,
      activeRuns: this.executing.size,
      startedAt: this.startedAt,
      ttlMs,
    };
    await this.redis.workerStore.workerBeat(this.workerId, JSON.stringify(info), ttlMs);
  }

  private wakeAll(): void {
    for (const shard of this.shards) {
      this.scheduleTick(shard, 0);
      this.requestClaim(shard);
    }
  }

  private onShardMessage(shard: ShardState, message: string): void {
    if (!this.running) return;
    const kind = message[0];
    if (kind === 'r') {
      this.requestClaim(shard);
    } else if (kind === 't') {
      const due = Number(message.slice(1));
      this.scheduleTick(shard, Math.max(0, due - (Date.now() + this.serverOffsetMs)));
    } else if (kind === 'a') {
      const [runId, reason] = message.slice(1).split('|');
      const executing = this.executing.get(runId);
      if (executing) {
        executing.execution.abort(
          reason === 'timeout'
            ? new TimeoutError('The run passed its whole-run deadline (timeoutMs).')
            : reason === 'canceled'
              ? new CanceledError('The run was canceled.')
              : new LeaseLostError(`The run was taken from this worker (${reason}).`),
        );
      }
    }
  }

  // ---- claiming ----

  /**
   * Claims at the end of this turn of the event loop: the 'ready' messages and the completions that one
   * socket read delivers together lead to one claim, not one each.
   */
  private requestClaim(shard: ShardState): void {
    if (!this.running || shard.claimScheduled) return;
    shard.claimScheduled = true;
    setImmediate(() => {
      shard.claimScheduled = false;
      void this.claim(shard);
    });
  }

  private async claim(shard: ShardState): Promise<void> {
    if (!this.running || !shard.ref) return;
    if (shard.claiming) {
      shard.claimAgain = true;
      return;
    }
    const free = this.freeSlots;
    if (free <= 0) {
      shard.backlog = true;
      return;
    }
    // The last claim came back full, so more runs are ready: while runs of this worker are executing (their
    // completions trigger the next claim), wait for enough free slots to claim a batch in one call.
    if (shard.backlog && this.executing.size > 0 && free < this.backlogBatch) return;
    const specs = this.claimSpecs(shard);
    if (specs.length === 0) return;
    shard.claiming = true;
    shard.claimAgain = false;
    const want = Math.min(free, MAX_CLAIM_BATCH);
    this.reserved += want;
    let runs: ClaimedRun[] = [];
    try {
      runs = await this.redis.workerStore.claimRuns(shard.ref, this.claimRequest(want, specs));
      this.recovered();
      shard.backlog = runs.length === want;
    } catch (error) {
      this.failed('claim', error);
      shard.claimAgain = true;
      await delay(this.retryDelay());
    } finally {
      this.reserved -= want;
      shard.claiming = false;
    }
    this.startClaimed(shard, runs);
    if (this.running && (shard.claimAgain || shard.backlog) && this.freeSlots > 0) this.requestClaim(shard);
    if (runs.length < want) this.slotsReturned(shard);
  }

  /** A claim came back with fewer runs than the slots it held: shards that found no free slot meanwhile claim now. */
  private slotsReturned(from: ShardState): void {
    if (!this.running) return;
    for (const shard of this.shards) if (shard !== from && shard.backlog) this.requestClaim(shard);
  }

  /**
   * Half of a fencing token: unique per claim of this process (a random prefix and a counter), so that two
   * claims of one run never share a token. Drawing 6 random bytes per claim showed as 6% of a busy worker's CPU.
   */
  private nextClaimId(): string {
    this.claimCount = (this.claimCount + 1) % 0x1_000_000;
    return this.claimIdPrefix + this.claimCount.toString(16).padStart(6, '0');
  }

  private claimRequest(want: number, workflows: ClaimWorkflowSpec[]): ClaimRequest {
    const worker = this.redis.settings.worker as Exclude<typeof this.redis.settings.worker, false>;
    return {
      workerId: this.workerId,
      max: want,
      leaseMs: worker.leaseMs,
      claimId: this.nextClaimId(),
      workflows,
      damagedRetentionMs: this.redis.settings.retentionMs.failed,
    };
  }

  /** Slots neither executing a run nor promised to a claim in flight. */
  private get freeSlots(): number {
    return this.concurrency - this.executing.size - this.reserved;
  }

  /**
   * While the shard has a backlog (and no other has), a completing run claims the next runs in the same
   * call (its own slot, and the free ones no claim is in flight for): a busy worker refills its slots
   * without claim round trips, as BullMQ's moveToFinished fetches the next job.
   */
  private refill(shard: ShardState): SlotRefill | undefined {
    if (!this.running || !shard.ref || !shard.backlog) return undefined;
    // A completion can only claim from its own shard: while other shards wait too, slots go through the
    // shared claim path instead, so that one busy shard does not keep them all.
    if (this.shards.some((other) => other !== shard && other.backlog)) return undefined;
    const specs = this.claimSpecs(shard);
    if (specs.length === 0) return undefined;
    const want = Math.min(MAX_CLAIM_BATCH, 1 + Math.max(0, this.freeSlots));
    this.reserved += want;
    return {
      request: this.claimRequest(want, specs),
      settle: (runs) => {
        this.reserved -= want;
        this.startClaimed(shard, runs);
        if (runs.length < want) {
          shard.backlog = false;
          this.slotsReturned(shard);
        }
      },
    };
  }

  private startClaimed(shard: ShardState, runs: ClaimedRun[]): void {
    const worker = this.redis.settings.worker as Exclude<typeof this.redis.settings.worker, false>;
    for (const run of runs) {
      const definition = this.registry.get(run.workflow);
      if (!definition?.instance) continue; // cannot happen: we only claim workflows we have
      this.serverOffsetMs = run.serverNow - Date.now();
      this.startExecution(
        shard,
        new RunExecution(run, shard.ref!, definition as ExecutableDefinition, this.redis.workerStore, {
          workerId: this.workerId,
          maxPayloadBytes: this.redis.settings.maxPayloadBytes,
          retentionMs: this.redis.settings.retentionMs,
          children: this.client,
          shardRoot: shard.root,
          leaseMs: worker.leaseMs,
          maxStepsPerRun: this.redis.settings.maxStepsPerRun,
          observer: this.observer,
          refill: () => this.refill(shard),
        }),
      );
    }
  }

  private get backlogBatch(): number {
    return Math.max(1, Math.min(MAX_CLAIM_BATCH, Math.floor(this.concurrency / BACKLOG_BATCH_SHARE)));
  }

  /** The workflows to claim in this shard: those whose queue it is first (rotated for fairness), then the
   *  others this app has (their runs may be sent to this queue by emit's `queue` option). */
  private claimSpecs(shard: ShardState): ClaimWorkflowSpec[] {
    const rotations = this.claimRotations(shard.ref?.queue);
    this.rotation = (this.rotation + 1) % rotations.length;
    return rotations[this.rotation];
  }

  /** Each rotation of a queue's claim order, made once (a completing run asks for one). */
  private claimRotations(queue: string | undefined): ClaimWorkflowSpec[][] {
    if (this.rotationsFor?.registered !== this.registry.size) this.rotationsFor = { registered: this.registry.size, byQueue: new Map() };
    const known = this.rotationsFor.byQueue.get(queue);
    if (known) return known;
    const all = this.registry.all().filter((w) => w.instance);
    const home = all.filter((w) => w.options.queue === queue);
    const away = all.filter((w) => w.options.queue !== queue && w.options.maxConcurrency === 0);
    const spec = (w: (typeof all)[number]): ClaimWorkflowSpec => ({
      name: w.name,
      maxConcurrency: w.options.maxConcurrency,
      maxAttempts: w.options.maxAttempts,
      timeoutMs: w.options.timeoutMs,
    });
    const rotations = Array.from({ length: Math.max(1, home.length) }, (_, r) => [...home.slice(r), ...home.slice(0, r), ...away].map(spec));
    this.rotationsFor.byQueue.set(queue, rotations);
    return rotations;
  }

  private rotationsFor?: { registered: number; byQueue: Map<string | undefined, ClaimWorkflowSpec[][]> };

  private startExecution(shard: ShardState, execution: RunExecution): void {
    const ended = () => {
      this.executing.delete(execution.id);
      this.onSlotFreed(shard);
    };
    const done = execution.execute().then(ended, (error) => {
      this.logger.error(`Run ${execution.id} of workflow ${execution.workflow} stopped unexpectedly: ${errorMessage(error)}`);
      ended();
    });
    this.executing.set(execution.id, { execution, shard, done });
  }

  private onSlotFreed(finished: ShardState): void {
    if (!this.running) return;
    this.requestClaim(finished);
    this.slotsReturned(finished);
  }

  // ---- housekeeping ----

  private scheduleTick(shard: ShardState, inMs: number): void {
    if (!this.running) return;
    const worker = this.redis.settings.worker as Exclude<typeof this.redis.settings.worker, false>;
    const wait = Math.max(0, Math.min(inMs, this.idleTickMs));
    const at = Date.now() + wait;
    if (shard.tickTimer && shard.tickAt !== undefined && shard.tickAt <= at) return;
    clearTimeout(shard.tickTimer);
    shard.tickAt = at;
    shard.tickTimer = setTimeout(() => void this.tick(shard, worker.reaperIntervalMs), wait);
  }

  private async tick(shard: ShardState, reaperIntervalMs: number): Promise<void> {
    shard.tickTimer = undefined;
    shard.tickAt = undefined;
    if (!this.running) return;
    if (shard.ticking) return this.scheduleTick(shard, reaperIntervalMs);
    shard.ticking = true;
    try {
      const result = await this.redis.workerStore.tick(shard.root, TICK_BATCH);
      this.lastTickAt = Date.now();
      this.recovered();
      this.serverOffsetMs = result.serverNow - Date.now();
      if (result.handoffs.length > 0) void this.deliver(result.handoffs);
      if (result.cascade) void this.continueCascade(result.cascade.runId, result.cascade.cursor);
      // A safety net for a 'ready' message lost in a reconnect or a failover: a free slot looks for work.
      if (this.executing.size < this.concurrency) void this.claim(shard);
      // A backlog is worked off call after call: each call is bounded (TICK_BATCH per part), so other
      // clients' commands run between them, and 100k due runs are promoted in seconds, not minutes.
      if (result.more) this.scheduleTick(shard, 0);
      else this.scheduleTick(shard, result.nextDueMs ?? this.idleTickMs);
    } catch (error) {
      this.failed('housekeeping', error);
      this.scheduleTick(shard, this.retryDelay());
    } finally {
      shard.ticking = false;
    }
  }

  /** Hand-offs whose first delivery did not happen (the worker that owed it crashed). */
  private async deliver(handoffs: Handoff[]): Promise<void> {
    for (const handoff of handoffs) {
      try {
        await this.redis.workerStore.deliver(handoff);
      } catch (error) {
        this.failed('hand-off delivery', error);
      }
    }
  }

  /** A cancel cascade whose canceling process stopped: its children from the page at `cursor` on. */
  private async continueCascade(runId: string, cursor: string): Promise<void> {
    try {
      const shard = this.redis.keys.parseRunId(runId);
      if (shard) await this.client.cancelChildren(runId, await this.redis.workerStore.cancelMore(shard, runId, cursor));
    } catch (error) {
      this.failed('cancel cascade', error);
    }
  }

  private async heartbeat(): Promise<void> {
    const worker = this.redis.settings.worker;
    if (!worker || this.executing.size === 0) return;
    const byShard = new Map<ShardState, Executing[]>();
    for (const e of this.executing.values()) byShard.set(e.shard, [...(byShard.get(e.shard) ?? []), e]);
    await Promise.all(
      [...byShard].map(async ([shard, list]) => {
        try {
          const sentAt = Date.now();
          const lost = await this.redis.workerStore.heartbeat(
            shard.ref!,
            worker.leaseMs,
            list.map((e) => ({ id: e.execution.id, token: e.execution.token })),
          );
          this.recovered();
          const lostIds = new Set(lost);
          for (const e of list) if (!lostIds.has(e.execution.id)) e.execution.leaseRenewed(sentAt);
          for (const id of lost) {
            this.executing.get(id)?.execution.abort(new LeaseLostError(`This worker lost the lease of run ${id}; another worker's results stand.`));
          }
        } catch (error) {
          this.failed('heartbeat', error);
        }
      }),
    );
  }

  // ---- outages: logged once, retried with backoff ----

  private retryDelay(): number {
    const worker = this.redis.settings.worker;
    return Math.min(5_000, Math.max(worker ? worker.reaperIntervalMs : 100, 250));
  }

  private failed(what: string, error: unknown): void {
    if (this.outage) return;
    this.outage = true;
    this.logger.error(`Redis call failed during ${what} (${errorMessage(error)}); retrying until it is back`);
  }

  private recovered(): void {
    if (!this.outage) return;
    this.outage = false;
    this.logger.log('Redis is reachable again; worker resumed');
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

