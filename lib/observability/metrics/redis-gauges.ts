import { Logger } from '@nestjs/common';
import type { WorkflowClient } from '../../client/workflow.client.js';
import { errorMessage } from '../../errors/error-codec.js';
import type { WorkflowHealthIndicator, WorkflowHealthResult } from '../../health/workflow-health.indicator.js';
import type { NodeMemory } from '../../health/redis-memory.check.js';
import { RUN_STATUSES, type WorkflowStats } from '../../interfaces/run.interfaces.js';

/** The reasons flow control holds runs back for (RunInfo.delayedBy; WorkflowStats heldBack). */
const FLOW_REASONS = ['concurrency', 'rateLimit', 'debounce'] as const;
import type { Labels, PromClient, PromRegistry } from './prom-client.loader.js';

/** Scrapes within this long of the last Redis read share it: a scrape storm costs one read. */
export const SNAPSHOT_TTL_MS = 1_000;

interface Snapshot {
  stats?: WorkflowStats;
  health: WorkflowHealthResult<'workflows'>['workflows'];
}

const HEALTH_CHECKS = ['redis', 'library', 'worker', 'memory'] as const;

/**
 * Gauges read from Redis when Prometheus scrapes (prom-client calls each gauge's `collect`), through the
 * same reads as `getStats()` and the health indicator. They describe the whole deployment, not this
 * process: every instance that exposes them reports the same values (aggregate them with max, not sum).
 */
export class RedisGauges {
  private readonly logger = new Logger('WorkflowMetrics');
  private cached?: { at: number; snapshot: Promise<Snapshot> };
  private lastReadFailed = false;

  constructor(
    client: PromClient,
    registry: PromRegistry,
    prefix: string,
    private readonly workflows: WorkflowClient,
    private readonly health: WorkflowHealthIndicator,
  ) {
    const snapshot = () => this.snapshot();
    const gauge = (name: string, help: string, labelNames: string[], fill: (s: Snapshot, set: (labels: Labels, value: number) => void) => void) =>
      new client.Gauge({
        name: prefix + name,
        help,
        labelNames,
        registers: [registry],
        async collect() {
          const s = await snapshot();
          this.reset();
          fill(s, (labels, value) => this.set(labels, value));
        },
      });
    const perWorkflow = (fill: (w: WorkflowStats['workflows'][number], set: (labels: Labels, value: number) => void) => void) =>
      (s: Snapshot, set: (labels: Labels, value: number) => void) => {
        for (const w of s.stats?.workflows ?? []) fill(w, (labels, value) => set({ workflow: w.name, queue: w.queue, ...labels }, value));
      };

    gauge('workflow_runs', 'Runs kept in Redis by status (finished runs until their retention ends).', ['workflow', 'queue', 'status'],
      perWorkflow((w, set) => {
        for (const status of RUN_STATUSES) set({ status }, w.counts[status]);
      }));
    gauge('workflow_queue_depth', 'Runs ready to be claimed now.', ['workflow', 'queue'], perWorkflow((w, set) => set({}, w.queueDepth)));
    gauge('workflow_oldest_queued_age_seconds', 'Age of the oldest queued run (0 when none is queued).', ['workflow', 'queue'],
      perWorkflow((w, set) => set({}, (w.oldestQueuedAgeMs ?? 0) / 1000)));
    gauge('workflow_workers', 'Live workers that serve the workflow.', ['workflow', 'queue'], perWorkflow((w, set) => set({}, w.workers)));
    gauge('workflow_runs_held_back',
      'Runs that wait although they could start, by reason: no_worker (no live worker serves the workflow), or flow control (concurrency, rateLimit, debounce).',
      ['workflow', 'queue', 'reason'],
      perWorkflow((w, set) => {
        set({ reason: 'no_worker' }, w.workers === 0 ? w.queueDepth : 0);
        // every flow-control reason is set, 0 included, so that a series drops to 0 instead of going stale
        for (const reason of new Set([...FLOW_REASONS, ...Object.keys(w.heldBack ?? {})])) set({ reason }, w.heldBack?.[reason] ?? 0);
      }));
    // A counter kept in Redis for the whole fleet (wf1_tick counts every lease it takes back, whether the
    // worker died or stalled), so every instance reports the same total: aggregate with max, not sum.
    new client.Counter({
      name: `${prefix}workflow_lease_expiries_total`,
      help: 'Leases that expired (the worker died, stalled or lost Redis) and housekeeping took back, per workflow, for the whole deployment.',
      labelNames: ['workflow', 'queue'],
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        for (const w of s.stats?.workflows ?? []) this.inc({ workflow: w.name, queue: w.queue }, w.leaseExpiries);
      },
    });
    gauge('workflow_health_up', 'The health indicator\'s checks as seen by this process: 1 up, 0 down.', ['check'], (s, set) => {
      for (const check of HEALTH_CHECKS) set({ check }, (s.health[check] as { status?: string } | undefined)?.status === 'up' ? 1 : 0);
    });
    const memoryNodes = (s: Snapshot) => ((s.health.memory as { nodes?: NodeMemory[] } | undefined)?.nodes ?? []);
    gauge('workflow_redis_memory_used_bytes', 'used_memory of each Redis server (each primary of a cluster).', ['node'], (s, set) => {
      for (const n of memoryNodes(s)) set({ node: n.node }, n.usedBytes);
    });
    gauge('workflow_redis_memory_max_bytes', 'maxmemory of each Redis server (0: none set).', ['node'], (s, set) => {
      for (const n of memoryNodes(s)) set({ node: n.node }, n.maxBytes);
    });
  }

  private snapshot(): Promise<Snapshot> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < SNAPSHOT_TTL_MS) return this.cached.snapshot;
    const snapshot = this.read();
    this.cached = { at: now, snapshot };
    return snapshot;
  }

  private async read(): Promise<Snapshot> {
    const [stats, health] = await Promise.all([
      this.workflows.getStats().then(
        (s) => {
          if (this.lastReadFailed) this.logger.log('Workflow statistics can be read from Redis again.');
          this.lastReadFailed = false;
          return s;
        },
        (error: unknown) => {
          // Once per outage: the scrape still answers, without the per-workflow gauges, and health_up says why.
          if (!this.lastReadFailed) this.logger.warn(`Could not read workflow statistics for metrics: ${errorMessage(error)}`);
          this.lastReadFailed = true;
          return undefined;
        },
      ),
      this.health.isHealthy('workflows'),
    ]);
    return { stats, health: health.workflows };
  }
}
