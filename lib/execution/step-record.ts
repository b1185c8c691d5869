import type { StoredError } from '../errors/error-codec.js';

/** S succeeded, F failed, W waiting (sleep, child or event), C compensated. Kept outside the JSON so
 *  that Redis functions can read it without decoding. */
export type RecordState = 'S' | 'F' | 'W' | 'C';

/** A step's record as stored in the run's step hash (our own JSON; the result is embedded as stored). */
export interface StepRecord {
  /** kind: 'step' (ctx.step.run), 'method' (@Step), 'sleep', 'child', 'child-emit', 'event' */
  k: string;
  /** fingerprint: the @Step method and a hash of its arguments, or the child workflow */
  f?: string;
  /** status, for display */
  s?: string;
  /** attempts so far; left out when 1 (a step that succeeded at its first attempt), see `n` */
  a?: number;
  /** call order: the position of this call among every step, sleep, child and wait the run's handler made
   *  (0 first). Steps are listed in this order (clocks cannot order calls made within one millisecond or
   *  on two workers). Records written by Redis functions (waits) have none. Costs the bytes that leaving
   *  out `"a":1` saves, so a small record still fits in 64 bytes. */
  n?: number;
  /** started at (worker clock, for display). Records carry no display-only status (the state letter says
   *  it), so that a small record fits in 64 bytes and the run's step hash stays in Redis's compact encoding. */
  st?: number;
  /** how long the step took (ms); not written any more, read if present */
  d?: number;
  /** generation: raised when a compensated step is executed again after retryRun */
  g?: number;
  /** 1 when the step has a compensation */
  c?: number;
  /** result (JSON value) */
  r?: unknown;
  /** an event's id whose payload is the result, kept once by the run's shard (WorkflowStore.withPayloads) */
  rp?: string;
  e?: StoredError;
  /** a sleep's wake-up time (server clock) */
  u?: number;
  /** a wait's deadline (server clock) */
  dl?: number;
  /** a child's run id */
  id?: string;
  /** an event wait's event and key, and the position in their log of the event it received (server ms,
   *  with a fraction that orders the events of one millisecond): the run's next wait for them takes the
   *  first event after it */
  ev?: string;
  key?: string;
  th?: number;
  /** the run's epoch (raised by every retry) when a child's or event's outcome was delivered */
  pa?: number;
  /** a graph's id (ctx.step.graph), and the node that failed it ('fail' policy) */
  gid?: string;
  ni?: number;
  /** a compensated step: the server time its success was committed (the record now holds 'C') */
  sc?: number;
  /** a child wait under onFailure 'continue' (lua/park.lua) */
  oc?: number;
  /** a child run raced by waitForAny (lua/park.lua) */
  any?: number;
  /** waitForAny's record: the index of the wait that won */
  i?: number;
}

export interface StoredStep {
  field: string;
  name: string;
  occurrence: number;
  committedAt: number;
  state: RecordState;
  record: StepRecord;
}

/**
 * Not a step: the run's step generation, raised by each retry from a step (retryRun with fromStep, lua/rerun.lua),
 * stored in the step hash so that a claim brings it with the records: '<ms>|S|{"k":"generation","g":<n>}'.
 * Every step executed without a record is executed under at least this generation (a new idempotency key).
 */
export const GENERATION_FIELD = '~gen';

export function stepField(name: string, occurrence: number): string {
  return `${occurrence}:${name}`;
}

export function parseStepField(field: string): { name: string; occurrence: number } {
  const colon = field.indexOf(':');
  return { occurrence: Number(field.slice(0, colon)), name: field.slice(colon + 1) };
}

/** Parses '<committed ms>|<state>|<record JSON>'. */
export function parseStoredStep(field: string, value: string): StoredStep {
  const first = value.indexOf('|');
  const second = value.indexOf('|', first + 1);
  const record = JSON.parse(value.slice(second + 1)) as StepRecord;
  return {
    field,
    ...parseStepField(field),
    committedAt: Number(value.slice(0, first)),
    state: value.slice(first + 1, second) as RecordState,
    record,
  };
}

/** Builds a record's JSON with the result text embedded as it is (it is already JSON). */
export function encodeStepRecord(record: Omit<StepRecord, 'r'>, resultText?: string): string {
  const head = JSON.stringify(record);
  return resultText === undefined ? head : `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"r":${resultText}}`;
}
