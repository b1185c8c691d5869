import { BadRequestException, ConflictException, ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { WorkflowClient } from '../client/workflow.client.js';
import { WorkflowConnectionError, WorkflowError } from '../errors/workflow.errors.js';
import { RUN_STATUSES, type GraphInfo, type RunInfo, type RunStatus, type StepInfo, type RunEvent, type ScheduleInfo, type Throughput, type WorkflowMeta, type WorkflowStats } from '../interfaces/run.interfaces.js';
import { WORKFLOW_DASHBOARD_OPTIONS, type ResolvedDashboardOptions } from './dashboard.options.js';

/** A run as the lists show it: no payloads, so a page of runs stays small whatever the runs carry. */
export interface RunSummary {
  id: string;
  workflow: string;
  queue: string;
  status: RunStatus;
  attempt: number;
  maxAttempts?: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  parentId?: string;
  idempotencyKey?: string;
  error?: { name: string; message: string };
  version?: string;
  pinned?: true;
}

export interface RunDetail {
  run: RunInfo;
  steps: StepInfo[];
  history: RunEvent[];
  children: RunSummary[];
  /** Present when the run has more children than `children` holds. */
  childrenCursor?: string;
  /** The graphs its graph steps started (ctx.step.graph). */
  graphs: GraphInfo[];
}

/** A run's page shows its newest children (re-read every 2 s while it is live); the rest are paged in the
 *  runs list (`api/runs?parentId=`). */
const CHILDREN_SHOWN = 50;

/**
 * The dashboard's JSON API. Everything comes from the public WorkflowClient, so the dashboard sees
 * exactly what any other client of the package sees and needs no access of its own to Redis.
 */
@Injectable()
export class DashboardApi {
  constructor(
    @Inject(WorkflowClient) private readonly client: WorkflowClient,
    @Inject(WORKFLOW_DASHBOARD_OPTIONS) private readonly options: ResolvedDashboardOptions,
  ) {}

  stats(): Promise<WorkflowStats> {
    return this.client.getStats();
  }

  workflows(): Promise<WorkflowMeta[]> {
    return this.client.listWorkflows();
  }

  /** The overview's charts: runs started, succeeded, failed and canceled per minute over the last hour. */
  throughput(): Promise<Throughput> {
    return this.client.getThroughput({ minutes: 60 });
  }

  schedules(): Promise<ScheduleInfo[]> {
    return this.client.listSchedules();
  }

  async runs(query: { workflow?: string; status?: string; cursor?: string; limit?: string; parentId?: string; version?: string }): Promise<{ runs: RunSummary[]; cursor?: string }> {
    const status = query.status || undefined;
    if (status !== undefined && !RUN_STATUSES.includes(status as RunStatus)) {
      throw new BadRequestException(`Unknown status '${status}': use one of ${RUN_STATUSES.join(', ')}.`);
    }
    const limit = query.limit === undefined || query.limit === '' ? 50 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new BadRequestException('limit must be an integer from 1 to 500.');
    const page = await this.client
      .listRuns({
        workflow: query.workflow || undefined,
        status: status as RunStatus | undefined,
        parentId: query.parentId || undefined,
        version: query.version || undefined,
        cursor: query.cursor || undefined,
        limit,
        summary: true,
      })
      .catch((error: unknown) => {
        // a cursor or parent id that is not one: the request's fault, not the server's
        if (error instanceof WorkflowError && !(error instanceof WorkflowConnectionError)) throw new BadRequestException(error.message);
        throw error;
      });
    return { runs: page.runs.map(summarize), ...(page.cursor ? { cursor: page.cursor } : {}) };
  }

  async run(runId: string): Promise<RunDetail> {
    const run = await this.client.getRun(runId);
    if (!run) throw new NotFoundException(`No run ${runId}: it never existed or expired after its retention.`);
    const [steps, history, children] = await Promise.all([
      this.client.getRunSteps(runId),
      this.client.getRunHistory(runId),
      this.client.listRuns({ parentId: runId, limit: CHILDREN_SHOWN, summary: true }),
    ]);
    const graphs = steps.some((step) => step.kind === 'graph') ? await this.client.getRunGraphs(runId) : [];
    return { run, steps, history, children: children.runs.map(summarize), ...(children.cursor ? { childrenCursor: children.cursor } : {}), graphs };
  }

  /** A run id, or an idempotency key looked up in every workflow (findRun), newest first. */
  async search(q: string | undefined): Promise<{ runs: RunSummary[] }> {
    const text = (q ?? '').trim();
    if (text === '') return { runs: [] };
    const workflows = await this.client.listWorkflows();
    const found = await Promise.all([
      this.client.getRun(text).catch(() => null),
      ...workflows.map((w) => this.client.findRun(w.name, text).catch(() => null)),
    ]);
    const unique = new Map<string, RunInfo>();
    for (const run of found) if (run) unique.set(run.id, run);
    return { runs: [...unique.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).map(summarize) };
  }

  async cancel(runId: string, reason: unknown): Promise<{ canceled: boolean }> {
    this.assertWritable();
    const canceled = await this.client.cancelRun(runId, { reason: typeof reason === 'string' && reason !== '' ? reason : 'canceled from the dashboard' });
    if (!canceled) throw new ConflictException(`Run ${runId} was not canceled: it has already finished, or does not exist.`);
    return { canceled };
  }

  async retry(runId: string): Promise<{ id: string }> {
    this.assertWritable();
    try {
      const handle = await this.client.retryRun(runId);
      return { id: handle.id };
    } catch (error) {
      if (error instanceof WorkflowError) throw new ConflictException(error.message);
      throw error;
    }
  }

  async sendEvent(body: { event?: unknown; key?: unknown; payload?: unknown } | undefined): Promise<{ woken: number }> {
    this.assertWritable();
    const { event, key, payload } = body ?? {};
    if (typeof event !== 'string' || event === '') throw new BadRequestException('Give the event name as "event".');
    if (key !== undefined && typeof key !== 'string') throw new BadRequestException('"key", when given, must be a string.');
    try {
      return { woken: await this.client.sendEvent(event, payload, key ? { key } : {}) };
    } catch (error) {
      if (error instanceof WorkflowError) throw new BadRequestException(error.message);
      throw error;
    }
  }

  private assertWritable(): void {
    if (this.options.readOnly) throw new ForbiddenException('This dashboard is read-only: its actions are turned off (readOnly: true).');
  }
}

function summarize(run: RunInfo): RunSummary {
  return {
    id: run.id,
    workflow: run.workflow,
    queue: run.queue,
    status: run.status,
    attempt: run.attempt,
    ...(run.maxAttempts !== undefined ? { maxAttempts: run.maxAttempts } : {}),
    createdAt: run.createdAt,
    ...(run.startedAt ? { startedAt: run.startedAt } : {}),
    ...(run.finishedAt ? { finishedAt: run.finishedAt } : {}),
    ...(run.parentId ? { parentId: run.parentId } : {}),
    ...(run.idempotencyKey ? { idempotencyKey: run.idempotencyKey } : {}),
    ...(run.error ? { error: { name: run.error.name, message: run.error.message } } : {}),
    ...(run.version !== undefined ? { version: run.version } : {}),
    ...(run.pinned ? { pinned: true as const } : {}),
  };
}
