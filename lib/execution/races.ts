import { decodeError, describeError } from '../errors/error-codec.js';
import { ChildWorkflowError, InvalidArgumentError, RunNotFoundError, WorkflowError } from '../errors/workflow.errors.js';
import type { RaceResult, RaceWait } from '../interfaces/workflow.interfaces.js';
import type { WaitSpec } from '../redis/workflow-store.js';
import { checkDuration, checkEvent, quoteName } from './call-limits.js';
import type { ExecutionState } from './execution-state.js';
import { encodeStepRecord, type RecordState, type StepRecord, type StoredStep } from './step-record.js';
import { EndOfRecords } from './suspension.js';

/** The most waits one waitForAny races: they are parked on in one call (PARK_WAITS_PER_CALL). */
export const MAX_RACE_WAITS = 32;

export type RaceEntry = { kind: 'run'; runId: string } | { kind: 'event'; event: string; key: string } | { kind: 'sleep'; ms: number };

/** A race the run parks on: what a warm resume decides again from. */
interface Race {
  name: string;
  field: string;
  fingerprint: string;
  entries: RaceEntry[];
  fields: string[];
  /** A raced run's workflow (from its registration), by index. */
  workflows: (string | undefined)[];
}

/** A wait of the race that is over: its index, and its outcome as a step record. */
interface Finish {
  index: number;
  state: 'S' | 'F';
  record: StepRecord;
}

/**
 * ctx.step.waitForAny: races child runs, events and sleeps. Each wait of the race is an ordinary wait on a
 * field of its own ('<occurrence>~<index>:<name>', a field no step can have: a step's starts with digits
 * and ':'), so sleeps, event deliveries and child outcomes reach the run as they always do; a raced run
 * is parked on as an 'any' wait, whose outcome wakes the run as an event's does (lua/park.lua). The run
 * parks once on all of them. The first replay that finds one over records the winner on the step's own
 * field (kind 'any'), and every later replay returns that record; the waits that lost are forgotten
 * (their event and run registrations dropped, lua/races.lua); raced runs go on.
 */
export class Races {
  constructor(private readonly run: ExecutionState) {}

  async waitForAny(name: string, waits: readonly RaceWait[]): Promise<RaceResult> {
    const run = this.run;
    run.assertExecuting();
    const entries = checkWaits(name, waits);
    const field = run.journal.nextField(name);
    const fingerprint = `any:${entries.map((e) => e.kind[0]).join('')}`;
    const stored = run.journal.steps.get(field);
    if (stored) {
      run.journal.assertSameStep(stored, 'any', fingerprint);
      return this.outcome(name, stored);
    }
    if (run.mode === 'collect') throw new EndOfRecords();
    const fields = entries.map((_, index) => raceField(field, index));
    const over = this.firstOver(entries, fields);
    if (over) return this.decide(name, field, fingerprint, entries, fields, over);
    const registered = await run.parking.track(async () => {
      await run.commits.flush();
      return Promise.all(entries.map((entry, index) => this.register(entry, fields[index], index)));
    });
    const first = registered.find((r): r is Finish => typeof r === 'object');
    if (first) return this.decide(name, field, fingerprint, entries, fields, first);
    const race: Race = { name, field, fingerprint, entries, fields, workflows: registered.map((r) => (typeof r === 'string' ? r : undefined)) };
    return this.park(race);
  }

  /**
   * Parks on every wait of the race. A worker that keeps the execution warm resumes it here: the race decides
   * again from the records the claim brought (the first wait's decision; the others' never settle), and parks
   * again on all of them when none is over yet (their registrations stand).
   */
  private park(race: Race): Promise<RaceResult> {
    const run = this.run;
    let first!: Promise<RaceResult>;
    race.entries.forEach((entry, index) => {
      const decide = index === 0 ? () => this.resume(race) : () => new Promise<RaceResult>(() => undefined);
      const parked = run.parking.waitFor<RaceResult>(this.waitSpec(entry, race.fields[index], race.workflows[index]), decide);
      if (index === 0) first = parked;
    });
    return first;
  }

  private resume(race: Race): Promise<RaceResult> {
    const stored = this.run.journal.steps.get(race.field);
    if (stored) {
      try {
        return Promise.resolve(this.outcome(race.name, stored));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const over = this.firstOver(race.entries, race.fields);
    if (over) return this.decide(race.name, race.field, race.fingerprint, race.entries, race.fields, over);
    return this.park(race);
  }

  /** Registers one wait of the race: its outcome when it is over already, else (a raced run) the run's workflow. */
  private async register(entry: RaceEntry, field: string, index: number): Promise<Finish | string | undefined> {
    const run = this.run;
    if (entry.kind === 'sleep') return entry.ms === 0 ? { index, state: 'S', record: { k: 'sleep', r: null } } : undefined;
    if (entry.kind === 'event') {
      const matched = await run.store.waitEvent(entry.event, entry.key, run.id, field, run.waits.eventThresholdFor(entry.event, entry.key), run.settings.shardRoot);
      return matched === undefined ? undefined : { index, state: 'S', record: JSON.parse(matched) as StepRecord };
    }
    const answer = await run.store.waitRun(entry.runId, run.id, field, run.settings.shardRoot);
    if (answer === undefined) throw new RunNotFoundError(entry.runId);
    if ('state' in answer) return { index, state: answer.state, record: JSON.parse(answer.record) as StepRecord };
    return answer.workflow;
  }

  private waitSpec(entry: RaceEntry, field: string, workflow: string | undefined): WaitSpec {
    if (entry.kind === 'sleep') return { kind: 'sleep', field, spec: `in:${Math.floor(entry.ms)}` };
    if (entry.kind === 'event') return { kind: 'event', field, event: entry.event, key: entry.key };
    return { kind: 'child', field, childId: entry.runId, workflow: workflow ?? '', raced: true };
  }

  /** The wait of the race that was over first, by the server's clock (the lowest index among ties). */
  private firstOver(entries: RaceEntry[], fields: string[]): Finish | undefined {
    const run = this.run;
    let best: { at: number; finish: Finish } | undefined;
    entries.forEach((entry, index) => {
      const sub = run.journal.steps.get(fields[index]);
      if (!sub) return;
      let at: number | undefined;
      if (entry.kind === 'sleep') {
        if (sub.record.u !== undefined && sub.record.u <= run.serverNow()) at = sub.record.u;
      } else if (sub.state === 'S' || sub.state === 'F') {
        at = sub.committedAt;
      }
      if (at !== undefined && (!best || at < best.at)) best = { at, finish: { index, state: sub.state === 'F' ? 'F' : 'S', record: sub.record } };
    });
    return best?.finish;
  }

  /** Records the race's winner (unless a replay recorded one first), forgets the losers, returns the outcome. */
  private async decide(name: string, field: string, fingerprint: string, entries: RaceEntry[], fields: string[], winner: Finish): Promise<RaceResult> {
    const run = this.run;
    const w = winner.record;
    const entry = entries[winner.index];
    const head: StepRecord = { k: 'any', f: fingerprint, s: winner.state === 'S' ? 'succeeded' : 'failed', n: run.journal.position(field), i: winner.index };
    if (entry.kind === 'event') Object.assign(head, { ev: entry.event, key: entry.key, th: w.th });
    if (entry.kind === 'run') head.id = entry.runId;
    if (winner.state === 'F') head.e = w.e;
    const text = encodeStepRecord(head, winner.state === 'S' ? JSON.stringify(w.r ?? null) : undefined);
    const standing = await run.parking.track(() => run.waits.resolveOpenWait(field, winner.state as RecordState, text));
    const losers = entries.flatMap((e, index) => {
      if (index === standing.record.i || e.kind === 'sleep') return [];
      const sub = run.journal.steps.get(fields[index]);
      if (sub && sub.state !== 'W') return [];
      return [run.store.forgetWaiter(e.kind === 'event' ? e : { racedId: e.runId }, run.id, fields[index])];
    });
    if (losers.length > 0) {
      // Best effort: a registration left behind delivers to a field nothing reads, and wakes nothing.
      await run.parking.track(() => Promise.all(losers)).catch((error: unknown) => run.logger.warn(`waitForAny(${quoteName(name)}): could not drop the waits that lost: ${describeError(error)}`));
    }
    return this.outcome(name, standing);
  }

  private outcome(name: string, stored: StoredStep): RaceResult {
    const r = stored.record;
    if (r.ev !== undefined && r.th !== undefined) this.run.waits.keepEventThreshold(r.ev, r.key ?? '', r.th);
    if (stored.state === 'F') {
      const cause = r.e ? decodeError(r.e) : new WorkflowError('The raced run failed.');
      throw new ChildWorkflowError(`Run ${r.id} raced by waitForAny(${quoteName(name)}) failed: ${cause.message}`, { cause });
    }
    return { index: r.i ?? 0, value: r.r === undefined ? null : structuredClone(r.r) };
  }
}

/** The field of the `index`-th wait of the race at `field` ('<occurrence>:<name>'). */
export function raceField(field: string, index: number): string {
  const colon = field.indexOf(':');
  return `${field.slice(0, colon)}~${index}${field.slice(colon)}`;
}

/** The waits of a race, checked before anything is counted or written (shared with runInline). */
export function checkWaits(name: string, waits: unknown): RaceEntry[] {
  const where = () => `waitForAny(${quoteName(name)})`;
  if (!Array.isArray(waits) || waits.length === 0 || waits.length > MAX_RACE_WAITS) {
    throw new InvalidArgumentError(`${where()} needs an array of 1 to ${MAX_RACE_WAITS} waits ({ runId } | { event, key? } | { sleepMs }); split a larger race into several.`);
  }
  return waits.map((wait: unknown, index): RaceEntry => {
    const w = (wait ?? {}) as Record<string, unknown>;
    const shapes = ['runId', 'event', 'sleepMs'].filter((k) => w[k] !== undefined);
    if (typeof wait !== 'object' || shapes.length !== 1) {
      throw new InvalidArgumentError(`${where()}: wait ${index} must be exactly one of { runId }, { event, key? } or { sleepMs }.`);
    }
    if (shapes[0] === 'runId') {
      if (typeof w.runId !== 'string' || w.runId === '') throw new InvalidArgumentError(`${where()}: wait ${index} needs a runId (what emitWorkflow returned).`);
      return { kind: 'run', runId: w.runId };
    }
    if (shapes[0] === 'event') return { kind: 'event', ...checkEvent(w.event, w.key, () => `${where()}: wait ${index}`) };
    return { kind: 'sleep', ms: checkDuration(w.sleepMs, () => `${where()}: wait ${index}'s sleepMs`) };
  });
}
