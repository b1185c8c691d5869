import { randomBytes } from 'node:crypto';
import type { WorkflowClient } from '../client/workflow.client.js';
import type { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { errorMessage } from '../errors/error-codec.js';
import { RunExecution, type ExecutableDefinition, type ExecutionOutcome, type KeepsWarm, type SlotRefill } from '../execution/run-execution.js';
import type { WorkflowObserver } from '../observability/workflow-observer.js';
import type { ClaimRequest, ClaimWorkflowSpec, ClaimedRun } from '../redis/workflow-store.js';
import { ClaimRotations } from './claim-rotations.js';
import type { ShardState, WorkerState } from './worker-state.js';

const MAX_CLAIM_BATCH = 32;
/** With a deep queue, a claim waits until this share of the slots is free, so that one FCALL claims several
 *  runs instead of one per finished run (claims were about one FCALL per run before). */
const BACKLOG_BATCH_SHARE = 8;

/**
 * Fills the worker's slots with runs claimed from its shards and starts their executions. A claim follows
 * a 'ready' message, a freed slot or a housekeeping tick, never a poll; a completing run can claim the next
 * runs of its shard in its own call (see refill).
 *
 * startExecution chains the execution's promise instead of awaiting it: the run must be in `executing`
 * (with the promise stop() waits for) in the same turn it is claimed, before any heartbeat or stop looks.
 */
export class ClaimLoop {
  private readonly rotations: ClaimRotations;
  private readonly claimIdPrefix = randomBytes(3).toString('hex');
  private claimCount = 0;
  /** Slots promised to claims in flight (their runs are not executing yet). */
  private reserved = 0;

  constructor(
    private readonly state: WorkerState,
    private readonly registry: WorkflowRegistry,
    private readonly client: WorkflowClient,
    private readonly observer?: WorkflowObserver,
  ) {
    this.rotations = new ClaimRotations(registry, state.redis.settings.version);
  }

  /**
   * Claims at the end of this turn of the event loop: the 'ready' messages and the completions that one
   * socket read delivers together lead to one claim, not one each.
   */
  requestClaim(shard: ShardState): void {
    if (!this.state.running || shard.claimScheduled) return;
    shard.claimScheduled = true;
    setImmediate(() => {
      shard.claimScheduled = false;
      void this.claim(shard);
    });
  }

  async claim(shard: ShardState): Promise<void> {
    const state = this.state;
    if (!state.running || !shard.ref) return;
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
    if (shard.backlog && state.executing.size > 0 && free < this.backlogBatch) return;
    const specs = this.rotations.next(shard.ref?.queue);
    if (specs.length === 0) return;
    shard.claiming = true;
    shard.claimAgain = false;
    const want = Math.min(free, MAX_CLAIM_BATCH);
    this.reserved += want;
    let runs: ClaimedRun[] = [];
    const sticky = shard.stickyPending === true;
    shard.stickyPending = false;
    try {
      runs = await state.redis.workerStore.claimRuns(shard.ref, this.claimRequest(want, specs, sticky, shard.ref?.queue));
      state.recovered();
      shard.backlog = runs.length === want;
      // a full claim may have left warm runs on the sticky queue
      if (sticky && shard.backlog) shard.stickyPending = true;
    } catch (error) {
      state.failed('claim', error);
      shard.claimAgain = true;
      if (sticky) shard.stickyPending = true;
      await delay(state.retryDelay());
    } finally {
      this.reserved -= want;
      shard.claiming = false;
    }
    this.startClaimed(shard, runs);
    if (state.running && (shard.claimAgain || shard.backlog) && this.freeSlots > 0) this.requestClaim(shard);
    if (runs.length < want) this.slotsReturned(shard);
  }

  /** A claim came back with fewer runs than the slots it held: shards that found no free slot meanwhile claim now. */
  private slotsReturned(from: ShardState): void {
    if (!this.state.running) return;
    for (const shard of this.state.shards) if (shard !== from && shard.backlog) this.requestClaim(shard);
  }

  /**
   * Half of a fencing token: unique per claim of this process (a random prefix and a counter), so that two
   * claims of one run never share a token. Drawing 6 random bytes per claim showed as 6% of a busy worker's CPU.
   */
  private nextClaimId(): string {
    this.claimCount = (this.claimCount + 1) % 0x1_000_000;
    return this.claimIdPrefix + this.claimCount.toString(16).padStart(6, '0');
  }

  private claimRequest(want: number, workflows: ClaimWorkflowSpec[], sticky = false, queue?: string): ClaimRequest {
    const queueConcurrency = queue === undefined ? 0 : this.state.redis.settings.queueConcurrency(queue);
    return {
      ...(queueConcurrency ? { queueConcurrency } : {}),
      workerId: this.state.workerId,
      max: want,
      leaseMs: this.state.settings.leaseMs,
      claimId: this.nextClaimId(),
      workflows,
      damagedRetentionMs: this.state.redis.settings.retentionMs.failed,
      ...(sticky ? { sticky } : {}),
    };
  }

  /** Slots neither executing a run nor promised to a claim in flight. */
  private get freeSlots(): number {
    return this.state.concurrency - this.state.executing.size - this.reserved;
  }

  private get backlogBatch(): number {
    return Math.max(1, Math.min(MAX_CLAIM_BATCH, Math.floor(this.state.concurrency / BACKLOG_BATCH_SHARE)));
  }

  /**
   * While the shard has a backlog (and no other has), a completing run claims the next runs in the same
   * call (its own slot, and the free ones no claim is in flight for): a busy worker refills its slots
   * without claim round trips, as BullMQ's moveToFinished fetches the next job.
   */
  private refill(shard: ShardState): SlotRefill | undefined {
    if (!this.state.running || !shard.ref || !shard.backlog) return undefined;
    // A completion can only claim from its own shard: while other shards wait too, slots go through the
    // shared claim path instead, so that one busy shard does not keep them all.
    if (this.state.shards.some((other) => other !== shard && other.backlog)) return undefined;
    const specs = this.rotations.next(shard.ref?.queue);
    if (specs.length === 0) return undefined;
    const want = Math.min(MAX_CLAIM_BATCH, 1 + Math.max(0, this.freeSlots));
    this.reserved += want;
    const sticky = shard.stickyPending === true;
    shard.stickyPending = false;
    return {
      request: this.claimRequest(want, specs, sticky, shard.ref?.queue),
      settle: (runs) => {
        this.reserved -= want;
        if (sticky && (runs.length === want || runs.length === 0)) shard.stickyPending = true;
        this.startClaimed(shard, runs);
        if (runs.length < want) {
          shard.backlog = false;
          this.slotsReturned(shard);
        }
      },
    };
  }

  private startClaimed(shard: ShardState, runs: ClaimedRun[]): void {
    const state = this.state;
    const settings = state.redis.settings;
    const cache = state.cache;
    for (const run of runs) {
      const definition = this.registry.get(run.workflow);
      if (!definition?.instance) continue; // cannot happen: we only claim workflows we have
      state.serverOffsetMs = run.serverNow - Date.now();
      if (cache && cache.size > 0) {
        // A warm claim resumes the execution this worker parked; any other claim of a run kept warm here
        // means the run went on without it.
        const warm = run.warm ? cache.take(run.id) : (cache.drop(run.id), undefined);
        if (warm?.continuesWith(run) && warm.definition === definition) {
          this.startExecution(shard, warm, warm.resume(run));
          continue;
        }
        warm?.discard();
      } else if (run.warm && cache) cache.take(run.id);
      // A warm claim brought only the records written since the park: without the execution, all are read.
      if (run.warm && run.stepsCursor === undefined) run.stepsCursor = '0';
      const execution = new RunExecution(run, shard.ref!, definition as ExecutableDefinition, state.redis.workerStore, {
        workerId: state.workerId,
        maxPayloadBytes: settings.maxPayloadBytes,
        retentionMs: settings.retentionMs,
        children: this.client,
        shardRoot: shard.root,
        redisSteps: { prefix: settings.prefix, cluster: state.redis.connections.isCluster },
        leaseMs: state.settings.leaseMs,
        maxStepsPerRun: settings.maxStepsPerRun,
        observer: this.observer,
        faults: settings.faults,
        refill: () => this.refill(shard),
        version: settings.version,
        ...(this.keepsWarm ? { keepsWarm: this.keepsWarm } : {}),
      });
      this.startExecution(shard, execution, execution.execute());
    }
  }

  /** What a park asks of Redis to keep an execution warm here (see ExecutionCache), when the cache is on. */
  private get keepsWarm(): KeepsWarm | undefined {
    const option = this.state.redis.settings.executionCache;
    return option ? (this.warmSettings ??= { windowMs: option.stickyWindowMs, workerId: this.state.workerId, minRecords: option.minRecords }) : undefined;
  }

  private warmSettings?: KeepsWarm;

  private startExecution(shard: ShardState, execution: RunExecution, outcome: Promise<ExecutionOutcome>): void {
    const ended = (result?: ExecutionOutcome) => {
      this.state.executing.delete(execution.id);
      // parked with its handler suspended: kept warm for the run's next wake
      if (result === 'parked' && this.state.cache) {
        if (this.state.running && execution.resumable) this.state.cache.keep(execution);
        else execution.discard();
      }
      this.onSlotFreed(shard);
    };
    const done = outcome.then(ended, (error) => {
      this.state.logger.error(`Run ${execution.id} of workflow ${execution.workflow} stopped unexpectedly: ${errorMessage(error)}`);
      ended();
    });
    this.state.executing.set(execution.id, { execution, shard, done });
  }

  private onSlotFreed(finished: ShardState): void {
    if (!this.state.running) return;
    // Shards that found no free slot go first: a shard with a deep backlog would otherwise take back every
    // slot its own runs free, and a run in another shard (a small key's, under fairness) would wait for it.
    this.slotsReturned(finished);
    this.requestClaim(finished);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
