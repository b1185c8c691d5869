import { SetMetadata } from '@nestjs/common';
import type { WorkflowEventFilter, WorkflowEventName } from './workflow-events.js';

export const ON_WORKFLOW_EVENT_METADATA = 'nestjs-redis-workflows:on-workflow-event';

export interface OnWorkflowEventMetadata {
  events: WorkflowEventName[] | '*';
  filter: WorkflowEventFilter;
}

/**
 * Marks a method of any provider as a listener of workflow lifecycle events (like @nestjs/event-emitter's
 * `@OnEvent` and @nestjs/bullmq's `@OnWorkerEvent`). The method gets a `WorkflowEventPayload`.
 *
 *   @OnWorkflowEvent('run.failed', { workflow: 'checkout' })
 *   onCheckoutFailed(e: WorkflowEventPayload) { this.alerts.page(e.runId, e.error) }
 */
export const OnWorkflowEvent = (event: WorkflowEventName | WorkflowEventName[] | '*', filter: WorkflowEventFilter = {}): MethodDecorator =>
  SetMetadata<string, OnWorkflowEventMetadata>(ON_WORKFLOW_EVENT_METADATA, {
    events: event === '*' ? '*' : Array.isArray(event) ? event : [event],
    filter,
  });
