import { triggerId } from '../scheduler/trigger-id.js';
import type { ScheduleInfo, StatusCounts, Throughput, WorkerInfo, WorkflowMeta, WorkflowStats } from '../interfaces/run.interfaces.js';
import { absolute, brief, duration, relative, when } from './format.js';
import { renderFields, renderTable, type Column } from './table.js';

const COUNTED = ['scheduled', 'queued', 'running', 'waiting', 'compensating', 'succeeded', 'failed', 'canceled'] as const;
const countColumns: Column[] = COUNTED.map((status) => ({ header: status.toUpperCase(), alignRight: true }));
const countCells = (counts: StatusCounts) => COUNTED.map((status) => String(counts[status]));

const NO_WORKFLOWS = (prefix: string) =>
  `No workflow is registered under prefix '${prefix}'. Workers register theirs when they start: check --prefix (the module's prefix option, default 'wf') and --redis.`;

export function workflowsTable(workflows: WorkflowMeta[], prefix: string, width: number): string {
  if (workflows.length === 0) return NO_WORKFLOWS(prefix);
  // the versions its live workers serve, once any worker has a version or a workflow is pinned
  const versioned = workflows.some((w) => w.options.versioning === 'pinned' || w.workers.some((worker) => worker.version !== undefined));
  return renderTable(
    [
      { header: 'WORKFLOW' },
      { header: 'QUEUE' },
      { header: 'STATE' },
      { header: 'WORKERS', alignRight: true },
      ...(versioned ? [{ header: 'VERSIONS' }] : []),
      { header: 'CRON', alignRight: true },
      ...countColumns,
    ],
    workflows.map((w) => [
      w.name,
      w.queue,
      w.pausedAt ? 'paused' : 'active',
      String(w.workers.length),
      ...(versioned ? [workerVersions(w)] : []),
      String(w.cron.length),
      ...countCells(w.counts),
    ]),
    width,
  );
}

/** The versions a workflow's live workers serve, and '(pinned)' for a pinned workflow. */
function workerVersions(w: WorkflowMeta): string {
  const versions = [...new Set(w.workers.flatMap((worker) => (worker.version ? [worker.version] : [])))].sort();
  return `${versions.join(', ') || '-'}${w.options.versioning === 'pinned' ? ' (pinned)' : ''}`;
}

export function workflowView(meta: WorkflowMeta, now: number, width: number): string {
  const { options } = meta;
  const fields = renderFields([
    ['Workflow', meta.name],
    ['Queue', meta.queue],
    ['State', meta.pausedAt ? `paused since ${when(meta.pausedAt, now)}: nothing is claimed until 'workflows resume ${meta.name}'` : 'active'],
    ['Max attempts', String(options.maxAttempts)],
    ['Max concurrency', options.maxConcurrency !== undefined ? String(options.maxConcurrency) : 'unlimited'],
    ['Timeout', options.timeoutMs !== undefined ? duration(options.timeoutMs) : undefined],
    ['Backoff', options.backoff !== undefined ? brief(options.backoff, 80) : undefined],
    ['Input class', options.input],
    ['Versioning', options.versioning === 'pinned' ? 'pinned: runs are claimed only by workers of their version' : undefined],
    ['Registered', when(meta.registeredAt, now)],
  ]);
  const counts = renderTable(countColumns, [countCells(meta.counts)], width);
  const cron = meta.cron.length === 0 ? '  none' : schedulesTable(schedulesOf([meta]), width, now, false);
  const workers = meta.workers.length === 0 ? '  none: its runs wait in queued until a worker that has it starts' : workersTable(meta.workers, now, width);
  return [fields, '', 'Runs by status', counts, '', `Cron triggers (${meta.cron.length})`, cron, '', `Workers alive (${meta.workers.length})`, workers].join('\n');
}

export function statsView(stats: WorkflowStats, prefix: string, now: number, width: number): string {
  if (stats.workflows.length === 0) return NO_WORKFLOWS(prefix);
  const oldest = (ms: number | undefined) => (ms === undefined ? '-' : duration(ms, false));
  const workflows = renderTable(
    [
      { header: 'WORKFLOW' }, { header: 'QUEUE' }, { header: 'STATE' }, { header: 'DEPTH', alignRight: true }, { header: 'OLDEST QUEUED', alignRight: true }, { header: 'WORKERS', alignRight: true },
      { header: 'HELD BACK' }, ...countColumns, { header: 'EXPIRED LEASES', alignRight: true },
    ],
    stats.workflows.map((w) => [w.name, w.queue, w.paused ? 'paused' : 'active', String(w.queueDepth), oldest(w.oldestQueuedAgeMs), String(w.workers), heldBackCell(w.heldBack), ...countCells(w.counts), String(w.leaseExpiries ?? 0)]),
    width,
  );
  const queues = renderTable(
    [{ header: 'QUEUE' }, { header: 'DEPTH', alignRight: true }, { header: 'OLDEST QUEUED', alignRight: true }, { header: 'HELD BACK' }, ...countColumns],
    stats.queues.map((q) => [q.name, String(q.queueDepth), oldest(q.oldestQueuedAgeMs), heldBackCell(q.heldBack), ...countCells(q.counts)]),
    width,
  );
  const workers = stats.workers.alive === 0 ? '  none alive: queued runs wait until a worker starts' : workersTable(stats.workers.list, now, width);
  const sections = ['Workflows', workflows, '', 'Queues', queues, '', `Workers alive (${stats.workers.alive})`, workers];
  const versions = versionsView(stats, width);
  if (versions) sections.push('', 'Runs in flight by version', versions);
  return sections.join('\n');
}

/** Runs that have not finished, per workflow and version, and a line for each version held back. */
function versionsView(stats: WorkflowStats, width: number): string | undefined {
  const rows = stats.workflows.flatMap((w) => (w.versions ?? []).map((v) => ({ workflow: w.name, ...v })));
  if (rows.length === 0) return undefined;
  const table = renderTable(
    [
      { header: 'WORKFLOW' },
      { header: 'VERSION' },
      { header: 'PINNED', alignRight: true },
      { header: 'UNPINNED', alignRight: true },
      { header: 'PINNED READY', alignRight: true },
      { header: 'WORKERS', alignRight: true },
      { header: 'HELD BACK', alignRight: true },
    ],
    rows.map((r) => [r.workflow, r.version, String(r.pinned), String(r.unpinned), String(r.pinnedReady), String(r.workers), String(r.heldBack)]),
    width,
  );
  const held = rows
    .filter((r) => r.heldBack > 0)
    .map((r) => `${r.workflow}: ${r.heldBack} run(s) held back: no worker of version ${r.version}; retryRun(id, { onVersion: 'current' }) (runs retry <id> --to-version <version>) or forkRun moves it.`);
  return [table, ...held].join('\n');
}

function workersTable(workers: WorkerInfo[], now: number, width: number): string {
  const versioned = workers.some((w) => w.version !== undefined);
  return renderTable(
    [
      { header: 'WORKER' },
      { header: 'HOST' },
      { header: 'PID', alignRight: true },
      ...(versioned ? [{ header: 'VERSION' }] : []),
      { header: 'ACTIVE', alignRight: true },
      { header: 'WARM', alignRight: true },
      { header: 'STARTED' },
      { header: 'HEARTBEAT' },
      { header: 'QUEUES', flex: true },
    ],
    workers.map((w) => [
      w.id,
      w.host,
      String(w.pid),
      ...(versioned ? [w.version ?? '-'] : []),
      `${w.activeRuns}/${w.concurrency}`,
      warmCell(w),
      relative(w.startedAt, now),
      relative(w.lastHeartbeatAt, now),
      w.queues.join(', '),
    ]),
    width,
  );
}

/** The worker's warm executions (the executionCache option) and the share of warm claims that resumed one; '-' when off. */
function warmCell(w: WorkerInfo): string {
  const cache = w.executionCache;
  if (!cache) return '-';
  const claims = cache.hits + cache.misses;
  return claims === 0 ? `${cache.runs}/${cache.maxRuns}` : `${cache.runs}/${cache.maxRuns}, ${Math.round((100 * cache.hits) / claims)}% hits`;
}

/** The cron triggers a workflow declares, as `workflows show` lists them (without their run-time state). */
export function schedulesOf(workflows: WorkflowMeta[]): ScheduleInfo[] {
  return workflows.flatMap((w) =>
    w.cron.map((trigger) => ({
      workflow: w.name,
      id: triggerId(w.name, trigger),
      expression: trigger.expression,
      ...(trigger.timezone !== undefined ? { timezone: trigger.timezone } : {}),
      catchUp: 'none' as const,
      paused: false,
      workers: w.workers.length,
    })),
  );
}

/** Schedules with their state; `withState` false leaves out PAUSED, NEXT and LAST (workflows show). */
export function schedulesTable(schedules: ScheduleInfo[], width: number, now = Date.now(), withState = true): string {
  if (schedules.length === 0) return 'No cron triggers are registered.';
  const state: Column[] = withState ? [{ header: 'PAUSED' }, { header: 'NEXT' }, { header: 'LAST' }] : [];
  return renderTable(
    [{ header: 'WORKFLOW' }, { header: 'ID' }, { header: 'EXPRESSION' }, { header: 'TIMEZONE' }, ...state, { header: 'WORKERS', alignRight: true }],
    schedules.map((s) => [
      s.workflow,
      s.id,
      s.expression,
      s.timezone ?? 'local',
      ...(withState ? [s.paused ? 'paused' : 'no', tickTime(s.next, now), tickTime(s.last, now)] : []),
      String(s.workers),
    ]),
    width,
  );
}

/** Held-back runs by reason, e.g. 'concurrency 12, rateLimit 3'; '-' when none. */
function heldBackCell(heldBack: Record<string, number> | undefined): string {
  const parts = Object.entries(heldBack ?? {}).map(([reason, count]) => `${reason} ${count}`);
  return parts.length ? parts.join(', ') : '-';
}

/** '2026-12-07 06:40:00 UTC (in 3s)', or '-' */
function tickTime(iso: string | undefined, now: number): string {
  return iso === undefined ? '-' : `${absolute(iso)} (${relative(iso, now)})`;
}

/** Runs started and finished per minute, the minutes with any, newest first (`stats --minutes n`). */
export function throughputTable(throughput: Throughput, width: number): string {
  const rows = throughput.workflows.flatMap((w) =>
    w.minutes
      .filter((m) => m.started + m.succeeded + m.failed + m.canceled > 0)
      .map((m) => ({ at: m.at, cells: [m.at.slice(11, 16), w.name, String(m.started), String(m.succeeded), String(m.failed), String(m.canceled)] })),
  );
  const minutes = throughput.workflows[0]?.minutes.length ?? 0;
  const title = `Runs per minute, last ${minutes} minute(s) to ${absolute(throughput.to)} (Redis clock)`;
  if (rows.length === 0) return `${title}
  none started or finished`;
  rows.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  const table = renderTable(
    [{ header: 'MINUTE' }, { header: 'WORKFLOW' }, { header: 'STARTED', alignRight: true }, { header: 'SUCCEEDED', alignRight: true }, { header: 'FAILED', alignRight: true }, { header: 'CANCELED', alignRight: true }],
    rows.map((r) => r.cells),
    width,
  );
  return `${title}
${table}`;
}
