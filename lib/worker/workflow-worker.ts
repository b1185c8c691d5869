import { errorMessage } from '../errors/error-codec.js';
import { Injectable, Optional } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { WorkflowClient } from '../client/workflow.client.js';
import { CanceledError, LeaseLostError, TimeoutError } from '../errors/workflow.errors.js';
import type { ShardRef } from '../redis/keys.js';
import type { ExecutionCacheStats } from '../interfaces/run.interfaces.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import { WorkflowObserver } from '../observability/workflow-observer.js';
import { ClaimLoop } from './claim-loop.js';
import { LeaseHeartbeat } from './lease-heartbeat.js';
import { IDLE_TICK_MS, ShardHousekeeping } from './shard-housekeeping.js';
import { WorkerState, type ShardState } from './worker-state.js';

/** How often a worker tells the registry it is alive, and how long it counts as alive after that. */
const BEAT_INTERVAL_MS = 5_000;
const BEAT_TTL_MS = 15_000;

/**
 * Claims runs from the shards of the queues it serves and executes them, up to `concurrency` at once.
 * It never polls ready lists in a loop: a claim follows a 'ready' message on the shard's channel or a
 * freed slot, and housekeeping (timers, expired leases, deadlines, retention) runs when Redis says the
 * next entry is due. This class owns start and stop, the registration and the shard messages; its parts
 * (ClaimLoop, ShardHousekeeping, LeaseHeartbeat) share one WorkerState.
 */
@Injectable()
export class WorkflowWorker {
  readonly workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly state: WorkerState;
  private readonly claims: ClaimLoop;
  private readonly housekeeping: ShardHousekeeping;
  private readonly heartbeat: LeaseHeartbeat;
  private beatTimer?: NodeJS.Timeout;
  private readonly startedAt = new Date().toISOString();
  private unsubscribeReconnect?: () => void;

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
    client: WorkflowClient,
    @Optional() observer?: WorkflowObserver,
  ) {
    this.state = new WorkerState(this.workerId, redis);
    this.claims = new ClaimLoop(this.state, registry, client, observer);
    this.housekeeping = new ShardHousekeeping(this.state, this.claims, client);
    this.heartbeat = new LeaseHeartbeat(this.state);
  }

  get concurrency(): number {
    return this.state.concurrency;
  }

  get activeRuns(): number {
    return this.state.executing.size;
  }

  /** The cache of warm executions (the executionCache option), or undefined when it is off. */
  get executionCache(): ExecutionCacheStats | undefined {
    return this.state.cache?.stats();
  }

  get isRunning(): boolean {
    return this.state.running;
  }

  /** Local time (ms) of the last completed housekeeping tick; ticks come at least every second per shard. */
  get lastLoopActivityAt(): number {
    return this.housekeeping.lastTickAt;
  }

  private get logger() {
    return this.state.logger;
  }

  /** The queues this worker serves: the configured ones, or every queue a discovered workflow uses. */
  servedQueues(): string[] {
    const worker = this.redis.settings.worker;
    if (!worker) return [];
    return worker.queues ?? [...new Set(this.registry.all().map((w) => w.options.queue))];
  }

  async start(): Promise<void> {
    const worker = this.redis.settings.worker;
    if (!worker || this.state.running) return;
    const queues = this.servedQueues();
    for (const queue of queues) {
      if (!this.registry.all().some((w) => w.options.queue === queue)) {
        this.logger.warn(`Queue '${queue}' is served by this worker but no workflow of this app uses it as its queue.`);
      }
    }
    if (this.registry.all().length === 0) return;
    if (this.redis.settings.faults) {
      this.logger.warn('The faults option is set: this worker injects crashes, duplicate deliveries and lost leases at the steps it names. It is for tests only; remove it outside tests.');
    }
    this.state.running = true;
    // Leases and run deadlines are written by claims, which announce nothing: a worker sees them at its
    // next tick, which must therefore come before the shortest of them can expire.
    const timeouts = this.registry.all().map((w) => w.options.timeoutMs).filter((ms) => ms > 0);
    this.housekeeping.idleTickMs = Math.max(worker.reaperIntervalMs, Math.min(IDLE_TICK_MS, worker.leaseMs / 3, ...timeouts.map((ms) => ms / 2)));
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
      this.state.shards.push(shard);
    };
    for (const queue of queues) {
      for (let partition = 0; partition < this.redis.settings.partitions(queue); partition += 1) {
        addShard({ queue, partition }, this.redis.keys.shardRoot({ queue, partition }));
      }
    }
    addShard(undefined, this.redis.keys.eventRoot());
    await Promise.all(this.state.shards.map((shard) => this.redis.subscriber.subscribe(shard.channel, shard.onMessage)));
    this.unsubscribeReconnect = this.redis.subscriber.onReconnect(() => {
      // Redis may have restarted (from older data) or failed over: warm executions are a doubt now.
      this.state.cache?.clear();
      this.wakeAll();
    });
    this.heartbeat.start(worker.leaseMs);
    await this.beat(BEAT_TTL_MS).catch((error) => this.state.failed('worker registration', error));
    this.beatTimer = setInterval(() => void this.beat(BEAT_TTL_MS).catch((error) => this.state.failed('worker registration', error)), BEAT_INTERVAL_MS);
    this.wakeAll();
    this.logger.log(`Worker ${this.workerId} serves ${queues.join(', ')} with concurrency ${worker.concurrency}`);
  }

  /**
   * Stops claiming, lets executing runs finish within the grace period, then releases the leases of the
   * rest so that another worker takes them at once.
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.state.running) return;
    this.state.running = false;
    this.heartbeat.stop();
    clearInterval(this.beatTimer);
    this.unsubscribeReconnect?.();
    this.housekeeping.stop();
    await Promise.all(this.state.shards.map((shard) => this.redis.subscriber.unsubscribe(shard.channel, shard.onMessage)));
    const all = () => Promise.all(this.state.executing.values().map((e) => e.done));
    if (this.state.executing.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    if (this.state.executing.size > 0) {
      const left = this.state.executing.values();
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
    this.state.shards.length = 0;
    this.state.cache?.clear();
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
      activeRuns: this.state.executing.size,
      startedAt: this.startedAt,
      ttlMs,
      ...(this.redis.settings.version ? { version: this.redis.settings.version } : {}),
      ...(this.state.cache ? { executionCache: this.state.cache.stats() } : {}),
    };
    await this.redis.workerStore.workerBeat(this.workerId, JSON.stringify(info), ttlMs);
  }

  private wakeAll(): void {
    for (const shard of this.state.shards) {
      this.housekeeping.scheduleTick(shard, 0);
      this.claims.requestClaim(shard);
    }
  }

  private onShardMessage(shard: ShardState, message: string): void {
    if (!this.state.running) return;
    const kind = message[0];
    if (kind === 'r') {
      this.claims.requestClaim(shard);
    } else if (kind === 's') {
      // runs woken on a worker's sticky queue: this worker's, or another's (nothing to do)
      if (message.length - 1 !== this.workerId.length || !message.endsWith(this.workerId)) return;
      shard.stickyPending = true;
      this.claims.requestClaim(shard);
    } else if (kind === 't') {
      const due = Number(message.slice(1));
      this.housekeeping.scheduleTick(shard, Math.max(0, due - (Date.now() + this.state.serverOffsetMs)));
    } else if (kind === 'a') {
      const [runId, reason] = message.slice(1).split('|');
      const executing = this.state.executing.get(runId);
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
}
