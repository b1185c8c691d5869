import { WorkflowConfigurationError } from '../../errors/workflow.errors.js';
import type { PromRegistry } from './prom-client.loader.js';

export interface WorkflowMetricsOptions {
  /** The registry to register the metrics in. Default: prom-client's global `register` (the one
   *  @willsoto/nestjs-prometheus and `collectDefaultMetrics()` use). */
  registry?: PromRegistry;
  /** Put before every metric name, e.g. 'myapp_' gives 'myapp_workflow_runs_started_total'. Default ''. */
  prefix?: string;
}

const METRIC_NAME_PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** The `metrics` option checked at start, before anything connects: false when metrics are off. */
export function resolveMetricsOption(option: boolean | WorkflowMetricsOptions | undefined): false | { registry?: PromRegistry; prefix: string } {
  if (option === undefined || option === false) return false;
  if (option === true) return { prefix: '' };
  if (option === null || typeof option !== 'object') {
    throw new WorkflowConfigurationError(`WorkflowModule option metrics must be true, false or { registry?, prefix? }, got ${String(option)}.`);
  }
  const prefix = option.prefix ?? '';
  if (typeof prefix !== 'string' || (prefix !== '' && !METRIC_NAME_PREFIX.test(prefix))) {
    throw new WorkflowConfigurationError(
      `metrics.prefix ${JSON.stringify(prefix)} is not a valid start of a Prometheus metric name: use letters, digits, '_' or ':' (not starting with a digit), e.g. 'myapp_'.`,
    );
  }
  const registry = option.registry as Partial<PromRegistry> | undefined;
  if (registry !== undefined && (typeof registry?.registerMetric !== 'function' || typeof registry.getMetricsAsArray !== 'function')) {
    throw new WorkflowConfigurationError('metrics.registry must be a prom-client Registry (e.g. `new Registry()` or `register` from prom-client).');
  }
  return { ...(option.registry ? { registry: option.registry } : {}), prefix };
}
