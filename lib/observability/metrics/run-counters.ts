import type { WorkflowEventPayload, WorkflowEvents } from '../workflow-events.js';
import type { PromClient, PromCounter, PromHistogram, PromRegistry } from './prom-client.loader.js';

/** Step durations from 5 ms to 10 minutes: calls to APIs at the low end, long imports at the high end. */
const STEP_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];

/**
 * Counters and the step histogram, fed by this process's lifecycle events (WorkflowEvents): each worker
 * counts the runs it executes, and Prometheus sums the instances. Labels are the workflow and queue names
 * (fixed by the code) and a closed set of outcomes: never a run id, never a step name (step names may be
 * built from data, `fetch-${id}`, and each distinct value would be a new series).
 */
export class RunCounters {
  private readonly started: PromCounter;
  private readonly succeeded: PromCounter;
  private readonly failed: PromCounter;
  private readonly retried: PromCounter;
  private readonly canceled: PromCounter;
  private readonly lost: PromCounter;
  private readonly stepDuration: PromHistogram;
  private unsubscribe?: () => void;

  constructor(client: PromClient, registry: PromRegistry, prefix: string) {
    const counter = (name: string, help: string, labelNames = ['workflow', 'queue']) =>
      new client.Counter({ name: prefix + name, help, labelNames, registers: [registry] });
    this.started = counter('workflow_runs_started_total', 'Runs this process started executing for the first time (attempt 1, no stored step).');
    this.succeeded = counter('workflow_runs_succeeded_total', 'Runs this process completed successfully.');
    this.failed = counter('workflow_runs_failed_total', 'Runs this process failed for good (last attempt, or a NonRetriableError).');
    this.retried = counter('workflow_runs_retried_total', 'Attempts this process failed that will be retried after a backoff.');
    this.canceled = counter('workflow_runs_canceled_total', 'Runs canceled while this process executed them.');
    this.lost = counter(
      'workflow_runs_lost_total',
      'Executions this process stopped without storing an outcome: reason lease_lost (the lease expired or was taken, or a shutdown past its grace released it) or timeout (the run passed its deadline).',
      ['workflow', 'queue', 'reason'],
    );
    this.stepDuration = new client.Histogram({
      name: `${prefix}workflow_step_duration_seconds`,
      help: 'Time a step took in this process, from its call to its stored result or failure (status succeeded or failed); replayed steps are not counted.',
      labelNames: ['workflow', 'queue', 'status'],
      buckets: STEP_BUCKETS_SECONDS,
      registers: [registry],
    });
  }

  subscribe(events: WorkflowEvents): void {
    this.unsubscribe = events.on('*', (e) => this.record(e));
  }

  close(): void {
    this.unsubscribe?.();
  }

  private record(e: WorkflowEventPayload): void {
    const labels = { workflow: e.workflow, queue: e.queue };
    switch (e.event) {
      case 'run.started':
        if (e.attempt === 1 && !e.resumed) this.started.inc(labels);
        return;
      case 'run.succeeded':
        return this.succeeded.inc(labels);
      case 'run.failed':
        return this.failed.inc(labels);
      case 'run.retrying':
        return this.retried.inc(labels);
      case 'run.canceled':
        return this.canceled.inc(labels);
      case 'run.lost':
        return this.lost.inc({ ...labels, reason: e.error?.name === 'TimeoutError' ? 'timeout' : 'lease_lost' });
      case 'step.succeeded':
      case 'step.failed':
        if (e.durationMs !== undefined) this.stepDuration.observe({ ...labels, status: e.event === 'step.succeeded' ? 'succeeded' : 'failed' }, e.durationMs / 1000);
        return;
    }
  }
}
