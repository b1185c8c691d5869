import type { CommitResult, WorkflowStore } from '../redis/workflow-store.js';
import { executionScope, type ExecutionScope } from './execution-scope.js';
import type { ExecutionState } from './execution-state.js';
import { parseStoredStep, type RecordState, type StepRecord, type StoredStep } from './step-record.js';

/** How a record is committed (see WorkflowStore.commitStep). */
export type CommitOptions = { hasCompensation?: boolean; ifOpen?: boolean; childId?: string };

/** A succeeded step whose record is not committed yet (see CommitBatcher.defer). */
export interface PendingCommit {
  field: string;
  record: string;
  parsed: StepRecord;
  hasCompensation: boolean;
  /** Called once the record is in Redis, with the record as stored. */
  committed: (stored: StoredStep) => void;
}

/** The scope end-of-turn work is scheduled under: none, so that it does not carry one run's scope. */
const NO_SCOPE = undefined as unknown as ExecutionScope;

/** Batchers whose deferred records are committed at the end of this turn: one immediate for all of them. */
let dueFlushes: CommitBatcher[] = [];

function flushDue(): void {
  const due = dueFlushes;
  dueFlushes = [];
  for (const batcher of due) {
    batcher.flushQueued = false;
    // A refused commit has already stopped the execution (lose); nothing else to do here.
    if (batcher.pending.length > 0) batcher.flush().catch(() => undefined);
  }
}

/**
 * The commits of one execution's step records. A succeeded step's record is committed at the latest at
 * the end of the event-loop turn in which the handler received its result, and always before anything
 * that may act on that result leaves the process: the next step, a child, an event wait, parking, a
 * failure. When the handler returns within that turn (the last step of a run), the record is committed
 * in the same call as the completion. A crash before the commit repeats the step, as a crash between a
 * step's side effect and its commit does.
 *
 * flush runs between every two steps of every run: it is written with then() rather than async/await,
 * since every promise pays the AsyncLocalStorage hooks (see step-attempts.ts).
 */
export class CommitBatcher {
  /** Succeeded steps waiting to be committed: by the end of this event-loop turn, before the run's next
   *  step, child, wait or failure, or together with its completion. */
  pending: PendingCommit[] = [];
  /** Waiting in dueFlushes for the end of this event-loop turn. */
  flushQueued = false;
  private inProgress?: Promise<void>;

  constructor(private readonly run: ExecutionState) {}

  /** Defers a succeeded step's record to the end of this turn (only while the lease surely holds, see StepAttempts). */
  defer(commit: PendingCommit): void {
    this.pending.push(commit);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Scheduled outside the run's scope: the immediate serves every execution deferring in this turn.
    if (dueFlushes.push(this) === 1) executionScope.run(NO_SCOPE, () => setImmediate(flushDue));
  }

  /** Records deferred, or a flush of them still in flight. */
  get outstanding(): boolean {
    return this.pending.length > 0 || this.inProgress !== undefined;
  }

  /** A flush is in flight. */
  get flushing(): boolean {
    return this.inProgress !== undefined;
  }

  /** Commits the deferred records; resolves once they, and any flush in progress, have landed. */
  flush(): Promise<void> {
    const run = this.run;
    if (run.state === 'stopped' && this.pending.length > 0) {
      this.takeNow();
      return Promise.reject(run.stopReason());
    }
    if (this.inProgress) return this.inProgress;
    if (this.pending.length === 0) return Promise.resolve();
    const batch = this.takeNow();
    const landed = () => {
      this.inProgress = undefined;
      // Records deferred while this flush was in flight go next.
      return this.pending.length > 0 ? this.flush() : undefined;
    };
    const failed = (error: unknown) => {
      this.inProgress = undefined;
      throw error;
    };
    const flush =
      batch.length === 1
        ? run.store.commitStep(...this.commitArgs(batch[0])).then((result) => {
            this.inProgress = undefined;
            batch[0].committed(this.apply(result, batch[0].field, 'S', batch[0].record, batch[0].parsed));
            return landed();
          }, failed)
        : Promise.all(batch.map((pending) => this.commitNow(pending.field, 'S', pending.record, { hasCompensation: pending.hasCompensation }, pending.parsed).then(pending.committed))).then(landed, failed);
    this.inProgress = flush;
    return flush;
  }

  private commitArgs(pending: PendingCommit): Parameters<WorkflowStore['commitStep']> {
    const run = this.run;
    return [run.shard, run.id, run.token, pending.field, 'S', pending.record, { hasCompensation: pending.hasCompensation }];
  }

  /** Runs `work` once the step records deferred so far are committed (at once when none is). */
  afterCommits<T>(work: () => Promise<T>): Promise<T> {
    return this.outstanding ? this.flush().then(work) : work();
  }

  /** Waits for a flush in progress and hands over the records still deferred (to commit with the completion). */
  async takeAfterFlush(): Promise<PendingCommit[]> {
    while (this.inProgress) await this.inProgress;
    return this.takeNow();
  }

  takeNow(): PendingCommit[] {
    const taken = this.pending;
    if (taken.length > 0) this.pending = [];
    return taken;
  }

  /** Commits a record now, after the deferred ones before it. */
  async commit(field: string, state: RecordState, record: string, opts: CommitOptions = {}, parsed?: StepRecord): Promise<StoredStep> {
    await this.flush();
    return this.commitNow(field, state, record, opts, parsed);
  }

  commitNow(
    field: string,
    state: RecordState,
    record: string,
    opts: CommitOptions = {},
    /** The record as an object, when the caller has it: spares parsing the JSON it just encoded. */
    parsed?: StepRecord,
  ): Promise<StoredStep> {
    const run = this.run;
    return run.store.commitStep(run.shard, run.id, run.token, field, state, record, opts).then((result) => this.apply(result, field, state, record, parsed));
  }

  /** Keeps a committed record, or stops the execution when Redis refused the commit. */
  private apply(result: CommitResult, field: string, state: RecordState, record: string, parsed?: StepRecord): StoredStep {
    const run = this.run;
    if (!result.ok) {
      run.lose(result.reason);
      throw run.stopReason();
    }
    const journal = run.journal;
    if ('resolved' in result) return journal.keep(parseStoredStep(field, result.resolved));
    const committedAt = result.committedAt ?? Math.round(run.serverNow());
    return parsed ? journal.remember(field, committedAt, state, parsed, record.length) : journal.keep(parseStoredStep(field, `${committedAt}|${state}|${record}`));
  }
}
