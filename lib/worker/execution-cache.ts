import type { RunExecution } from '../execution/run-execution.js';
import type { ExecutionCacheStats } from '../interfaces/run.interfaces.js';

/**
 * The executions a worker parked with their handler suspended (sticky executions, ARCHITECTURE.md
 * section 8), least recently parked first out: a wake claimed by this worker resumes the handler where it
 * waited instead of replaying the run's whole history. Bounded by a number of runs and an estimate of
 * their memory (Journal.bytes); an execution is taken out when it is resumed, and dropped on any doubt
 * (another claim of the run, a reconnection to Redis, shutdown), after which the run is replayed from its
 * records as without the cache.
 *
 * A Map in insertion order is the LRU: an execution is re-inserted at each park. The Map's old tables are
 * bounded by maxRuns (see executing-runs.ts on why the executing runs are not a Map).
 */
export class ExecutionCache {
  private readonly byId = new Map<string, { execution: RunExecution; bytes: number }>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(
    readonly maxRuns: number,
    readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  /** Keeps a parked execution warm, evicting the least recently parked past the bounds. */
  keep(execution: RunExecution): void {
    this.drop(execution.id);
    const bytes = execution.journal.bytes;
    if (bytes > this.maxBytes) {
      execution.discard();
      this.evictions += 1;
      return;
    }
    this.byId.set(execution.id, { execution, bytes });
    this.bytes += bytes;
    while (this.byId.size > this.maxRuns || this.bytes > this.maxBytes) {
      const oldest = this.byId.keys().next().value as string;
      this.drop(oldest);
      this.evictions += 1;
    }
  }

  /** The warm execution of a run this worker claimed warm, taken out of the cache (counted as a hit or a miss). */
  take(runId: string): RunExecution | undefined {
    const entry = this.byId.get(runId);
    if (!entry) {
      this.misses += 1;
      return undefined;
    }
    this.byId.delete(runId);
    this.bytes -= entry.bytes;
    this.hits += 1;
    return entry.execution;
  }

  /** Forgets a run's warm execution, if any (the run was claimed without it: it went on elsewhere). */
  drop(runId: string): void {
    const entry = this.byId.get(runId);
    if (!entry) return;
    this.byId.delete(runId);
    this.bytes -= entry.bytes;
    entry.execution.discard();
  }

  /** Forgets every warm execution (shutdown, a reconnection to Redis). */
  clear(): void {
    for (const { execution } of this.byId.values()) execution.discard();
    this.byId.clear();
    this.bytes = 0;
  }

  stats(): ExecutionCacheStats {
    return { runs: this.byId.size, bytes: this.bytes, maxRuns: this.maxRuns, maxBytes: this.maxBytes, hits: this.hits, misses: this.misses, evictions: this.evictions };
  }
}
