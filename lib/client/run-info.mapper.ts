import type { StoredError } from '../errors/error-codec.js';
import type { RunEvent, RunInfo, RunStatus, StepInfo } from '../interfaces/run.interfaces.js';
import { parseStoredStep, type RecordState } from '../execution/step-record.js';

const iso = (ms: string | number | undefined) => (ms === undefined || ms === '' ? undefined : new Date(Number(ms)).toISOString());

function parseJson(text: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
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
    info.error = parseJson(h.err) as StoredError;
  }
  if (h.due && Number(h.due) > Number(h.ca)) info.scheduledFor = iso(h.due);
  if (h.sa) info.startedAt = iso(h.sa);
  if (h.fa) info.finishedAt = iso(h.fa);
  if (h.par) info.parentId = h.par;
  if (h.ik) info.idempotencyKey = h.ik;
  if (status === 'waiting' && h.wait) info.waitingFor = parseJson(h.wait);
  if (h.wk) info.workerId = h.wk;
  return info;
}

/** Maps the stored step hash to StepInfo[], in the order the steps started. */
export function toStepInfos(hash: Record<string, string>, serverNowMs = Date.now()): StepInfo[] {
  const steps: StepInfo[] = [];
  for (const [field, value] of Object.entries(hash)) {
    let stored;
    try {
      stored = parseStoredStep(field, value);
    } catch {
      continue;
    }
    const r = stored.record;
    let status = STATUS_OF_STATE[stored.state];
    // A sleep is recorded once, when the run parks; once its time has come it is done.
    if (r.k === 'sleep' && status === 'waiting' && r.u !== undefined && r.u <= serverNowMs) status = 'succeeded';
    const info: StepInfo = {
      name: stored.name,
      occurrence: stored.occurrence,
      kind: r.k,
      status,
      attempts: r.a ?? (r.k === 'sleep' ? 0 : 1),
      startedAt: iso(r.st ?? stored.committedAt),
    };
    if (r.r !== undefined) info.result = r.r;
    if (r.id !== undefined && (r.k === 'child' || r.k === 'child-emit')) info.childRunId = r.id;
    if (r.k === 'child-emit' && typeof r.r === 'string') info.childRunId = r.r;
    if (r.ev !== undefined) info.event = { name: r.ev, ...(r.key ? { key: r.key } : {}) };
    if (r.e) info.error = r.e;
    if (status === 'succeeded' || status === 'failed' || status === 'compensated') {
      info.finishedAt = iso(r.k === 'sleep' && r.u !== undefined ? r.u : stored.committedAt);
    }
    steps.push(info);
  }
  return steps.sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? '') || a.occurrence - b.occurrence);
}

const STATUS_OF_STATE: Record<RecordState, StepInfo['status']> = { S: 'succeeded', F: 'failed', W: 'waiting', C: 'compensated' };

/** Maps stored history entries to RunEvent[]. */
export function toRunEvents(entries: string[]): RunEvent[] {
  return entries.map((entry) => {
    const raw = JSON.parse(entry) as Record<string, unknown>;
    const { type, at, step, attempt, workerId, error, ...data } = raw;
    const event: RunEvent = { type: String(type), at: new Date(Number(at)).toISOString() };
    if (step !== undefined) event.step = String(step);
    if (attempt !== undefined) event.attempt = Number(attempt);
    if (workerId !== undefined) event.workerId = String(workerId);
    if (error !== undefined) event.error = error as StoredError;
    if (Object.keys(data).length > 0) event.data = data;
    return event;
  });
}
