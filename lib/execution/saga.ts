import { describeError } from '../errors/error-codec.js';
import type { OnFailureContext } from '../interfaces/workflow.interfaces.js';
import type { StepRequest } from './execution-scope.js';
import type { ExecutionState } from './execution-state.js';
import type { StoredStep } from './step-record.js';

interface Compensation {
  field: string;
  name: string;
  record: StoredStep['record'];
  /** `compensated`: the record that marks the step compensated; a compensation that commits itself (a
   *  Redis step's, whose commands and mark are one call) stores it, the others leave it to compensateOne. */
  run: (compensated: string) => unknown;
  commitsItself?: boolean;
}

const COMPENSATION_TRIES = 3;
/** How long the replay that finds a failing run's compensations may take. */
const COLLECT_REPLAY_MS = 10_000;

/**
 * The saga of one execution: the compensations of its succeeded steps (in the order they succeeded), run
 * in reverse when the run fails for good or is canceled, then its `@OnFailure` method. After a takeover of
 * a failing run, a replay of its records collects them first. Made on a run's first compensated step or
 * at its final failure.
 */
export class Saga {
  private readonly compensations: Compensation[] = [];

  constructor(private readonly run: ExecutionState) {}

  /** A step with a compensation succeeded (or was replayed) with `value`. */
  add<T>(field: string, request: StepRequest<T>, value: T, stored: StoredStep | undefined): void {
    this.compensations.push({
      field,
      name: request.name,
      record: stored?.record ?? { k: request.kind },
      run: () => request.compensate!(value),
    });
  }

  /** A Redis step with a compensation succeeded (or was replayed): `run` runs its commands and marks it compensated in one call. */
  addSelfCommitting(field: string, name: string, record: StoredStep['record'], run: (compensated: string) => Promise<unknown>): void {
    this.compensations.push({ field, name, record, run, commitsItself: true });
  }

  /** The compensations not yet committed as compensated, last first. */
  pending(): Compensation[] {
    const steps = this.run.journal.steps;
    return this.compensations.filter((c) => steps.get(c.field)?.state !== 'C').reverse();
  }

  /** After a takeover of a failing or canceled run: replays the records to find the compensations to run. */
  async collect(): Promise<void> {
    const run = this.run;
    run.mode = 'collect';
    let timer: NodeJS.Timeout | undefined;
    // Code between steps that waits on something else (a plain timer, an external promise) must not
    // keep a failing run from its compensations: the replay gets a bounded time.
    const enough = new Promise<void>((resolve) => (timer = setTimeout(resolve, COLLECT_REPLAY_MS)));
    try {
      await Promise.race([run.runHandler(), run.stopped, enough]);
    } catch {
      // The replay ends at the first step that never completed (or wherever the handler failed).
    } finally {
      clearTimeout(timer);
    }
    run.journal.restart();
  }

  /** Runs the compensations in order. False when the run was lost on the way. */
  async compensate(pending: Compensation[]): Promise<boolean> {
    for (const compensation of pending) {
      if (!(await this.compensateOne(compensation))) return false;
    }
    return true;
  }

  /** Runs one compensation (a few tries) and commits it as compensated. False when the run was lost. */
  private async compensateOne(compensation: Compensation): Promise<boolean> {
    const run = this.run;
    const current = run.journal.steps.get(compensation.field);
    const record = JSON.stringify({
      ...(current?.record ?? compensation.record),
      s: 'compensated',
      ...(current?.state === 'S' ? { sc: current.committedAt } : {}),
    });
    for (let attempt = 1; attempt <= COMPENSATION_TRIES; attempt += 1) {
      try {
        await compensation.run(record);
        if (compensation.commitsItself) return true;
        break;
      } catch (error) {
        run.logger.error(`Compensation of step '${compensation.name}' failed (try ${attempt}/${COMPENSATION_TRIES}): ${describeError(error)}`);
        if (attempt === COMPENSATION_TRIES) break;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
    if (run.state !== 'executing') return false;
    try {
      await run.commits.commit(compensation.field, 'C', record);
      return true;
    } catch {
      return false;
    }
  }

  /** Calls the workflow's @OnFailure method; what it throws is logged, never fails the run further. */
  async runOnFailure(method: string, error: Error): Promise<void> {
    const run = this.run;
    const failureContext: OnFailureContext<unknown> = {
      input: run.input,
      run: run.runMeta(),
      error,
      signal: run.signal,
      logger: run.logger,
    };
    try {
      await (run.definition.instance as unknown as Record<string, (c: OnFailureContext) => unknown>)[method](failureContext);
    } catch (hookError) {
      run.logger.error(`@OnFailure ${method}() threw: ${describeError(hookError)}`);
    }
  }
}
