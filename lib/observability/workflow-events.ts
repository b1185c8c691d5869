import { Injectable, Logger } from '@nestjs/common';

/** The lifecycle events a worker reports, after the transition they describe is stored in Redis. */
export const WORKFLOW_EVENT_NAMES = [
  'run.started',
  'run.succeeded',
  'run.failed',
  'run.retrying',
  'run.canceled',
  'run.lost',
  'step.succeeded',
  'step.failed',
] as const;

export type WorkflowEventName = (typeof WORKFLOW_EVENT_NAMES)[number];

export interface WorkflowEventPayload {
  event: WorkflowEventName;
  runId: string;
  workflow: string;
  queue: string;
  /** The run's attempt (1-based) that this execution belongs to. */
  attempt: number;
  maxAttempts: number;
  parentId?: string;
  /** The worker that executes the run. */
  workerId: string;
  /** run.*: time since this execution started; step.*: time the step took in this execution. */
  durationMs?: number;
  /** run.failed, run.retrying, run.canceled, step.failed; run.lost: why this worker stopped (LeaseLostError,
   *  TimeoutError of the run's deadline). */
  error?: Error;
  /** run.retrying: the backoff before the next attempt. */
  retryInMs?: number;
  /** run.started: true when the run had stored steps already (a wake-up, a retry or a takeover), or failed or
   *  was canceled already and this execution runs its compensations and @OnFailure. */
  resumed?: boolean;
  /** step.* */
  step?: { name: string; occurrence: number; kind: string; attempts: number };
}

export type WorkflowEventListener = (payload: WorkflowEventPayload) => unknown;

export interface WorkflowEventFilter {
  /** Only runs of this workflow (its @Workflow name). */
  workflow?: string;
}

interface Subscription {
  events: ReadonlySet<WorkflowEventName> | '*';
  listener: WorkflowEventListener;
  filter: WorkflowEventFilter;
}

/**
 * Subscribe to run and step lifecycle events of this app's worker without touching the engine:
 * `workflowEvents.on('run.failed', (e) => alert(e.runId, e.error))`, or a `@OnWorkflowEvent('run.failed')`
 * method on any provider. Listeners run after the transition is stored; they cannot change the run, and
 * a listener that throws (or rejects) is logged and otherwise ignored. Events are local to the process
 * that executes the run (not a cross-process bus): each worker reports the runs it executes.
 */
@Injectable()
export class WorkflowEvents {
  private readonly logger = new Logger('WorkflowEvents');
  private readonly subscriptions = new Set<Subscription>();

  /** Subscribes; returns the function that unsubscribes. `'*'` listens to every event. */
  on(event: WorkflowEventName | WorkflowEventName[] | '*', listener: WorkflowEventListener, filter: WorkflowEventFilter = {}): () => void {
    const names = event === '*' ? '*' : new Set(Array.isArray(event) ? event : [event]);
    if (names !== '*') {
      for (const name of names) {
        if (!WORKFLOW_EVENT_NAMES.includes(name)) {
          throw new TypeError(`Unknown workflow event '${String(name)}'; use one of ${WORKFLOW_EVENT_NAMES.join(', ')} or '*'.`);
        }
      }
    }
    const subscription: Subscription = { events: names, listener, filter };
    this.subscriptions.add(subscription);
    return () => this.subscriptions.delete(subscription);
  }

  get listenerCount(): number {
    return this.subscriptions.size;
  }

  /** Called by the engine. Never throws, never waits for listeners. */
  emit(payload: WorkflowEventPayload): void {
    for (const s of this.subscriptions) {
      if (s.events !== '*' && !s.events.has(payload.event)) continue;
      if (s.filter.workflow !== undefined && s.filter.workflow !== payload.workflow) continue;
      try {
        const result = s.listener(payload);
        if (result && typeof (result as Promise<unknown>).then === 'function') {
          (result as Promise<unknown>).then(undefined, (error: unknown) => this.listenerFailed(payload, error));
        }
      } catch (error) {
        this.listenerFailed(payload, error);
      }
    }
  }

  private listenerFailed(payload: WorkflowEventPayload, error: unknown): void {
    this.logger.error(
      `A listener of ${payload.event} (workflow ${payload.workflow}, run ${payload.runId}) threw: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
