import type { GraphInfo, RunEvent, RunInfo, RunPage, StepInfo } from '../interfaces/run.interfaces.js';
import { absolute, brief, duration, errorLine, progressLine, relative, when } from './format.js';
import { renderFields, renderTable } from './table.js';

/** What `runs show` prints, and its --json shape: the client's getRun, getRunSteps and getRunHistory. */
export interface RunDetail {
  run: RunInfo;
  steps: StepInfo[];
  history: RunEvent[];
  /** The graphs of its graph steps (getRunGraphs), when it has any. */
  graphs?: GraphInfo[];
}

export function runsTable(page: RunPage, now: number, width: number): string {
  if (page.runs.length === 0) return 'No runs match.';
  // a VERSION column once any run has one (apps without the version option list as before)
  const versioned = page.runs.some((run) => run.version !== undefined);
  const rows = page.runs.map((run) => [
    run.id,
    run.workflow,
    run.status,
    `${run.attempt}/${run.maxAttempts ?? '-'}`,
    ...(versioned ? [versionCell(run)] : []),
    relative(run.createdAt, now),
    runDetail(run, now),
  ]);
  const table = renderTable(
    [
      { header: 'ID' },
      { header: 'WORKFLOW' },
      { header: 'STATUS' },
      { header: 'ATTEMPT', alignRight: true },
      ...(versioned ? [{ header: 'VERSION' }] : []),
      { header: 'CREATED' },
      { header: 'DETAIL', flex: true },
    ],
    rows,
    width,
  );
  const more = page.cursor ? `\nMore runs: add --cursor ${page.cursor}` : '';
  return `${table}\n\n${page.runs.length} run(s).${more}`;
}

/** A run's version, and whether it is pinned to it. */
function versionCell(run: RunInfo): string {
  if (run.version === undefined) return '-';
  return run.pinned ? `${run.version} (pinned)` : run.version;
}

/** The one thing worth knowing about a run in a listing. */
function runDetail(run: RunInfo, now: number): string {
  switch (run.status) {
    case 'succeeded':
      return `output ${brief(run.output)}`;
    case 'failed':
    case 'canceled':
    case 'compensating':
      return errorLine(run.error);
    case 'waiting':
      return run.progress !== undefined ? `progress ${progressLine(run.progress)}; waiting for ${brief(run.waitingFor)}` : `waiting for ${brief(run.waitingFor)}`;
    case 'scheduled':
      return run.scheduledFor ? `due ${relative(run.scheduledFor, now)}` : '';
    case 'queued':
      if (run.delayedBy === 'paused') return 'held back: its workflow is paused';
      return run.workerId ? `worker ${run.workerId}` : '';
    default:
      if (run.progress !== undefined) return `progress ${progressLine(run.progress)}`;
      return run.workerId ? `worker ${run.workerId}` : '';
  }
}

export function runView(detail: RunDetail, now: number, width: number): string {
  const { run, steps, history } = detail;
  const payloadWidth = Math.max(40, width - 16);
  const fields = renderFields([
    ['Run', run.id],
    ['Workflow', run.workflow],
    ['Queue', run.queue],
    ['Status', run.delayedBy === 'paused' ? `${run.status} (held back: its workflow is paused; workflows resume ${run.workflow})` : run.delayedBy ? `${run.status} (held back: ${run.delayedBy})` : run.status],
    ['Attempt', `${run.attempt} of ${run.maxAttempts ?? '?'}`],
    ['Priority', run.priority !== 0 ? String(run.priority) : undefined],
    ['Version', run.version !== undefined ? versionCell(run) : undefined],
    ['Created', when(run.createdAt, now)],
    ['Scheduled for', when(run.scheduledFor, now)],
    ['Started', when(run.startedAt, now)],
    ['Finished', when(run.finishedAt, now)],
    ['Took', run.startedAt && run.finishedAt ? duration(Date.parse(run.finishedAt) - Date.parse(run.startedAt)) : undefined],
    ['Parent', run.parentId],
    ['Idempotency key', run.idempotencyKey],
    ['Flow key', run.flowKey],
    ['Continued from', run.continuedFrom],
    ['Continued as', run.continuedAs ? `${run.continuedAs} (follow it with: runs show ${run.continuedAs})` : undefined],
    ['Forked from', run.forkedFrom],
    ['Worker', run.workerId],
    ['Waiting for', run.waitingFor !== undefined ? brief(run.waitingFor, payloadWidth) : undefined],
    ['Input', brief(run.input, payloadWidth)],
    ['Output', run.output !== undefined ? brief(run.output, payloadWidth) : undefined],
    ['Progress', run.progress !== undefined ? progressLine(run.progress, payloadWidth) : undefined],
    ['Error', run.error ? errorLine(run.error) : undefined],
  ]);
  const graphs = (detail.graphs ?? []).flatMap((graph) => ['', `Graph ${graph.step} (${graph.size} nodes, ${graph.status})`, graphTable(graph, width)]);
  return [fields, '', `Steps (${steps.length})`, stepsTable(steps, width), ...graphs, '', `History (${history.length})`, historyTable(history, run.createdAt, width)].join('\n');
}

function graphTable(graph: GraphInfo, width: number): string {
  const rows = [...graph.nodes].sort((a, b) => a.level - b.level).map((node) => [String(node.level), node.name, node.status, node.after.join(', '), node.runId ?? '']);
  return renderTable(
    [{ header: 'LEVEL', alignRight: true }, { header: 'NODE' }, { header: 'STATUS' }, { header: 'AFTER', flex: true }, { header: 'RUN' }],
    rows,
    width,
  );
}

function stepsTable(steps: StepInfo[], width: number): string {
  if (steps.length === 0) return '  none';
  const rows = steps.map((step) => [
    step.occurrence > 1 ? `${step.name} #${step.occurrence}` : step.name,
    step.kind,
    step.status,
    String(step.attempts),
    step.startedAt && step.finishedAt ? duration(Date.parse(step.finishedAt) - Date.parse(step.startedAt)) : '',
    step.error ? errorLine(step.error) : step.childRunId ? `child ${step.childRunId}` : step.event ? `event ${step.event.name}${step.event.key ? ` (${step.event.key})` : ''}` : brief(step.result),
  ]);
  return renderTable(
    [{ header: 'STEP' }, { header: 'KIND' }, { header: 'STATUS' }, { header: 'ATTEMPTS', alignRight: true }, { header: 'TOOK', alignRight: true }, { header: 'RESULT', flex: true }],
    rows,
    width,
  );
}

function historyTable(history: RunEvent[], createdAt: string, width: number): string {
  if (history.length === 0) return '  none';
  const start = Date.parse(createdAt);
  const rows = history.map((event) => [
    absolute(event.at),
    `+${duration(Math.max(0, Date.parse(event.at) - start))}`,
    event.type,
    event.step ?? '',
    event.attempt !== undefined ? String(event.attempt) : '',
    eventDetail(event),
  ]);
  return renderTable(
    [{ header: 'AT' }, { header: 'SINCE CREATED', alignRight: true }, { header: 'EVENT' }, { header: 'STEP' }, { header: 'ATTEMPT', alignRight: true }, { header: 'DETAIL', flex: true }],
    rows,
    width,
  );
}

/** A step event's occurrence and kind are in the STEP column and the steps table already. */
function eventDetail(event: RunEvent): string {
  if (event.error) return errorLine(event.error);
  const { occurrence: _occurrence, kind: _kind, ...data } = event.data ?? {};
  if (Object.keys(data).length > 0) return brief(data);
  return event.workerId ? `worker ${event.workerId}` : '';
}
