import { InvalidArgumentError, RedisStepGuardError } from '../errors/workflow.errors.js';
import { decodeError } from '../errors/error-codec.js';
import type { RedisCompensation, RedisStepOptions, RedisTx } from '../interfaces/redis-step.interfaces.js';
import type { ExecutionState } from './execution-state.js';
import { storedResult } from './journal.js';
import { isPromiseLike } from './promises.js';
import { RedisTxBuilder } from './redis-tx.js';
import { encodeStepRecord, parseStoredStep, type StoredStep } from './step-record.js';
import { EndOfRecords } from './suspension.js';

/**
 * The Redis steps of one execution (ctx.step.redis): the commands a step queues run inside the call that
 * commits it (wf1_commit_redis_step), so their effect on Redis happens exactly once. A replay returns the
 * recorded replies; a crash before the call leaves nothing done; a repeated call (a retry through a lost
 * connection, a takeover) finds the record and runs nothing. One call per step, as a plain step's commit.
 */
export class RedisSteps {
  constructor(private readonly run: ExecutionState) {}

  execute(name: string, build: (tx: RedisTx) => void, opts: RedisStepOptions = {}): Promise<unknown[]> {
    const run = this.run;
    try {
      run.assertExecuting();
      const field = run.journal.nextField(name);
      const stored = run.journal.steps.get(field);
      if (stored) run.journal.assertSameStep(stored, 'redis', '');
      if (opts?.compensate !== undefined && typeof opts.compensate !== 'function') {
        throw new InvalidArgumentError(`step.redis('${name}'): compensate must be a function that queues commands on tx.`);
      }
      if (stored?.state === 'S' || (stored?.state === 'C' && run.mode === 'collect')) {
        const replies = storedResult<unknown[]>(stored);
        if (stored.state === 'S' && opts?.compensate) this.addCompensation(field, name, stored, replies, opts.compensate);
        return Promise.resolve(replies);
      }
      if (run.mode === 'collect') throw new EndOfRecords();
      const plan = this.plan(name, build);
      return run.parking.track(() => run.commits.afterCommits(() => this.commit(field, name, plan, opts?.compensate)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Runs `build` on a fresh tx and checks what it queued: nothing is sent when anything is wrong. */
  private plan(name: string, build: (tx: RedisTx, replies: unknown[]) => void, replies: unknown[] = []): { keys: string[]; args: string[] } {
    const run = this.run;
    if (typeof build !== 'function') throw new InvalidArgumentError(`step.redis('${name}') needs a function that queues commands on tx.`);
    const where = run.settings.redisSteps ?? { prefix: '', cluster: false };
    const builder = new RedisTxBuilder({ ...where, shardRoot: run.settings.shardRoot, maxPayloadBytes: run.settings.maxPayloadBytes, step: name });
    const returned: unknown = build(builder.tx, replies);
    if (isPromiseLike(returned)) {
      throw new InvalidArgumentError(
        `Redis step '${name}': its function returned a promise. Queue the commands synchronously (compute what you need in an earlier step). Nothing was written.`,
      );
    }
    return builder.plan();
  }

  /** The step's compensation: its commands and the record marking the step compensated go in one call. */
  private addCompensation(field: string, name: string, stored: StoredStep, replies: unknown[], compensate: RedisCompensation): void {
    const run = this.run;
    run.saga.addSelfCommitting(field, name, stored.record, async (compensated) => {
      const plan = this.plan(`${name}' (compensation of '${name}`, compensate, replies);
      const result = await run.store.commitRedisStep(run.shard, run.id, run.token, field, compensated, '', plan, 'compensate');
      if (!result.ok) {
        run.lose(result.reason);
        throw run.stopReason();
      }
      if ('guardFailedAt' in result) throw new RedisStepGuardError(`The compensation of Redis step '${name}' has a guard that did not hold; none of its commands ran.`);
      run.journal.keep(parseStoredStep(field, 'replies' in result ? `${result.committedAt}|C|${compensated}` : result.resolved));
    });
  }

  private async commit(field: string, name: string, plan: { keys: string[]; args: string[] }, compensate?: RedisCompensation): Promise<unknown[]> {
    const run = this.run;
    run.assertExecuting();
    const fields = { k: 'redis', n: run.journal.position(field), st: run.nextStartTime() };
    const success = encodeStepRecord(fields);
    const guardError = new RedisStepGuardError(`Redis step '${name}': a guard (tx.expect) did not hold when it committed, so none of its commands ran.`);
    const failure = encodeStepRecord({ ...fields, e: { name: guardError.name, message: guardError.message } });
    const result = await run.store.commitRedisStep(run.shard, run.id, run.token, field, success.slice(0, -1), failure, plan);
    if (!result.ok) {
      run.lose(result.reason);
      throw run.stopReason();
    }
    if ('guardFailedAt' in result) {
      run.journal.keep(parseStoredStep(field, `${result.guardFailedAt}|F|${failure}`));
      throw guardError;
    }
    const stored = run.journal.keep(
      parseStoredStep(field, 'replies' in result ? `${result.committedAt}|S|${success.slice(0, -1)},"r":${result.replies}}` : result.resolved),
    );
    // The step had a record already (a repeated call after a lost reply): its replies, or its failure.
    if (stored.state !== 'S') throw stored.record.e ? decodeError(stored.record.e) : new RedisStepGuardError(`Redis step '${name}' failed.`);
    const replies = storedResult<unknown[]>(stored);
    if (compensate) this.addCompensation(field, name, stored, storedResult<unknown[]>(stored), compensate);
    return replies;
  }
}
