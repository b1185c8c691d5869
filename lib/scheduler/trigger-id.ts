import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { CronTrigger } from '../interfaces/workflow.interfaces.js';

/** The id of a trigger: its own, or one derived from its expression and time zone. */
export function triggerId(workflow: string, trigger: CronTrigger): string {
  if (trigger === null || typeof trigger !== 'object' || typeof trigger.expression !== 'string' || trigger.expression.trim() === '') {
    throw new WorkflowConfigurationError(`@Workflow('${workflow}'): each cron trigger needs an expression, e.g. { expression: '0 * * * *' }.`);
  }
  if (trigger.id !== undefined && (typeof trigger.id !== 'string' || trigger.id === '')) {
    throw new WorkflowConfigurationError(`@Workflow('${workflow}'): a cron trigger's id must be a non-empty string.`);
  }
  if (trigger.catchUp !== undefined && trigger.catchUp !== 'none' && trigger.catchUp !== 'latest') {
    throw new WorkflowConfigurationError(`@Workflow('${workflow}'): a cron trigger's catchUp must be 'none' or 'latest', got ${JSON.stringify(trigger.catchUp)}.`);
  }
  return trigger.id ?? `${trigger.expression.trim()}@${trigger.timezone ?? 'local'}`;
}
