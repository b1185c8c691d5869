import { decodeStoredValue, isEncodedPayload } from '../codecs/payload-codec.js';
import { describeError } from '../errors/error-codec.js';
import { NonDeterminismError, NonRetriableError } from '../errors/workflow.errors.js';
import { asStoredText } from '../redis/keys.js';
import { checkStepName } from './call-limits.js';
import type { ExecutionState } from './execution-state.js';
import { GENERATION_FIELD, parseStepField, parseStoredStep, stepField, type RecordState, type StepRecord, type StoredStep } from './step-record.js';

/**
 * The replay journal of one execution: the run's step records (as claimed, read, or committed by this
 * execution), the field each call of the handler maps to (name and occurrence), the order of the calls,
 * and the checks that a replayed call is the one recorded (kind and fingerprint). A replay that finds
 * code asking for something else than the records hold fails the run (NonDeterminismError).
 *
 * Made once per execution; reads the execution's state (mode, fatal) from the execution it is given.
 */
export class Journal {
  readonly steps = new Map<string, StoredStep>();
  /** Step records of the claim that could not be parsed (damaged in Redis). */
  unreadableRecords?: string[];
  /** The run's step generation after retries from a step (GENERATION_FIELD): the least a step executed again gets. */
  generationFloor = 0;
  /** A record names an event's payload instead of carrying it: read before the replay (prepare). */
  namesPayloads = false;
  private readonly occurrences = new Map<string, number>();
  /** ctx.patched()'s answer per patch id, decided at its first call in this pass of the handler (patches.ts). */
  readonly patchAnswers = new Map<string, boolean>();
  /** Each step field this execution reached, and its position in the run's calls (StepRecord.n). */
  private readonly callOrder = new Map<string, number>();
  /** Every step field of the run: stored ones and those this execution reached (for maxStepsPerRun). */
  private readonly knownFields: Set<string>;
  /** An estimate of the memory the records take (see ExecutionCache), from the sizes of their texts. */
  bytes = 0;

  constructor(private readonly run: ExecutionState) {
    const claimed = run.claim.steps;
    this.knownFields = new Set(claimed.keys());
    if (claimed.has(GENERATION_FIELD)) this.knownFields.delete(GENERATION_FIELD);
    for (const [field, value] of claimed) {
      this.keepStored(field, value);
      if (value.includes(',"rp":"')) this.namesPayloads = true;
    }
  }

  /** Records still to read before the replay can start (see prepare). */
  get needsPreparing(): boolean {
    return this.run.claim.stepsCursor !== undefined || this.namesPayloads;
  }

  /**
   * Before the replay: the records of a large run that its claim did not carry (see ClaimedRun.stepsCursor), and
   * the payloads of events that records name instead of carrying (WorkflowStore.withPayloads).
   */
  prepare(): Promise<void> {
    const run = this.run;
    const cursor = run.claim.stepsCursor;
    run.claim.stepsCursor = undefined;
    this.namesPayloads = false;
    const more = new Map<string, string>();
    const read = cursor === undefined ? Promise.resolve() : run.store.readStepsFrom(run.shard, run.id, cursor, more);
    return read.then(() => {
      for (const [field, value] of more) {
        if (field !== GENERATION_FIELD) this.knownFields.add(field);
        run.claim.steps.set(field, value);
      }
      return run.store.withPayloads(run.shard, run.claim.steps);
    }).then(
      (steps) => {
        for (const [field, value] of steps) this.keepStored(field, value);
      },
      (error: unknown) => {
        run.logger.error(`Could not read the run's step records: ${describeError(error)}`);
        run.lose('STEPS_UNREADABLE');
      },
    );
  }

  /**
   * Records a warm claim brought (ClaimedRun.warm): those written since this execution parked. A record
   * read again (a claim that sent every record) replaces the one kept, with the same content.
   */
  takeDelta(steps: Map<string, string>): void {
    for (const [field, value] of steps) {
      this.knownFields.add(field);
      this.keepStored(field, value);
      if (value.includes(',"rp":"')) this.namesPayloads = true;
    }
  }

  private keepStored(field: string, value: string): void {
    if (field === GENERATION_FIELD) {
      const generation = /"g":(\d+)/.exec(value);
      this.generationFloor = generation ? Number(generation[1]) : 0;
      return;
    }
    if (!this.steps.has(field)) this.bytes += recordBytes(field, value.length);
    try {
      this.steps.set(field, parseStoredStep(field, value));
    } catch {
      // Replaying without it would run a committed step again: the run fails instead (RunExecution.executeRunInFull).
      const unreadable = (this.unreadableRecords ??= []);
      if (!unreadable.includes(field)) unreadable.push(field);
    }
  }

  keep(stored: StoredStep): StoredStep {
    this.steps.set(stored.field, stored);
    return stored;
  }

  /** Keeps a record this execution committed, as the object it encoded (no re-parse). */
  remember(field: string, committedAt: number, state: RecordState, record: StepRecord, textLength = 64): StoredStep {
    if (!this.steps.has(field)) this.bytes += recordBytes(field, textLength);
    const stored: StoredStep = { field, ...parseStepField(field), committedAt, state, record };
    this.steps.set(field, stored);
    return stored;
  }

  /** The position of a step field among the run's calls (StepRecord.n). */
  position(field: string): number | undefined {
    return this.callOrder.get(field);
  }

  /** The field of the handler's next call named `name`; fails the run past maxStepsPerRun. */
  nextField(name: string): string {
    checkStepName(name);
    const occurrence = this.occurrences.get(name) ?? 0;
    this.occurrences.set(name, occurrence + 1);
    // as Redis keeps the field (a lone surrogate arrives as U+FFFD), so that a replay finds its record
    const field = stepField(asStoredText(name), occurrence);
    this.callOrder.set(field, this.callOrder.size);
    const run = this.run;
    if (!this.knownFields.has(field) && run.mode === 'execute') {
      this.knownFields.add(field);
      const max = run.settings.maxStepsPerRun;
      if (max !== undefined && this.knownFields.size > max) {
        throw (run.fatal ??= new NonRetriableError(
          `Run ${run.id} reached the limit of ${max} steps per run (maxStepsPerRun) at step '${name}'. ` +
            'Split the work into child workflows (step.runWorkflow), or raise maxStepsPerRun in WorkflowModule.forRoot().',
        ));
      }
    }
    return field;
  }

  /** A replayed call must be the one recorded: the same kind and fingerprint. */
  assertSameStep(stored: StoredStep, kind: string, fingerprint: string, recorded = stored.record.f ?? ''): void {
    if (stored.record.k !== kind || recorded !== fingerprint) {
      throw (this.run.fatal ??= new NonDeterminismError(
        `Step '${stored.name}' (occurrence ${stored.occurrence}) was recorded as ${recorded || stored.record.k} but the code now asks for ${fingerprint || kind}. ` +
          'The workflow code changed under a run in flight: keep old code paths for old runs, or use a new step name.',
      ));
    }
  }

  /**
   * Whether the run has records that this execution has not reached: the code that wrote them went
   * further than this execution has so far (a replay). Patch markers do not count: a marker is found by
   * its patch's id wherever the patch is called, and a retired patch leaves its markers behind.
   */
  hasUnreachedRecords(): boolean {
    for (const [field, stored] of this.steps) {
      if (!this.callOrder.has(field) && stored.record.k !== 'patch') return true;
    }
    return (this.unreadableRecords?.length ?? 0) > 0;
  }

  /** A patch whose marker the run recorded and this execution has not reached (its code may not know the
   *  patch), or undefined. */
  unreachedPatch(): string | undefined {
    for (const [field, stored] of this.steps) {
      if (stored.record.k === 'patch' && !this.callOrder.has(field)) return stored.name.replace(/^patched:/, '');
    }
    return undefined;
  }

  /** The handler runs again from the top (after the replay that collected compensations). */
  restart(): void {
    this.occurrences.clear();
    this.callOrder.clear();
    this.patchAnswers.clear();
  }
}

/** A stored step's result, as a copy the handler may change. */
export function storedResult<T>(stored: StoredStep): T {
  const result = stored.record.r;
  if (isEncodedPayload(result)) return decodeStoredValue(result) as T;
  return (result === undefined ? undefined : structuredClone(result)) as T;
}

/**
 * What a kept record costs in memory, estimated: its field and text as UTF-16, and about 300 bytes of
 * objects (the parsed record, its map entries, the call order and known-field entries). Calibrated by
 * bench/long-runs.ts (worker heap per cached execution).
 */
function recordBytes(field: string, textLength: number): number {
  return 2 * (field.length + textLength) + 300;
}
