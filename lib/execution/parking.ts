import { describeError } from '../errors/error-codec.js';
import { PARK_WAITS_PER_CALL, type WaitSpec } from '../redis/workflow-store.js';
import { isPromise } from './promises.js';
import type { ExecutionState } from './execution-state.js';
import { EndOfRecords, PARKED } from './suspension.js';

/**
 * The decision to park one execution. Waits (sleeps, children, events) are collected while steps are in
 * flight, and the run parks once none is: its lease is released in one call with every wait (and the
 * children in its shard it spawns, see Children.runChild), and a timer or a hand-off brings it back.
 *
 * inFlightEnded and endWhenSettled run at the end of every step: plain promise chains, no async (see
 * step-attempts.ts).
 */
/**
 * A wait the handler is suspended on. `decide` makes the wait's decision again from the journal (the wait
 * is over, or it waits again): a warm resume (see resumeWaits) settles the handler's promise with it.
 */
interface SuspendedWait {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  decide(): Promise<unknown>;
}

export class Parking {
  /** Steps and other operations in flight: the run does not park while one is. */
  inFlight = 0;
  private pendingWaits: WaitSpec[] = [];
  /** The handler's promises of pendingWaits, in the same order (kept only when the execution may stay warm). */
  private suspended: SuspendedWait[] = [];
  /** The waits the run parked on, kept for a warm resume. */
  private parkedWaits: SuspendedWait[] = [];
  private parkScheduled = false;

  constructor(private readonly run: ExecutionState) {}

  /** Counts an operation in flight (see inFlight) as ended once `outcome` settles, at once if it is a value. */
  endWhenSettled<T>(outcome: T | Promise<T>): T | Promise<T> {
    if (!isPromise(outcome)) {
      this.inFlightEnded();
      return outcome;
    }
    return outcome.then(
      (value) => {
        this.inFlightEnded();
        return value;
      },
      (error: unknown) => {
        this.inFlightEnded();
        throw error;
      },
    );
  }

  inFlightEnded(): void {
    this.inFlight -= 1;
    this.considerParking();
  }

  /** Counts an operation as in flight, so that the run does not park before it ends. */
  track<T>(operation: () => Promise<T>): Promise<T> {
    this.inFlight += 1;
    let work: Promise<T>;
    try {
      work = operation();
    } catch (error) {
      this.inFlightEnded();
      return Promise.reject(error);
    }
    return this.endWhenSettled(work) as Promise<T>;
  }

  /**
   * The handler waits for `wait`: the run parks, and the handler is either abandoned and replayed later, or,
   * when the worker keeps the execution warm (ExecutionCache), resumed here by the next claim: `decide`
   * then makes the wait's decision again from the records that claim brought (see resumeWaits).
   */
  waitFor<T = never>(wait: WaitSpec, decide: () => Promise<T>): Promise<T> {
    if (this.run.mode === 'collect') return Promise.reject(new EndOfRecords());
    this.pendingWaits.push(wait);
    this.considerParking();
    if (!this.run.settings.keepsWarm) return new Promise<T>(() => undefined);
    return new Promise<T>((resolve, reject) => {
      this.suspended.push({ resolve: resolve as (value: unknown) => void, reject, decide });
    });
  }

  /** The run parked with its handler suspended on waits that a warm resume can settle. */
  get resumable(): boolean {
    return this.parkedWaits.length > 0;
  }

  /**
   * A warm claim resumed the run (RunExecution.resume): each wait it parked on decides again, from the
   * records the claim brought, whether it is over (the handler goes on) or waits again (a new park).
   */
  resumeWaits(): void {
    const waits = this.parkedWaits;
    this.parkedWaits = [];
    for (const wait of waits) {
      let decided: Promise<unknown>;
      try {
        decided = wait.decide();
      } catch (error) {
        decided = Promise.reject(error);
      }
      decided.then(wait.resolve, wait.reject);
    }
  }

  /** The suspended handler will not be resumed (evicted, or the run went on elsewhere). */
  forgetSuspended(): void {
    this.parkedWaits = [];
    this.suspended = [];
  }

  considerParking(): void {
    if (this.parkScheduled || !(this.mayPark() || this.spawnsPending())) return;
    this.parkScheduled = true;
    // Let the handler's other branches (Promise.all) reach their own waits before deciding.
    setImmediate(() => {
      this.parkScheduled = false;
      if (!this.mayPark()) {
        // The run goes on (a step is in flight): its children start now, as they would without the park.
        this.startSpawns();
        return;
      }
      // Steps that succeeded before the waits are committed first; then parking is considered again.
      const commits = this.run.commits;
      if (commits.outstanding) {
        this.startSpawns();
        commits.flush().then(() => this.considerParking(), () => undefined);
        return;
      }
      void this.park();
    });
  }

  /** Children waited for that are to be created by the park (see Children.runChild). */
  private spawnsPending(): boolean {
    return this.pendingWaits.some((wait) => wait.kind === 'child' && wait.spawn !== undefined);
  }

  /** Starts the children the park was to create, each on its own, once the steps before them are committed. */
  private startSpawns(): void {
    const run = this.run;
    if (run.state !== 'executing') return;
    for (const wait of this.pendingWaits) {
      if (wait.kind !== 'child' || !wait.spawn) continue;
      const spawn = wait.spawn;
      wait.spawn = undefined;
      this.track(() => run.commits.afterCommits(() => run.store.emit(run.shard, spawn))).catch(
        (error: unknown) => {
          // The handler already waits for this child: the run is given up, and replayed by the next claim.
          if (run.state !== 'executing') return;
          run.logger.error(`Could not start child run ${spawn.runId}: ${describeError(error)}`);
          run.lose('CHILD_START_FAILED');
        },
      );
    }
  }

  /** Waits are pending, no step is in flight, and the handler has not already returned or thrown (a
   *  Promise.all that rejected leaves its other branches waiting: the run fails instead of parking). */
  private mayPark(): boolean {
    const run = this.run;
    return run.state === 'executing' && !run.handlerSettled && this.pendingWaits.length > 0 && this.inFlight === 0;
  }

  private async park(): Promise<void> {
    const run = this.run;
    run.state = 'parking';
    const waits = this.pendingWaits;
    this.pendingWaits = [];
    const suspended = this.suspended;
    this.suspended = [];
    const waitingFor = JSON.stringify(describeWaits(waits));
    // Kept warm only when every wait of the park can be resumed, and the park is one call (a staged park
    // of a large fan-out stays cold: its waits' records would not fit a claim's delta), and the run has
    // records enough that replaying them costs more than the warm wake's own claim and notice (bench
    // scenario 3: a fan-out parent of 3 children kept warm took 40 % more worker CPU and 20 % more Redis CPU).
    const keepsWarm = run.settings.keepsWarm;
    const warm =
      keepsWarm && suspended.length === waits.length && waits.length <= PARK_WAITS_PER_CALL && run.journal.steps.size >= keepsWarm.minRecords ? keepsWarm : undefined;
    try {
      const result = await run.store.park(run.shard, run.id, run.token, waitingFor, waits, warm);
      if (result.outcome === 'lost') return run.lose(result.reason);
      if (warm) this.parkedWaits = suspended;
      run.parked(PARKED);
    } catch (error) {
      run.logger.error(`Could not park the run: ${describeError(error)}`);
      run.lose('PARK_FAILED');
    }
  }
}

/** What RunInfo.waitingFor shows, kept in the run hash: at most WAITS_SHOWN of each kind, with their total past that
 *  (a fan-out of 10,000 children would otherwise store and carry 300 KB of ids with the park). */
function describeWaits(waits: WaitSpec[]): unknown {
  const graphs = waits.flatMap((w) => (w.kind === 'graph' ? [w.field.slice(w.field.indexOf(':') + 1)] : []));
  const sleeps = waits.filter((w) => w.kind === 'sleep').map((w) => w.field.slice(w.field.indexOf(':') + 1));
  const children = waits.flatMap((w) => (w.kind === 'child' ? [w.childId] : []));
  const events = waits.flatMap((w) => (w.kind === 'event' ? [{ event: w.event, ...(w.key ? { key: w.key } : {}) }] : []));
  return {
    ...shownWaits('sleep', sleeps),
    ...shownWaits('children', children),
    ...shownWaits('events', events),
    ...shownWaits('graphs', graphs),
  };
}

const WAITS_SHOWN = 100;

function shownWaits(kind: string, list: unknown[]): Record<string, unknown> {
  if (list.length === 0) return {};
  if (list.length <= WAITS_SHOWN) return { [kind]: list };
  return { [kind]: list.slice(0, WAITS_SHOWN), [`${kind}Total`]: list.length };
}
