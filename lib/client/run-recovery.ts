import { InvalidArgumentError, RunNotFoundError, WorkflowError } from '../errors/workflow.errors.js';
import { toPayload } from '../execution/payload.js';
import { GENERATION_FIELD, parseStoredStep, stepField, type StoredStep } from '../execution/step-record.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import { toStepInfos } from './run-info.mapper.js';

const FINAL = new Set(['succeeded', 'failed', 'canceled']);

export interface ForkRunOptions<I = unknown> {
  /** The first step executed again: the records of the calls before it (in call order) are copied. Default:
   *  the run's first call that did not succeed (for a succeeded run, none: every record is copied). */
  fromStep?: string;
  /** The fork's input. Default: the run's input. */
  input?: I;
}

export interface RetryRunOptions {
  /** Forget the records from this step on (its first call, in call order), then retry: the steps before it
   *  are not executed again; it and every step after it are, each with a new idempotency key. */
  fromStep?: string;
  /**
   * 'current': move the run to this app's `version` (docs/versioning.md). A failed or canceled run is
   * retried on it; a run that has not finished (scheduled, queued, waiting, running) only changes version:
   * a pinned run stranded on a version no live worker serves is then claimed by this version's workers
   * (a queued one at once, keeping its place; a waiting one when it wakes). Not together with fromStep.
   */
  onVersion?: 'current';
}

/**
 * Recovering a run on today's code (docs/versioning.md, "Recovering a run failed by a bug"): forkRun makes a
 * new run with copies of the records before a step, retryRun({ fromStep }) forgets the records from a step
 * on and queues the same run again. The records are read and chosen here (Lua decodes none of them) and
 * written or deleted in chunks (lua/rerun.lua), so no call grows with the run's history.
 */
export class RunRecovery {
  constructor(private readonly redis: WorkflowRedis) {}

  /** See WorkflowClient.forkRun. Returns the fork's run id. */
  async forkRun(runId: string, opts: ForkRunOptions = {}): Promise<string> {
    const { shard, run } = await this.finishedRun(runId, 'fork');
    const { ordered } = await this.orderedRecords(shard, runId);
    const cut = opts.fromStep === undefined ? firstUnfinished(ordered) : indexOfStep(ordered, opts.fromStep, runId);
    const input =
      opts.input === undefined ? run.in : (toPayload(opts.input, `The input of forkRun(${JSON.stringify(runId)})`, this.redis.settings.maxPayloadBytes) ?? 'null');
    const records = ordered
      .slice(0, cut)
      .filter(copied)
      .map((s) => ({ field: s.field, value: s.value, compensates: s.record.c === 1 }));
    const forkId = this.redis.keys.newRunId(shard);
    const made = await this.redis.store.fork(shard, forkId, runId, input, records);
    if (made.status === 'NO_SOURCE') throw new RunNotFoundError(runId);
    return forkId;
  }

  /** See WorkflowClient.retryRun with fromStep. */
  async retryFromStep(runId: string, fromStep: string): Promise<void> {
    const { shard, run } = await this.finishedRun(runId, 'retry');
    if (run.st === 'succeeded') {
      throw new InvalidArgumentError(`Run ${runId} succeeded; only failed or canceled runs can be retried. Fork it instead (forkRun(id, { fromStep })).`);
    }
    const { ordered, generation: current } = await this.orderedRecords(shard, runId);
    const at = indexOfStep(ordered, fromStep, runId);
    const forgotten = ordered.slice(at + 1).map((s) => s.field);
    const generation = current + 1;
    const value = `0|S|{"k":"generation","g":${generation}}`;
    const result = await this.redis.store.retryFrom(shard, runId, forgotten, ordered[at].field, value);
    if (!result.ok) throw stillRunning(runId, result.status ?? 'unknown', 'retry');
  }

  private async finishedRun(runId: string, action: 'fork' | 'retry'): Promise<{ shard: ShardRef; run: Record<string, string> }> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) throw new RunNotFoundError(runId);
    await this.redis.ready();
    const run = await this.redis.store.readRun(shard, runId);
    if (!run) throw new RunNotFoundError(runId);
    if (!FINAL.has(run.st) || run.fin) throw stillRunning(runId, run.st, action);
    return { shard, run };
  }

  /** The run's records in call order (as getRunSteps lists them), each with its stored value. */
  private async orderedRecords(shard: ShardRef, runId: string): Promise<{ ordered: (StoredStep & { value: string })[]; generation: number }> {
    const raw = new Map<string, string>();
    await this.redis.store.readStepsPaged(shard, runId, raw);
    const hash = Object.fromEntries(await this.redis.store.withPayloads(shard, raw));
    const generation = hash[GENERATION_FIELD] && /"g":(\d+)/.exec(hash[GENERATION_FIELD]);

    const out: (StoredStep & { value: string })[] = [];
    for (const info of toStepInfos(hash)) {
      const field = stepField(info.name, info.occurrence);
      const value = hash[field];
      if (value !== undefined) out.push({ ...parseStoredStep(field, value), value });
    }
    return { ordered: out, generation: generation ? Number(generation[1]) : 0 };
  }
}

/** Copied into a fork: results and failures the handler saw, and sleeps it went past; not a wait still open
 *  (a child or an event: waited for again) or a compensated step (executed again). */
function copied(s: StoredStep): boolean {
  return s.state === 'S' || s.state === 'F' || (s.state === 'W' && s.record.k === 'sleep');
}

function firstUnfinished(ordered: StoredStep[]): number {
  const at = ordered.findIndex((s) => !copied(s) || s.state === 'F');
  return at < 0 ? ordered.length : at;
}

function indexOfStep(ordered: StoredStep[], name: string, runId: string): number {
  if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('fromStep must be the name of one of the run\'s steps.');
  const at = ordered.findIndex((s) => s.name === name);
  if (at < 0) {
    const names = [...new Set(ordered.map((s) => s.name))];
    throw new InvalidArgumentError(
      `Run ${runId} has no step named ${JSON.stringify(name)}; its steps are ${names.length ? names.map((n) => JSON.stringify(n)).join(', ') : '(none)'} (getRunSteps lists them).`,
    );
  }
  return at;
}

function stillRunning(runId: string, status: string, action: 'fork' | 'retry'): WorkflowError {
  if (status === 'unknown') return new RunNotFoundError(runId);
  return new InvalidArgumentError(
    `Run ${runId} is ${status}; ${action === 'fork' ? 'fork' : 'retry'} a run once it has ${action === 'fork' ? 'finished' : 'failed or been canceled'} (cancel it first with cancelRun, or wait for it).`,
  );
}
