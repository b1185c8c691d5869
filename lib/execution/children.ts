import { storedResult } from './journal.js';
import { decodeError, encodeError } from '../errors/error-codec.js';
import { ChildWorkflowError, InvalidArgumentError, TimeoutError, WorkflowError } from '../errors/workflow.errors.js';
import type { ChildEmitOptions, ChildOutcome, ChildRunOptions, WorkflowClass } from '../interfaces/workflow.interfaces.js';
import { checkDuration, checkInstant, quoteName } from './call-limits.js';
import type { ChildStart } from './child-launcher.js';
import type { WaitSpec } from '../redis/workflow-store.js';
import type { ExecutionState } from './execution-state.js';
import { encodeStepRecord, type StoredStep } from './step-record.js';
import { EndOfRecords } from './suspension.js';

type StartedChild = { id: string; workflow: string; joined?: boolean };

/**
 * The handler's child workflows: runWorkflow (a child it waits for; one in the run's own shard is spawned
 * by the call that parks the run, see Parking) and emitWorkflow (a child it starts and does not wait for).
 * Made on the first child of an execution.
 *
 * runChild goes without async/await on its common paths (a replayed result, a first start): see
 * step-attempts.ts.
 */
export class Children {
  constructor(private readonly run: ExecutionState) {}

  runChild(name: string, workflow: string | WorkflowClass, input: unknown, opts: ChildRunOptions = {}): Promise<unknown> {
    const run = this.run;
    try {
      run.assertExecuting();
      if (opts?.timeoutMs !== undefined) checkDuration(opts.timeoutMs, () => `runWorkflow(${quoteName(name)}): timeoutMs`);
      const settles = checkOnFailure(opts?.onFailure, name);
      if (opts?.inheritDeadline !== undefined && typeof opts.inheritDeadline !== 'boolean') {
        throw new InvalidArgumentError(`runWorkflow(${quoteName(name)}): inheritDeadline must be true or false (default false).`);
      }
      const inherits = opts?.inheritDeadline === true;
      const field = run.journal.nextField(name);
      const workflowName = run.settings.children.workflowName(workflow);
      const fingerprint = `child:${workflowName}`;
      const stored = run.journal.steps.get(field);
      if (stored) run.journal.assertSameStep(stored, 'child', fingerprint);
      // A child that failed before a retry (of the attempt, or retryRun) is started again, as a new generation.
      const retryFailed = stored?.state === 'F' && (stored.record.pa ?? run.claim.epoch) < run.claim.epoch && run.mode === 'execute';
      if (stored && !retryFailed) {
        if (stored.state === 'S' || stored.state === 'F') return this.outcome(name, stored, opts, settles);
        if (stored.state === 'W' && stored.record.dl !== undefined && stored.record.dl <= run.serverNow()) {
          return this.timeOutSettled(name, field, fingerprint, stored, opts, settles);
        }
        if (run.mode === 'collect') throw new EndOfRecords();
        return this.waitForChild(name, field, fingerprint, opts, settles, { kind: 'child', field, childId: stored.record.id!, workflow: workflowName, timeoutMs: opts.timeoutMs, settles, inherits });
      }
      if (run.mode === 'collect') throw new EndOfRecords();
      const generation = Math.max(run.journal.generationFloor, retryFailed ? (stored!.record.g ?? 0) + 1 : 0);
      const start = this.childStart(field, generation, workflow, input, opts, field, undefined);
      if (!retryFailed) {
        // A child in this shard is created by the call that parks the run: one call fewer per child, and
        // the children and the wait for them appear together (see Parking.considerParking for a run that goes on).
        const inShard = run.settings.children.childInShard(start, run.shard);
        if (inShard) return this.waitForChild(name, field, fingerprint, opts, settles, { kind: 'child', field, childId: inShard.id, workflow: inShard.workflow, timeoutMs: opts.timeoutMs, spawn: inShard.emit, settles, inherits });
      }
      const started = retryFailed
        ? this.restartFailedChild(field, fingerprint, generation, start, settles, opts)
        : run.parking.track(() => this.startChildAfterCommits(start, opts));
      return started.then((child) =>
        this.waitForChild(name, field, fingerprint, opts, settles, { kind: 'child', field, childId: child.id, workflow: child.workflow, timeoutMs: opts.timeoutMs, joined: child.joined, settles, inherits }),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The run waits for a child; after a warm resume, the child's record (as the claim brought it) decides. */
  private waitForChild(name: string, field: string, fingerprint: string, opts: ChildRunOptions, settles: boolean, wait: WaitSpec & { kind: 'child' }): Promise<unknown> {
    return this.run.parking.waitFor(wait, () => {
      const stored = this.run.journal.steps.get(field);
      if (stored?.state === 'S' || stored?.state === 'F') return this.outcome(name, stored, opts, settles);
      if (stored?.state === 'W' && stored.record.dl !== undefined && stored.record.dl <= this.run.serverNow()) {
        return this.timeOutSettled(name, field, fingerprint, stored, opts, settles);
      }
      // created by the park that suspended the handler: not again
      return this.waitForChild(name, field, fingerprint, opts, settles, { ...wait, spawn: undefined });
    });
  }

  /** A finished child's outcome as runWorkflow gives it: its output or error, or a ChildOutcome under onFailure 'continue'. */
  private outcome(name: string, stored: StoredStep, opts: ChildRunOptions, settles: boolean): Promise<unknown> {
    if (stored.state === 'S') return Promise.resolve(settled(settles, storedResult(stored)));
    const error = deadlineError(name, stored, opts) ?? childError(name, stored);
    return settles ? Promise.resolve({ status: 'failed', error } satisfies ChildOutcome) : Promise.reject(error);
  }

  private timeOutSettled(name: string, field: string, fingerprint: string, stored: StoredStep, opts: ChildRunOptions, settles: boolean): Promise<unknown> {
    const timedOut = this.timeOutChild(name, field, fingerprint, stored, opts);
    return settles ? timedOut.then((output) => settled(true, output), (error: Error) => ({ status: 'failed', error })) : timedOut;
  }

  async emitChild(name: string, workflow: string | WorkflowClass, input: unknown, opts: ChildEmitOptions = {}): Promise<string> {
    const run = this.run;
    run.assertExecuting();
    if (opts?.runAt !== undefined) checkInstant(opts.runAt, () => `emitWorkflow(${quoteName(name)}): runAt`);
    const field = run.journal.nextField(name);
    const fingerprint = `child:${run.settings.children.workflowName(workflow)}`;
    const stored = run.journal.steps.get(field);
    if (stored) {
      run.journal.assertSameStep(stored, 'child-emit', fingerprint);
      return String(storedResult(stored));
    }
    if (run.mode === 'collect') throw new EndOfRecords();
    return run.parking.track(async () => {
      await run.commits.flush();
      const child = await run.settings.children.startChild(this.childStart(field, run.journal.generationFloor, workflow, input, opts, undefined, opts.runAt));
      await run.commits.commit(field, 'S', encodeStepRecord({ k: 'child-emit', f: fingerprint, s: 'succeeded', n: run.journal.position(field) }, JSON.stringify(child.id)), {
        childId: child.id,
      });
      return child.id;
    });
  }

  /** What starting a child of this run at `field` (its `generation`-th start there) needs; `parentField` when the run waits for it. */
  private childStart(
    field: string,
    generation: number,
    workflow: string | WorkflowClass,
    input: unknown,
    opts: ChildRunOptions | ChildEmitOptions,
    parentField: string | undefined,
    runAt: Date | undefined,
  ): ChildStart {
    const run = this.run;
    return {
      parentId: run.id,
      parentRoot: run.settings.shardRoot,
      parentField,
      seed: `${run.id}|${field}|${generation}`,
      workflow,
      input,
      idempotencyKey: opts.idempotencyKey,
      queue: opts.queue,
      runAt,
    };
  }

  /** Starts a child once the steps before it are committed, with its deadline (timeoutMs, inheritDeadline). */
  private startChildAfterCommits(start: ChildStart, opts: ChildRunOptions): Promise<StartedChild> {
    const run = this.run;
    return run.commits.afterCommits(async () => {
      let deadline = opts.timeoutMs === undefined ? undefined : Math.round(run.serverNow()) + opts.timeoutMs;
      if (opts.inheritDeadline) {
        const parents = await run.store.readDeadline(run.shard, run.id);
        if (parents !== undefined && (deadline === undefined || parents < deadline)) deadline = parents;
      }
      return run.settings.children.startChild(deadline === undefined ? start : { ...start, deadlineMs: deadline });
    });
  }

  /** A child wait whose timeout passed: resolved as timed out unless the child's outcome got there first. */
  private async timeOutChild(name: string, field: string, fingerprint: string, stored: StoredStep, opts: ChildRunOptions): Promise<unknown> {
    const timedOut = await this.run.waits.resolveOpenWait(field, 'F', encodeStepRecord({
      k: 'child', f: fingerprint, s: 'failed', n: this.run.journal.position(field), id: stored.record.id,
      e: encodeError(new TimeoutError(`Child workflow '${name}' did not finish within ${opts.timeoutMs} ms.`)),
    }));
    if (timedOut.state === 'S') return storedResult(timedOut);
    // the child's own deadline (the same instant) may have failed it first: the same TimeoutError either way
    throw deadlineError(name, timedOut, opts) ?? (timedOut.record.e?.name === 'TimeoutError' ? decodeError(timedOut.record.e) : childError(name, timedOut));
  }

  /** A child that failed in an earlier epoch, started again under the next generation. */
  private async restartFailedChild(
    field: string,
    fingerprint: string,
    generation: number,
    start: ChildStart,
    settles: boolean,
    opts: ChildRunOptions,
  ): Promise<StartedChild> {
    const run = this.run;
    // The earlier attempt's failed record gives way to a waiting one before the new child starts, so
    // that the new child's outcome (however fast) is delivered onto it.
    const childId = run.settings.children.childRunId(start);
    const record = encodeStepRecord({ k: 'child', f: fingerprint, s: 'waiting', n: run.journal.position(field), id: childId, g: generation, ...(settles ? { oc: 1 } : {}) });
    await run.parking.track(() => run.commits.commit(field, 'W', record, { childId }));
    return run.parking.track(() => this.startChildAfterCommits(start, opts));
  }
}

function childError(name: string, stored: StoredStep): ChildWorkflowError {
  const cause = stored.record.e ? decodeError(stored.record.e) : new WorkflowError('The child run failed.');
  return new ChildWorkflowError(`Child workflow '${name}' (run ${stored.record.id}) failed: ${cause.message}`, { cause });
}

function checkOnFailure(onFailure: unknown, name: string): boolean {
  if (onFailure === undefined || onFailure === 'fail') return false;
  if (onFailure === 'continue') return true;
  throw new InvalidArgumentError(`runWorkflow(${quoteName(name)}): onFailure must be 'fail' (reject at once, the default) or 'continue' (resolve with { status, output | error }), got ${JSON.stringify(String(onFailure))}.`);
}

/** A child's output as runWorkflow gives it: as it is, or as a ChildOutcome under onFailure 'continue'. */
function settled(settles: boolean, output: unknown): unknown {
  return settles ? ({ status: 'succeeded', output } satisfies ChildOutcome) : output;
}

/**
 * A child that failed past the deadline this call gave it (timeoutMs, inheritDeadline): runWorkflow rejects
 * with TimeoutError, as when the parent's own wait for it times out first. Undefined for any other failure.
 */
function deadlineError(name: string, stored: StoredStep, opts: ChildRunOptions): TimeoutError | undefined {
  if (stored.record.e?.name !== 'TimeoutError' || (opts.timeoutMs === undefined && !opts.inheritDeadline)) return undefined;
  const within = opts.timeoutMs === undefined ? "before its parent's deadline" : `within ${opts.timeoutMs} ms`;
  return new TimeoutError(`Child workflow '${name}' did not finish ${within}.`, { cause: decodeError(stored.record.e) });
}
