import type { StoredError } from '../errors/error-codec.js';

/** A step's record as stored in the run's step hash (our own JSON; the result is embedded as stored). */
export interface StepRecord {
  /** kind: 'step' (ctx.step.run), 'method' (@Step), 'sleep' */
  k: string;
  /** fingerprint: the @Step method and a hash of its arguments */
  f?: string;
  /** status */
  s: 'succeeded' | 'failed' | 'waiting' | 'compensated';
  /** attempts so far */
  a?: number;
  /** started at (worker clock, for display) */
  st?: number;
  /** generation: raised when a compensated step is executed again after retryRun */
  g?: number;
  /** 1 when the step has a compensation */
  c?: number;
  /** result (JSON value) */
  r?: unknown;
  e?: StoredError;
  /** a sleep's wake-up time (server clock) */
  u?: number;
}

export interface StoredStep {
  field: string;
  name: string;
  occurrence: number;
  committedAt: number;
  record: StepRecord;
  /** The result exactly as stored (JSON text), so that it is parsed once per use. */
  resultText?: string;
}

export function stepField(name: string, occurrence: number): string {
  return `${occurrence}:${name}`;
}

export function parseStepField(field: string): { name: string; occurrence: number } {
  const colon = field.indexOf(':');
  return { occurrence: Number(field.slice(0, colon)), name: field.slice(colon + 1) };
}

/** Parses '<committed ms>|<record JSON>'. */
export function parseStoredStep(field: string, value: string): StoredStep {
  const bar = value.indexOf('|');
  const record = JSON.parse(value.slice(bar + 1)) as StepRecord;
  return { field, ...parseStepField(field), committedAt: Number(value.slice(0, bar)), record };
}

/** Builds a record's JSON with the result text embedded as it is (it is already JSON). */
export function encodeStepRecord(record: Omit<StepRecord, 'r'>, resultText?: string): string {
  const head = JSON.stringify(record);
  return resultText === undefined ? head : `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"r":${resultText}}`;
}
