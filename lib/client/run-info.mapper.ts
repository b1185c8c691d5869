import { PUBLISHED_STEP_PREFIX } from '../execution/published-values.js';
import { decodeStoredValue } from '../codecs/payload-codec.js';
import type { StoredError } from '../errors/error-codec.js';
import type { DelayReason, RunEvent, RunInfo, RunStatus, StepInfo } from '../interfaces/run.interfaces.js';
import { DELAYED_BY_FIELD } from '../redis/workflow-reads.js';
import { GENERATION_FIELD, parseStoredStep, type RecordState } from '../execution/step-record.js';

const iso = (ms: string | number | undefined) => (ms === undefined || ms === '' ? undefined : new Date(Number(ms)).toISOString());

/** Parses stored JSON; text that is not JSON (written by hand, say) is returned as it is. A payload stored
 *  with the codec is decoded, or shown as a placeholder by a process without it. */
export function parseJson(text: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  return decodeStoredValue(value, true);
}

/** A stored error as shown; an encoded one this process cannot decode is named so. */
function asStoredError(value: unknown): StoredError {
  return typeof value === 'string' ? { name: 'EncodedError', message: value } : (value as StoredError);
}

/** Maps a stored run hash to the public RunInfo. */
export function toRunInfo(id: string, h: Record<string, string>): RunInfo {
  const status = h.st as RunStatus;
  const info: RunInfo = {
    id,
    workflow: h.wf,
    queue: h.q,
    status,
    input: parseJson(h.in),
    attempt: Number(h.att ?? 1),
    priority: Number(h.pri ?? 0),
    createdAt: iso(h.ca)!,
  };
  if (h.max) info.maxAttempts = Number(h.max);
  if (status === 'succeeded') info.output = parseJson(h.out);
  if (h.err && (status === 'failed' || status === 'canceled' || status === 'compensating' || h.fin || status === 'scheduled' || status === 'queued')) {
    info.error = asStoredError(parseJson(h.err));
  }
  if (h.due && Number(h.due) > Number(h.ca)) info.scheduledFor = iso(h.due);
  if (h.sa) info.startedAt = iso(h.sa);
  if (h.fa) info.finishedAt = iso(h.fa);
  // a graph's node: '<parent>|<graph id>|<node>' (lua/includes/05-graph.lua)
  if (h.par) info.parentId = h.par.split('|')[0];
  if (h.ik) info.idempotencyKey = h.ik;
  if (status === 'waiting' && h.wait) info.waitingFor = parseJson(h.wait);
  if (h.wk) info.workerId = h.wk;
  if (h.pg !== undefined) info.progress = parseJson(h.pg);
  if (h.fk) info.flowKey = h.fk;
  if (status === 'queued' && h[DELAYED_BY_FIELD]) info.delayedBy = h[DELAYED_BY_FIELD] as DelayReason;
  if (status === 'scheduled' && h.dk) info.delayedBy = 'debounce';
  // 'v': the version, with '*' before it for a pinned run (lua/includes/00-versions.lua)
  if (h.v) {
    info.version = h.v.startsWith('*') ? h.v.slice(1) : h.v;
    if (h.v.startsWith('*')) info.pinned = true;
  }
  if (h.cn) info.continuedAs = h.cn;
  if (h.cf) info.continuedFrom = h.cf;
  if (h.frk) info.forkedFrom = h.frk;
  return info;
}

/**
 * Maps the stored step hash to StepInfo[], in the order the run made the calls (StepRecord.n). Records
 * without a call order (waits written by Redis functions, records of older versions) go in by start time:
 * before the first ordered step that started later.
 */
export function toStepInfos(hash: Record<string, string>, serverNowMs = Date.now()): StepInfo[] {
  const ordered: { n: number; step: StepInfo }[] = [];
  const unordered: StepInfo[] = [];
  for (const [field, value] of Object.entries(hash)) {
    // a wait of a waitForAny race ('<occurrence>~<index>:<name>', see lib/execution/races.ts): shown under
    // the race's name until the race is decided, then only the race's own record is
    const race = /^(\d+)~\d+:/.exec(field);
    if (race && hash[`${race[1]}:${field.slice(race[0].length)}`] !== undefined) continue;
    if (field === GENERATION_FIELD) continue;
    let stored;
    try {
      stored = parseStoredStep(race ? `${race[1]}:${field.slice(race[0].length)}` : field, value);
    } catch {
      continue;
    }
    const r = stored.record;
    let status = STATUS_OF_STATE[stored.state];
    // A sleep is recorded once, when the run parks; once its time has come it is done.
    if (r.k === 'sleep' && status === 'waiting' && r.u !== undefined && r.u <= serverNowMs) status = 'succeeded';
    // ctx.setEvent's record (lib/execution/published-values.ts): shown under its key
    const published = stored.name.startsWith(PUBLISHED_STEP_PREFIX);
    const info: StepInfo = {
      name: published ? stored.name.slice(PUBLISHED_STEP_PREFIX.length) : stored.name,
      occurrence: stored.occurrence,
      kind: r.k,
      status,
      attempts: r.a ?? (r.k === 'sleep' ? 0 : 1),
      startedAt: iso(r.d !== undefined ? (r.sc ?? stored.committedAt) - r.d : (r.st ?? stored.committedAt)),
    };
    if (r.r !== undefined) info.result = decodeStoredValue(r.r, true);
    if (r.id !== undefined && (r.k === 'child' || r.k === 'child-emit')) info.childRunId = r.id;
    if (r.k === 'child-emit' && typeof r.r === 'string') info.childRunId = r.r;
    if (r.k === 'graph' && r.gid !== undefined) info.graphId = r.gid;
    if (r.ev !== undefined) info.event = { name: r.ev, ...(r.key ? { key: r.key } : {}) };
    if (r.e) info.error = asStoredError(decodeStoredValue(r.e, true));
    if (status === 'succeeded' || status === 'failed' || status === 'compensated') {
      info.finishedAt = iso(r.k === 'sleep' && r.u !== undefined ? r.u : stored.committedAt);
    }
    if (typeof r.n === 'number') ordered.push({ n: r.n, step: info });
    else unordered.push(info);
  }
  ordered.sort((a, b) => a.n - b.n);
  unordered.sort(byStart);
  const steps: StepInfo[] = [];
  let next = 0;
  for (const { step } of ordered) {
    while (next < unordered.length && byStart(unordered[next], step) < 0) steps.push(unordered[next++]);
    steps.push(step);
  }
  while (next < unordered.length) steps.push(unordered[next++]);
  return steps;
}

const byStart = (a: StepInfo, b: StepInfo) => (a.startedAt ?? '').localeCompare(b.startedAt ?? '') || a.occurrence - b.occurrence;

const STATUS_OF_STATE: Record<RecordState, StepInfo['status']> = { S: 'succeeded', F: 'failed', W: 'waiting', C: 'compensated' };

/** Maps stored history entries to RunEvent[]. */
export function toRunEvents(entries: string[]): RunEvent[] {
  return entries.flatMap((entry) => {
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(entry) as Record<string, unknown>;
    } catch {
      return [];
    }
    const { type, at, step, attempt, workerId, error, ...data } = raw;
    const event: RunEvent = { type: String(type), at: new Date(Number(at)).toISOString() };
    if (step !== undefined) event.step = String(step);
    if (attempt !== undefined) event.attempt = Number(attempt);
    if (workerId !== undefined) event.workerId = String(workerId);
    if (error !== undefined) event.error = error as StoredError;
    if (Object.keys(data).length > 0) event.data = data;
    return [event];
  });
}

const STEP_EVENT_OF_STATE: Partial<Record<RecordState, string>> = { S: 'step-succeeded', F: 'step-failed', C: 'step-compensated' };

/** History entries after which a step committed in the same millisecond cannot have happened. */
const CLOSING_TYPES = new Set(['succeeded', 'failed', 'canceled', 'retrying', 'parked', 'released', 'lease-expired', 'timed-out']);
/** Written when the handler has failed: every success and failure of its steps came first, compensations after. */
const FAILING_TYPES = new Set(['failing', 'compensating']);

/** Whether a step outcome committed in the same millisecond as a history entry happened before it. */
function endsBefore(step: RunEvent, entry: RunEvent): boolean {
  return CLOSING_TYPES.has(entry.type) || (FAILING_TYPES.has(entry.type) && step.type !== 'step-compensated');
}

/**
 * The run's history with its step outcomes merged in, in server-time order. Step commits are not
 * history entries (that would cost a write per step on the hot path): each step's record keeps its
 * latest state and the server time it was written, which becomes one 'step-succeeded', 'step-failed'
 * or 'step-compensated' event (a compensated step also shows the success it undid). A step that failed
 * and later succeeded (after retryRun) shows its latest outcome only; waits (sleeps, children, events)
 * show as the run's 'parked' and 'woken' entries.
 */
export function mergeStepEvents(history: RunEvent[], steps: Record<string, string>): RunEvent[] {
  // Same-millisecond commits are ordered by when their steps started (commit time minus duration), then
  // by occurrence: sequential steps can commit within one millisecond.
  const stepEvents: { ms: number; start: number; n?: number; event: RunEvent }[] = [];
  for (const [field, value] of Object.entries(steps)) {
    if (field === GENERATION_FIELD) continue;
    let stored;
    try {
      stored = parseStoredStep(field, value);
    } catch {
      continue;
    }
    const type = STEP_EVENT_OF_STATE[stored.state];
    if (!type || !Number.isFinite(stored.committedAt)) continue;
    const r = stored.record;
    const event: RunEvent = { type, at: new Date(stored.committedAt).toISOString(), step: stored.name };
    if (r.a !== undefined) event.attempt = r.a;
    else if (r.n !== undefined && (r.k === 'step' || r.k === 'method')) event.attempt = 1; // 'a' is left out when 1
    if (r.e) event.error = asStoredError(decodeStoredValue(r.e, true));
    event.data = { occurrence: stored.occurrence, kind: r.k, ...(r.id !== undefined ? { childRunId: r.id } : {}) };
    const startOf = (ms: number) => (r.d !== undefined ? ms - r.d : (r.st ?? ms));
    stepEvents.push({ ms: stored.committedAt, start: startOf(r.sc ?? stored.committedAt), n: r.n, event });
    if (stored.state === 'C' && r.sc !== undefined) {
      // the success that was compensated later: its commit time is kept in the compensated record
      const { error: _error, ...succeeded } = event;
      stepEvents.push({ ms: r.sc, start: startOf(r.sc), n: r.n, event: { ...succeeded, type: 'step-succeeded', at: new Date(r.sc).toISOString() } });
    }
  }
  // Compensations run after the handler failed (after every step outcome of the same millisecond), and
  // in reverse order of their steps.
  const compensated = (e: { event: RunEvent }) => (e.event.type === 'step-compensated' ? 1 : 0);
  const occurrence = (e: { event: RunEvent }) => e.event.data!.occurrence as number;
  stepEvents.sort((a, b) => {
    const order = a.ms - b.ms || compensated(a) - compensated(b);
    if (order !== 0) return order;
    const forward = (a.n !== undefined && b.n !== undefined ? a.n - b.n : a.start - b.start) || occurrence(a) - occurrence(b);
    return compensated(a) ? -forward : forward;
  });
  const merged: RunEvent[] = [];
  let next = 0;
  for (const entry of history) {
    const ms = Date.parse(entry.at);
    while (next < stepEvents.length && (stepEvents[next].ms < ms || (stepEvents[next].ms === ms && endsBefore(stepEvents[next].event, entry)))) {
      merged.push(stepEvents[next++].event);
    }
    merged.push(entry);
  }
  while (next < stepEvents.length) merged.push(stepEvents[next++].event);
  return merged;
}
