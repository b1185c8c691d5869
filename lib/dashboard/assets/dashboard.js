// The workflow dashboard's front end: plain JavaScript, no build step, no dependencies.
// Every value that comes from a run is put in the page with textContent (through h()), never as HTML,
// so a payload holding markup shows as text.

const settings = document.querySelector('meta[name="workflow-dashboard"]');
const BASE = settings.dataset.base;
const READ_ONLY = settings.dataset.readOnly === 'true';
const STATUSES = ['scheduled', 'queued', 'running', 'waiting', 'compensating', 'succeeded', 'failed', 'canceled'];
const FINISHED = new Set(['succeeded', 'failed', 'canceled']);
const RETRYABLE = new Set(['failed', 'canceled']);
/** Payloads longer than this (as indented JSON) are cut, with a button to see the whole. */
const PAYLOAD_PREVIEW_CHARS = 4000;
const REFRESH_MS = 2000;

// ---- DOM and fetch helpers ----

/** Creates an element; strings and numbers among the children become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

async function api(path, init = {}) {
  const headers = { accept: 'application/json' };
  if (init.method === 'POST') Object.assign(headers, { 'content-type': 'application/json', 'x-workflow-dashboard': '1' });
  const response = await fetch(`${BASE}/api${path}`, { ...init, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.message ? String(body.message) : `${response.status} ${response.statusText}`);
  return body;
}

const post = (path, body = {}) => api(path, { method: 'POST', body: JSON.stringify(body) });
const runHref = (id) => `#/runs/${encodeURIComponent(id)}`;
const listHref = (params) => `#/runs?${new URLSearchParams(Object.entries(params).filter(([, v]) => v))}`;

// ---- formatting ----

function duration(ms) {
  if (!Number.isFinite(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

function time(iso) {
  if (!iso) return '';
  return h('time', { datetime: iso, title: iso }, new Date(iso).toLocaleString());
}

function ago(iso) {
  if (!iso) return '';
  return h('time', { datetime: iso, title: iso }, `${duration(Date.now() - Date.parse(iso))} ago`);
}

function took(from, to) {
  return from && to ? duration(Date.parse(to) - Date.parse(from)) : '';
}

const badge = (status) => h('span', { class: `badge status-${status}` }, status);

function size(chars) {
  return chars < 10_000 ? `${chars} characters` : `${Math.round(chars / 1024)} KB`;
}

// ---- payloads: escaped, collapsible JSON ----

function jsonView(value) {
  if (value === undefined) return h('p', { class: 'muted' }, 'none');
  const text = JSON.stringify(value, null, 2);
  if (text.length <= PAYLOAD_PREVIEW_CHARS) return h('div', { class: 'json' }, jsonTree(value, 0));
  const box = h('div', { class: 'json' });
  const showAll = () => box.replaceChildren(h('pre', { class: 'json-full' }, text));
  box.append(
    h('pre', { class: 'json-truncated' }, `${text.slice(0, PAYLOAD_PREVIEW_CHARS)}…`),
    h('p', { class: 'note' }, `Truncated: the first ${size(PAYLOAD_PREVIEW_CHARS)} of ${size(text.length)}. `,
      h('button', { type: 'button', class: 'link', onclick: showAll }, 'Show all')),
  );
  return box;
}

function jsonTree(value, depth) {
  if (value === null || typeof value !== 'object') {
    return h('span', { class: `j-${value === null ? 'null' : typeof value}` }, JSON.stringify(value));
  }
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return h('span', {}, isArray ? '[]' : '{}');
  const label = isArray ? `[ ${entries.length} item${entries.length === 1 ? '' : 's'} ]` : `{ ${entries.map(([k]) => k).slice(0, 4).join(', ')}${entries.length > 4 ? ', …' : ''} }`;
  return h('details', { open: depth < 2 }, h('summary', {}, label),
    h('ul', {}, entries.map(([key, child]) => h('li', {}, isArray ? null : h('span', { class: 'j-key' }, `${JSON.stringify(key)}: `), jsonTree(child, depth + 1)))));
}

function errorView(error) {
  if (!error) return null;
  return h('div', { class: 'error' },
    h('strong', {}, error.name), ': ', error.message,
    error.data ? h('details', {}, h('summary', {}, 'data'), jsonView(error.data)) : null,
    error.stack ? h('details', {}, h('summary', {}, 'stack'), h('pre', {}, error.stack)) : null,
    error.cause ? h('div', { class: 'cause' }, 'caused by ', errorView(error.cause)) : null);
}

function section(title, ...content) {
  return h('section', {}, h('h2', {}, title), ...content);
}

function table(headings, rows, empty = 'Nothing here.') {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h('table', {}, h('thead', {}, h('tr', {}, headings.map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))));
}

// ---- progress and paused workflows ----

/**
 * The fraction a run's progress (ctx.setProgress) stands for: a number from 0 to 1, or an object with a
 * `fraction` from 0 to 1, or with numbers `done` and `total` (the CLI reads it alike: lib/cli/format.ts).
 */
function progressFraction(value) {
  const inRange = (n) => (typeof n === 'number' && n >= 0 && n <= 1 ? n : undefined);
  if (typeof value === 'number') return inRange(value);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  if (value.fraction !== undefined) return inRange(value.fraction);
  if (typeof value.done === 'number' && typeof value.total === 'number' && value.total > 0) return inRange(value.done / value.total);
  return undefined;
}

/** A bar when the progress is a fraction (with the value's other fields beside it), else the JSON. */
function progressView(value, compact = false) {
  if (value === undefined) return null;
  const fraction = progressFraction(value);
  if (fraction === undefined) return compact ? h('span', { class: 'mono progress-json' }, JSON.stringify(value).slice(0, 60)) : jsonView(value);
  const percent = `${Math.floor(fraction * 1000) / 10}%`;
  const fill = h('span', { class: 'progress-fill' });
  fill.style.width = `${fraction * 100}%`;
  return h('span', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(fraction * 100), title: JSON.stringify(value) },
    h('span', { class: 'progress-track' }, fill), percent,
    !compact && typeof value === 'object' ? h('span', { class: 'muted mono' }, JSON.stringify(value)) : null);
}

function pausedBadge(workflow) {
  return h('span', { class: 'badge paused', title: `Paused: runs of ${workflow} are not claimed (emits are still accepted) until it is resumed.` }, 'paused');
}

/** Pause / resume a workflow from the overview (an action: hidden in a read-only dashboard). */
function pauseButton(w) {
  const action = w.paused ? 'resume' : 'pause';
  return h('button', { type: 'button', class: 'small', 'data-action': action, 'data-workflow': w.name, onclick: async (event) => {
    event.target.disabled = true;
    try {
      await post(`/workflows/${encodeURIComponent(w.name)}/${action}`);
    } catch (error) {
      alert(`${action} failed: ${error.message}`);
    }
    route();
  } }, w.paused ? 'Resume' : 'Pause');
}

// ---- pages ----

/** A workflow no live worker serves: its runs wait in 'queued' until one does. */
function noWorker() {
  return h('span', { class: 'badge no-worker', title: "No live worker serves this workflow: its runs wait in 'queued'. Add its class to the providers of an app that runs a worker." }, 'no worker');
}

// Runs held back by flow control, by reason ('concurrency 3, rateLimit 1'), as getStats() counts them.
const heldBack = (counts) => Object.entries(counts || {}).map(([reason, n]) => `${reason} ${n}`).join(', ');

// ---- charts: inline SVG built with the DOM (no library; the page's CSP allows no inline script or style) ----

const SVG = 'http://www.w3.org/2000/svg';
const CHART_SERIES = [['started', 'Started'], ['succeeded', 'Succeeded'], ['failed', 'Failed']];
const CHART = { width: 360, height: 90, left: 28, bottom: 14, top: 6 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/** Runs started, succeeded and failed per minute over the last hour: one line each; hover a minute for its counts. */
function throughputChart(workflow) {
  const minutes = workflow.minutes;
  const totals = Object.fromEntries(CHART_SERIES.map(([key]) => [key, minutes.reduce((sum, m) => sum + m[key], 0)]));
  const max = Math.max(1, ...minutes.flatMap((m) => CHART_SERIES.map(([key]) => m[key])));
  const { width, height, left, bottom, top } = CHART;
  const step = (width - left) / Math.max(1, minutes.length - 1);
  const x = (i) => (left + i * step).toFixed(1);
  const y = (v) => (top + (height - top - bottom) * (1 - v / max)).toFixed(1);
  const chart = svg('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `${workflow.name}: ${CHART_SERIES.map(([key, label]) => `${label.toLowerCase()} ${totals[key]}`).join(', ')} in the last ${minutes.length} minutes`,
    'data-workflow': workflow.name, ...Object.fromEntries(CHART_SERIES.map(([key]) => [`data-${key}`, totals[key]])),
  },
  svg('line', { class: 'axis', x1: left, x2: width, y1: height - bottom, y2: height - bottom }),
  svg('text', { class: 'tick', x: left - 4, y: top + 8, 'text-anchor': 'end' }, max),
  svg('text', { class: 'tick', x: left - 4, y: height - bottom, 'text-anchor': 'end' }, 0),
  svg('text', { class: 'tick', x: left, y: height - 2 }, `${minutes.length} min ago`),
  svg('text', { class: 'tick', x: width, y: height - 2, 'text-anchor': 'end' }, 'now'));
  for (const [key] of CHART_SERIES) {
    chart.append(svg('polyline', { class: `series series-${key}`, points: minutes.map((m, i) => `${x(i)},${y(m[key])}`).join(' ') }));
  }
  minutes.forEach((m, i) => {
    const label = `${new Date(m.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${CHART_SERIES.map(([key, name]) => `${name.toLowerCase()} ${m[key]}`).join(', ')}${m.canceled ? `, canceled ${m.canceled}` : ''}`;
    chart.append(svg('rect', { class: 'minute', x: (left + (i - 0.5) * step).toFixed(1), y: top, width: step.toFixed(1), height: height - top - bottom }, svg('title', {}, label)));
  });
  return h('figure', { class: 'throughput' }, h('figcaption', {}, h('a', { href: listHref({ workflow: workflow.name }) }, workflow.name)), chart);
}

function throughputSection(throughput) {
  const legend = h('p', { class: 'legend' }, CHART_SERIES.map(([key, label]) => h('span', { class: `key key-${key}` }, label)),
    h('span', { class: 'muted' }, ' per minute, last hour (all instances)'));
  return section('Runs per minute', legend,
    throughput.workflows.length === 0 ? h('p', { class: 'muted' }, 'No workflow is registered yet.') : h('div', { class: 'charts' }, throughput.workflows.map(throughputChart)));
}

function schedulesSection(schedules) {
  if (schedules.length === 0) return null;
  return section('Schedules', table(['Workflow', 'Trigger', 'Expression', 'Time zone', 'State', 'Next tick', 'Last run', 'Catch up'],
    schedules.map((s) => [h('a', { href: listHref({ workflow: s.workflow }) }, s.workflow), h('span', { class: 'mono' }, s.id), h('span', { class: 'mono' }, s.expression),
      s.timezone ?? 'local', s.paused ? h('span', { class: 'badge paused' }, 'paused') : 'active', time(s.next), time(s.last), s.catchUp])));
}

const overviewPage = {
  load: async () => {
    const [stats, throughput, schedules] = await Promise.all([api('/stats'), api('/throughput'), api('/schedules')]);
    return { stats, throughput, schedules };
  },
  live: () => true,
  render({ stats, throughput, schedules }) {
    const statusCells = (workflow, counts) => STATUSES.map((s) =>
      counts[s] ? h('a', { href: listHref({ workflow, status: s }), class: `count status-${s}` }, counts[s]) : h('span', { class: 'muted' }, '0'));
    return h('div', {},
      h('h1', {}, 'Overview ', h('span', { class: 'live', title: 'refreshed every 2 s' }, `live · ${new Date().toLocaleTimeString()}`)),
      section('Workflows', table(['Workflow', 'Queue', ...STATUSES, 'Queue depth', 'Held back', 'Oldest waiting', ...(READ_ONLY ? [] : [''])],
        stats.workflows.map((w) => [h('span', { class: 'workflow-name', 'data-workflow': w.name }, h('a', { href: listHref({ workflow: w.name }) }, w.name), w.workers === 0 ? noWorker() : null, w.paused ? pausedBadge(w.name) : null), w.queue, ...statusCells(w.name, w.counts),
          w.queueDepth, heldBack(w.heldBack), w.oldestQueuedAgeMs === undefined ? '' : duration(w.oldestQueuedAgeMs), ...(READ_ONLY ? [] : [pauseButton(w)])]), 'No workflow is registered yet.')),
      throughputSection(throughput),
      schedulesSection(schedules),
      section('Queues', table(['Queue', 'Queue depth', 'Held back', 'Oldest waiting', 'Running', 'Waiting', 'Failed'],
        stats.queues.map((q) => [q.name, q.queueDepth, heldBack(q.heldBack), q.oldestQueuedAgeMs === undefined ? '' : duration(q.oldestQueuedAgeMs), q.counts.running, q.counts.waiting, q.counts.failed]))),
      section(`Workers (${stats.workers.alive} alive)`, table(['Worker', 'Host', 'Version', 'Queues', 'Active / slots', 'Warm runs', 'Started', 'Last heartbeat'],
        stats.workers.list.map((w) => [w.id, `${w.host} (pid ${w.pid})`, w.version ?? '', w.queues.join(', '), `${w.activeRuns} / ${w.concurrency}`, warmRuns(w.executionCache), ago(w.startedAt), ago(w.lastHeartbeatAt)]),
        'No worker is alive.')),
      versionsSection(stats));
  },
};

/** Runs in flight per workflow and version; a pinned version no live worker serves is held back. */
function versionsSection(stats) {
  const rows = stats.workflows.flatMap((w) => (w.versions ?? []).map((v) => ({ workflow: w.name, ...v })));
  if (rows.length === 0) return null;
  return section('Versions', table(['Workflow', 'Version', 'Pinned', 'Unpinned', 'Pinned ready', 'Workers', 'Held back'],
    rows.map((r) => [h('a', { href: listHref({ workflow: r.workflow, version: r.version }) }, r.workflow), r.version, r.pinned, r.unpinned, r.pinnedReady, r.workers,
      r.heldBack > 0 ? h('span', { class: 'badge no-worker held-back', title: `No worker of version ${r.version}: retryRun(id, { onVersion: 'current' }) or forkRun moves these runs.` },
        `${r.heldBack} held back: no worker of version ${r.version}`) : '0'])));
}

const versionCell = (run) => (run.version === undefined ? '' : run.pinned ? `${run.version} (pinned)` : run.version);

// A worker's cache of warm executions (executionCache): kept / max, and the share of warm claims that resumed one.
function warmRuns(cache) {
  if (!cache) return '-';
  const claims = cache.hits + cache.misses;
  return claims === 0 ? `${cache.runs} / ${cache.maxRuns}` : `${cache.runs} / ${cache.maxRuns} (${Math.round((100 * cache.hits) / claims)}% hits)`;
}

function runListPage(params) {
  const filters = { workflow: params.get('workflow') ?? '', status: params.get('status') ?? '', parentId: params.get('parentId') ?? '', version: params.get('version') ?? '', cursor: params.get('cursor') ?? '' };
  return {
    load: async () => {
      const [workflows, page] = await Promise.all([api('/workflows'), api(`/runs?${new URLSearchParams({ ...filters, limit: '25' })}`)]);
      return { workflows: workflows.map((w) => w.name), page };
    },
    live: () => false,
    render({ workflows, page }) {
      const select = (name, options, label) => h('label', {}, `${label} `,
        h('select', { name, onchange: (e) => { location.hash = listHref({ ...filters, cursor: '', [name]: e.target.value }); } },
          h('option', { value: '' }, 'all'), options.map((o) => h('option', { value: o, selected: o === filters[name] }, o))));
      return h('div', {},
        h('h1', {}, 'Runs'),
        filters.parentId ? h('p', { class: 'crumbs' }, 'Children of ', h('a', { href: runHref(filters.parentId), class: 'mono' }, filters.parentId)) : null,
        h('div', { class: 'filters' }, select('workflow', workflows, 'Workflow'), select('status', STATUSES, 'Status'),
          h('a', { href: listHref({ workflow: filters.workflow, status: filters.status }), class: 'button' }, 'Refresh')),
        filters.version ? h('p', { class: 'crumbs' }, `Version ${filters.version} `, h('a', { href: listHref({ workflow: filters.workflow, status: filters.status }) }, '(all versions)')) : null,
        table(['Run', 'Workflow', 'Status', 'Attempt', 'Version', 'Created', 'Took', 'Idempotency key', 'Error'],
          page.runs.map((r) => [h('a', { href: runHref(r.id), class: 'run-link mono' }, r.id), r.workflow,
            h('span', r.delayedBy && r.delayedBy !== 'paused' ? { title: `held back by ${r.delayedBy}` } : {}, badge(r.status), r.delayedBy === 'paused' ? pausedBadge(r.workflow) : r.delayedBy ? ` ${r.delayedBy}` : null, r.progress !== undefined && !FINISHED.has(r.status) ? [' ', progressView(r.progress, true)] : null), attempts(r), versionCell(r),
            time(r.createdAt), took(r.startedAt, r.finishedAt), h('span', { class: 'mono' }, r.idempotencyKey ?? ''),
            r.error ? h('span', { class: 'error-text', title: r.error.message }, `${r.error.name}: ${r.error.message}`) : '']),
          'No run matches these filters.'),
        h('p', { class: 'paging' },
          filters.cursor ? h('a', { href: listHref({ workflow: filters.workflow, status: filters.status, parentId: filters.parentId }) }, '« First page') : null,
          page.cursor ? h('a', { href: listHref({ ...filters, cursor: page.cursor }), class: 'next' }, 'Next page »') : null));
    },
  };
}

const attempts = (run) => (run.maxAttempts ? `${run.attempt} / ${run.maxAttempts}` : String(run.attempt));

function searchPage(q) {
  return {
    load: () => api(`/search?${new URLSearchParams({ q })}`),
    live: () => false,
    render({ runs }) {
      if (runs.length === 1) {
        location.replace(runHref(runs[0].id));
        return h('p', {}, 'Opening the run…');
      }
      return h('div', {}, h('h1', {}, 'Search: ', h('span', { class: 'mono' }, q)),
        table(['Run', 'Workflow', 'Status', 'Idempotency key', 'Created'],
          runs.map((r) => [h('a', { href: runHref(r.id), class: 'mono' }, r.id), r.workflow, badge(r.status), r.idempotencyKey ?? '', time(r.createdAt)]),
          'No run has this id, and no workflow has a run with this idempotency key.'));
    },
  };
}

function runPage(id) {
  return {
    load: () => api(`/runs/${encodeURIComponent(id)}`),
    live: (detail) => !FINISHED.has(detail.run.status),
    render({ run, steps, history, children, childrenCursor, graphs = [] }) {
      return h('div', { class: 'run' },
        h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' › ', h('a', { href: listHref({ workflow: run.workflow }) }, run.workflow), ' › ', h('span', { class: 'mono' }, run.id)),
        h('h1', {}, run.workflow, ' ', badge(run.status), run.delayedBy === 'paused' ? pausedBadge(run.workflow) : null),
        h('div', { id: 'notice', role: 'status' }),
        facts(run),
        READ_ONLY ? null : actions(run),
        run.waitingFor ? section('Waiting for', jsonView(run.waitingFor)) : null,
        section('Input', jsonView(run.input)),
        run.error ? section('Error', errorView(run.error)) : run.status === 'succeeded' ? section('Output', jsonView(run.output)) : null,
        section(`Steps (${steps.length})`, timeline(run, steps)),
        ...graphs.map(graphView),
        children.length ? section(`Children (${children.length}${childrenCursor ? '+' : ''})`,
          table(['Run', 'Workflow', 'Status', 'Attempt', 'Took', 'Error'],
            children.map((c) => [h('a', { href: runHref(c.id), class: 'mono' }, c.id), c.workflow, badge(c.status), attempts(c), took(c.startedAt, c.finishedAt), c.error?.message ?? ''])),
          childrenCursor ? h('p', { class: 'paging' }, h('a', { href: listHref({ parentId: run.id }), class: 'all-children' }, 'All children »')) : null) : null,
        section(`History (${history.length})`, table(['At', 'Event', 'Step', 'Attempt', 'Worker', 'Details'],
          history.map((e) => [time(e.at), h('span', { class: 'event-type' }, e.type), e.step ?? '', e.attempt ?? '', h('span', { class: 'mono' }, e.workerId ?? ''),
            e.error ? errorView(e.error) : e.data ? jsonView(e.data) : '']))));
    },
  };
}

/** A graph of child runs (ctx.step.graph), level by level: a node's level is one more than the highest of those it comes after. */
function graphView(graph) {
  const levels = [];
  for (const node of graph.nodes) (levels[node.level] ??= []).push(node);
  const shown = graph.nodes.length < graph.size ? ` — the first ${graph.nodes.length} shown` : '';
  return section(`Graph ${graph.step} (${graph.size} nodes${shown})`,
    h('p', {}, badge(graph.status)),
    h('ol', { class: 'graph' }, levels.map((nodes, level) => h('li', { class: 'graph-level' },
      h('span', { class: 'graph-level-name muted' }, `level ${level}`),
      h('ul', { class: 'graph-nodes' }, nodes.map((node) => h('li', { class: `graph-node graph-${node.status}`, 'data-node': node.name },
        node.runId ? h('a', { href: runHref(node.runId), class: 'graph-node-name' }, node.name) : h('span', { class: 'graph-node-name' }, node.name),
        ' ', badge(node.status),
        node.after.length ? h('span', { class: 'graph-after muted' }, `after ${node.after.join(', ')}`) : null)))))));
}

function facts(run) {
  const rows = [
    ['Run id', h('span', { class: 'mono' }, run.id)],
    ['Queue', run.queue],
    ['Attempt', attempts(run)],
    ['Created', time(run.createdAt)],
    run.scheduledFor ? ['Scheduled for', time(run.scheduledFor)] : null,
    run.startedAt ? ['Started', time(run.startedAt)] : null,
    run.finishedAt ? ['Finished', h('span', {}, time(run.finishedAt), ` (took ${took(run.startedAt ?? run.createdAt, run.finishedAt)})`)] : null,
    run.idempotencyKey ? ['Idempotency key', h('span', { class: 'mono' }, run.idempotencyKey)] : null,
    run.flowKey ? ['Flow key', h('span', { class: 'mono' }, run.flowKey)] : null,
    run.delayedBy ? ['Held back by', run.delayedBy] : null,
    run.parentId ? ['Parent', h('a', { href: runHref(run.parentId), class: 'mono parent-link' }, run.parentId)] : null,
    run.continuedFrom ? ['Continued from', h('a', { href: runHref(run.continuedFrom), class: 'mono continued-from-link' }, run.continuedFrom)] : null,
    run.continuedAs ? ['Continued as', h('a', { href: runHref(run.continuedAs), class: 'mono continued-as-link' }, run.continuedAs)] : null,
    run.forkedFrom ? ['Forked from', h('a', { href: runHref(run.forkedFrom), class: 'mono forked-from-link' }, run.forkedFrom)] : null,
    run.workerId ? ['Worker', h('span', { class: 'mono' }, run.workerId)] : null,
    run.progress !== undefined ? ['Progress', progressView(run.progress)] : null,
    run.version !== undefined ? ['Version', versionCell(run)] : null,
  ].filter(Boolean);
  return h('dl', { class: 'facts' }, rows.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

function actions(run) {
  const notify = (text, kind = 'ok') => document.getElementById('notice')?.replaceChildren(h('p', { class: `notice ${kind}` }, text));
  const act = (label, work) => async (event) => {
    event.target.disabled = true;
    try {
      notify(await work());
      route();
    } catch (error) {
      notify(`${label} failed: ${error.message}`, 'bad');
      event.target.disabled = false;
    }
  };
  const buttons = [];
  if (!FINISHED.has(run.status)) {
    let armed = false;
    buttons.push(h('button', { type: 'button', class: 'danger', 'data-action': 'cancel', onclick: (event) => {
      if (!armed) { armed = true; event.target.textContent = 'Click again to cancel'; return; }
      act('Cancel', async () => { await post(`/runs/${encodeURIComponent(run.id)}/cancel`); return 'Run canceled.'; })(event);
    } }, 'Cancel'));
  }
  if (RETRYABLE.has(run.status)) {
    buttons.push(h('button', { type: 'button', 'data-action': 'retry',
      onclick: act('Retry', async () => { await post(`/runs/${encodeURIComponent(run.id)}/retry`); return 'Run sent back to the queue.'; }) }, 'Retry'));
  }
  const events = run.status === 'waiting' && Array.isArray(run.waitingFor?.events) ? run.waitingFor.events : [];
  const forms = events.map((wait) => {
    const payload = h('textarea', { name: 'payload', rows: 3, placeholder: 'payload as JSON (optional)' });
    const send = async (event) => {
      event.preventDefault();
      let body;
      try {
        body = { event: wait.event, ...(wait.key ? { key: wait.key } : {}), ...(payload.value.trim() ? { payload: JSON.parse(payload.value) } : {}) };
      } catch (error) {
        notify(`The payload is not JSON: ${error.message}`, 'bad');
        return;
      }
      const button = event.target.querySelector('button');
      act('Send event', async () => { const { woken } = await post('/events', body); return `Event sent; ${woken} run(s) woken.`; })({ target: button });
    };
    return h('form', { class: 'send-event', onsubmit: send },
      h('span', {}, 'Send ', h('strong', { class: 'mono' }, wait.event), wait.key ? [' with key ', h('span', { class: 'mono' }, wait.key)] : null),
      payload, h('button', { type: 'submit', 'data-action': 'send-event' }, 'Send event'));
  });
  if (buttons.length === 0 && forms.length === 0) return null;
  return h('div', { class: 'actions' }, buttons, forms);
}

function timeline(run, steps) {
  if (steps.length === 0) return h('p', { class: 'muted' }, 'No step has run yet.');
  const ms = (iso) => (iso ? Date.parse(iso) : NaN);
  const starts = steps.map((s) => ms(s.startedAt)).filter(Number.isFinite);
  const ends = steps.map((s) => ms(s.finishedAt)).filter(Number.isFinite);
  const from = Math.min(ms(run.startedAt ?? run.createdAt), ...starts);
  const to = Math.max(ms(run.finishedAt) || Date.now(), ...ends);
  const span = Math.max(1, to - from);
  return h('ol', { class: 'timeline' }, steps.map((step) => {
    const start = ms(step.startedAt);
    const end = ms(step.finishedAt) || (step.status === 'waiting' ? Date.now() : start);
    const bar = h('div', { class: `bar status-${step.status}` });
    if (Number.isFinite(start)) {
      bar.style.left = `${((start - from) / span) * 100}%`;
      bar.style.width = `max(3px, ${((end - start) / span) * 100}%)`;
    }
    return h('li', { class: 'step', 'data-step': step.name },
      h('div', { class: 'step-head' },
        h('span', { class: 'step-name' }, step.name, step.occurrence > 1 ? ` #${step.occurrence}` : ''),
        h('span', { class: 'kind' }, step.kind), badge(step.status),
        h('span', { class: 'muted' }, `${step.attempts} attempt${step.attempts === 1 ? '' : 's'}`),
        h('span', { class: 'muted' }, step.startedAt ? ['started ', time(step.startedAt)] : '', step.finishedAt ? `, took ${took(step.startedAt, step.finishedAt)}` : '')),
      h('div', { class: 'track' }, bar),
      step.childRunId ? h('p', {}, 'child run ', h('a', { href: runHref(step.childRunId), class: 'mono' }, step.childRunId)) : null,
      step.event ? h('p', {}, 'event ', h('span', { class: 'mono' }, step.event.name), step.event.key ? [' key ', h('span', { class: 'mono' }, step.event.key)] : '') : null,
      step.error ? errorView(step.error) : null,
      step.result !== undefined ? h('details', { class: 'result' }, h('summary', {}, 'result'), jsonView(step.result)) : null);
  }));
}

// ---- router: #/ overview, #/runs?workflow&status&cursor, #/runs/<id>, #/search?q ----

let current = { id: 0, timer: undefined };

function route() {
  clearTimeout(current.timer);
  const mine = { id: current.id + 1, timer: undefined };
  current = mine;
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(query);
  const runMatch = /^\/runs\/(.+)$/.exec(path);
  const page = path === '/' ? overviewPage
    : path === '/runs' ? runListPage(params)
    : runMatch ? runPage(decodeURIComponent(runMatch[1]))
    : path === '/search' ? searchPage(params.get('q') ?? '')
    : null;
  const view = document.getElementById('view');
  if (!page) {
    view.replaceChildren(h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Back to the overview')));
    return;
  }
  let shown = '';
  const tick = async () => {
    let data;
    try {
      data = await page.load();
    } catch (error) {
      if (current === mine) view.replaceChildren(h('p', { class: 'notice bad' }, error.message));
      return;
    }
    if (current !== mine) return;
    // Re-rendered only when something changed, so opened <details> stay open between refreshes.
    const json = JSON.stringify(data);
    if (json !== shown || page === overviewPage) {
      shown = json;
      view.replaceChildren(page.render(data));
    }
    if (page.live(data)) mine.timer = setTimeout(tick, REFRESH_MS);
  };
  tick();
}

document.getElementById('search').addEventListener('submit', (event) => {
  event.preventDefault();
  const q = new FormData(event.target).get('q').trim();
  if (q) location.hash = `#/search?${new URLSearchParams({ q })}`;
});
window.addEventListener('hashchange', route);
route();
