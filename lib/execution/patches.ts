import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { ExecutionState } from './execution-state.js';
import { encodeStepRecord, type StepRecord } from './step-record.js';

/** The step name a patch's marker record is stored under (its kind, 'patch', tells it from a step). */
export function patchStepName(patchId: string): string {
  return `patched:${patchId}`;
}

/** Patch ids follow the rule of step names, which their markers are stored under. */
export function checkPatchId(patchId: unknown, where: string): string {
  if (typeof patchId !== 'string' || patchId.length === 0 || patchId.length > 200) {
    throw new InvalidArgumentError(`${where} needs a patch id of 1 to 200 characters, e.g. ctx.patched('charge-in-cents'), got ${typeof patchId === 'string' ? `${patchId.length} characters` : String(patchId)}.`);
  }
  return patchId;
}

/**
 * ctx.patched(id) and ctx.deprecatePatch(id) of one execution: code that changes a run's steps asks
 * whether this run may take the new path, and the answer comes from the run's records alone (no clock,
 * no flag in memory that another worker would not have), as Temporal's `patched` does:
 * - a marker record of the patch (kind 'patch') exists: the run took the new path when it first got
 *   here: true;
 * - else, the run has records this execution has not reached yet (the code that wrote them went further
 *   without the patch): this is a replay of the old path: false;
 * - else the run reaches this point for the first time: a marker is recorded (committed with the next
 *   step, before anything leaves the process) and the answer is true.
 * The answer for an id is decided once per execution, at its first call.
 */
export class Patches {
  constructor(private readonly run: ExecutionState) {}

  patched(patchId: string): boolean {
    checkPatchId(patchId, 'ctx.patched()');
    const known = this.run.journal.patchAnswers.get(patchId);
    if (known !== undefined) return known;
    const run = this.run;
    run.assertExecuting();
    const journal = run.journal;
    const field = journal.nextField(patchStepName(patchId));
    const stored = journal.steps.get(field);
    let answer: boolean;
    if (stored) {
      journal.assertSameStep(stored, 'patch', '');
      answer = true;
    } else if (journal.hasUnreachedRecords()) {
      answer = false;
    } else {
      answer = true;
      // A replay that only collects compensations writes nothing.
      if (run.mode === 'execute') {
        const parsed: StepRecord = { k: 'patch', n: journal.position(field) };
        run.commits.defer({ field, record: encodeStepRecord(parsed), parsed, hasCompensation: false, committed: () => undefined });
      }
    }
    journal.patchAnswers.set(patchId, answer);
    return answer;
  }

  /** The code has only the patch's new path: the marker is still written for workers that run older code. */
  deprecatePatch(patchId: string): void {
    checkPatchId(patchId, 'ctx.deprecatePatch()');
    this.patched(patchId);
  }
}
