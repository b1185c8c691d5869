import { Inject, Injectable, Optional, type OnModuleInit } from '@nestjs/common';
import type { WorkflowModuleOptions } from '../interfaces/module-options.interface.js';
import type { RunMeta } from '../interfaces/workflow.interfaces.js';
import { WORKFLOW_MODULE_OPTIONS } from '../workflow.constants.js';
import { WorkflowTracing, type OpenSpan } from './tracing.js';
import { WorkflowEvents, type WorkflowEventName, type WorkflowEventPayload } from './workflow-events.js';

export type RunEnd = 'succeeded' | 'retrying' | 'failed' | 'canceled' | 'parked' | 'lost';

/** One execution of a run, as seen by hooks and tracing. */
export interface RunObservation {
  /** Runs the handler inside the run's span (so that spans opened by user code nest under it). */
  within<T>(fn: () => T): T;
  step(name: string, occurrence: number, kind: string): StepObservation;
  ended(end: RunEnd, details?: { error?: unknown; retryInMs?: number }): void;
}

export interface StepObservation {
  within<T>(fn: () => T): T;
  ended(end: 'succeeded' | 'failed', attempts: number, error?: unknown): void;
}

export interface ExecutionObserver {
  /** Undefined when nothing listens: the execution then skips every observation point. */
  runStarted(run: RunMeta, details: { workerId: string; resumed: boolean }): RunObservation | undefined;
}

const EVENT_OF_END: Partial<Record<RunEnd, WorkflowEventName>> = {
  succeeded: 'run.succeeded',
  retrying: 'run.retrying',
  failed: 'run.failed',
  canceled: 'run.canceled',
  // The worker stopped without storing an outcome (lease lost or taken, run deadline, shutdown past its
  // grace): another worker or housekeeping decides the run. Operators alert on it (metrics count it).
  lost: 'run.lost',
};

/**
 * Reports run and step boundaries to WorkflowEvents listeners and OpenTelemetry; costs nothing when
 * neither has a subscriber.
 */
@Injectable()
export class WorkflowObserver implements ExecutionObserver, OnModuleInit {
  readonly tracing: WorkflowTracing;

  constructor(
    private readonly events: WorkflowEvents,
    @Optional() @Inject(WORKFLOW_MODULE_OPTIONS) options?: WorkflowModuleOptions,
  ) {
    this.tracing = new WorkflowTracing(options?.tracing);
  }

  async onModuleInit(): Promise<void> {
    await this.tracing.init();
  }

  runStarted(run: RunMeta, details: { workerId: string; resumed: boolean }): RunObservation | undefined {
    const tracing = this.tracing.enabled;
    if (!tracing && this.events.listenerCount === 0) return undefined;
    const startedAt = Date.now();
    const base = {
      runId: run.id,
      workflow: run.workflow,
      queue: run.queue,
      attempt: run.attempt,
      maxAttempts: run.maxAttempts,
      ...(run.parentId ? { parentId: run.parentId } : {}),
      workerId: details.workerId,
    };
    const emit = (event: WorkflowEventName, extra: Partial<WorkflowEventPayload>) => {
      if (this.events.listenerCount > 0) this.events.emit({ event, ...base, ...extra });
    };
    const runSpan: OpenSpan = this.tracing.start(`workflow.run ${run.workflow}`, {
      'workflow.run_id': run.id,
      'workflow.name': run.workflow,
      'workflow.queue': run.queue,
      'workflow.attempt': run.attempt,
      'workflow.resumed': details.resumed,
    });
    emit('run.started', { resumed: details.resumed });
    return {
      within: (fn) => runSpan.within(fn),
      step: (name, occurrence, kind) => {
        const stepStarted = Date.now();
        const stepSpan = this.tracing.start(
          `workflow.step ${name}`,
          { 'workflow.run_id': run.id, 'workflow.name': run.workflow, 'workflow.step': name, 'workflow.step_occurrence': occurrence, 'workflow.step_kind': kind },
          runSpan,
        );
        return {
          within: (fn) => stepSpan.within(fn),
          ended: (end, attempts, error) => {
            stepSpan.end(end === 'failed' ? error : undefined);
            emit(end === 'succeeded' ? 'step.succeeded' : 'step.failed', {
              durationMs: Date.now() - stepStarted,
              step: { name, occurrence, kind, attempts },
              ...(end === 'failed' ? { error: asError(error) } : {}),
            });
          },
        };
      },
      ended: (end, extra = {}) => {
        runSpan.end(end === 'failed' || end === 'retrying' || end === 'canceled' || end === 'lost' ? (extra.error ?? end) : undefined);
        const event = EVENT_OF_END[end];
        if (!event) return;
        emit(event, {
          durationMs: Date.now() - startedAt,
          ...(extra.error !== undefined && end !== 'succeeded' ? { error: asError(extra.error) } : {}),
          ...(extra.retryInMs !== undefined ? { retryInMs: extra.retryInMs } : {}),
        });
      },
    };
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
