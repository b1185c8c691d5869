import { Inject, Injectable, Optional, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { WorkflowClient } from '../../client/workflow.client.js';
import { errorMessage } from '../../errors/error-codec.js';
import { WorkflowConfigurationError } from '../../errors/workflow.errors.js';
import { WorkflowHealthIndicator } from '../../health/workflow-health.indicator.js';
import type { WorkflowModuleOptions } from '../../interfaces/module-options.interface.js';
import { WORKFLOW_MODULE_OPTIONS } from '../../workflow.constants.js';
import { WorkflowEvents } from '../workflow-events.js';
import { loadPromClient, type PromRegistry } from './prom-client.loader.js';
import { RedisGauges } from './redis-gauges.js';
import { RunCounters } from './run-counters.js';

export interface WorkflowMetricsOptions {
  /** The registry to register the metrics in. Default: prom-client's global `register` (the one
   *  @willsoto/nestjs-prometheus and `collectDefaultMetrics()` use). */
  registry?: PromRegistry;
  /** Put before every metric name, e.g. 'myapp_' gives 'myapp_workflow_runs_started_total'. Default ''. */
  prefix?: string;
}

const METRIC_NAME_PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * Prometheus metrics (`metrics` option): counters and a step histogram fed by this process's lifecycle
 * events, and gauges read from Redis at scrape time. prom-client is imported only when the option is set.
 */
@Injectable()
export class WorkflowMetrics implements OnModuleInit, OnApplicationShutdown {
  private registered: { registry: PromRegistry; names: string[] } | undefined;
  private counters?: RunCounters;

  constructor(
    private readonly events: WorkflowEvents,
    private readonly client: WorkflowClient,
    private readonly health: WorkflowHealthIndicator,
    @Optional() @Inject(WORKFLOW_MODULE_OPTIONS) private readonly options?: WorkflowModuleOptions,
  ) {}

  async onModuleInit(): Promise<void> {
    const option = this.options?.metrics;
    if (option === undefined || option === false) return;
    const { registry: given, prefix = '' } = validate(option);
    const prom = await loadPromClient();
    const registry = given ?? prom.register;
    const before = new Set(namesIn(registry));
    try {
      this.counters = new RunCounters(prom, registry, prefix);
      new RedisGauges(prom, registry, prefix, this.client, this.health);
    } catch (error) {
      for (const name of namesIn(registry)) if (!before.has(name)) registry.removeSingleMetric(name);
      throw new WorkflowConfigurationError(
        `Could not register the workflow metrics: ${errorMessage(error)}. Another WorkflowModule in this process registered them in the same registry: give each its own metrics.prefix or metrics.registry.`,
      );
    }
    this.registered = { registry, names: namesIn(registry).filter((name) => !before.has(name)) };
    this.counters.subscribe(this.events);
  }

  /** Takes the metrics out of the registry, so that an app started again in the same process can register them. */
  onApplicationShutdown(): void {
    this.counters?.close();
    if (!this.registered) return;
    for (const name of this.registered.names) this.registered.registry.removeSingleMetric(name);
    this.registered = undefined;
  }
}

function validate(option: true | WorkflowMetricsOptions): WorkflowMetricsOptions {
  if (option === true) return {};
  if (option === null || typeof option !== 'object') {
    throw new WorkflowConfigurationError(`WorkflowModule option metrics must be true, false or { registry?, prefix? }, got ${String(option)}.`);
  }
  if (option.prefix !== undefined && (typeof option.prefix !== 'string' || (option.prefix !== '' && !METRIC_NAME_PREFIX.test(option.prefix)))) {
    throw new WorkflowConfigurationError(`metrics.prefix ${JSON.stringify(option.prefix)} is not a valid start of a Prometheus metric name: use letters, digits, '_' or ':' (not starting with a digit), e.g. 'myapp_'.`);
  }
  const registry = option.registry as Partial<PromRegistry> | undefined;
  if (registry !== undefined && (typeof registry?.registerMetric !== 'function' || typeof registry.getMetricsAsArray !== 'function')) {
    throw new WorkflowConfigurationError('metrics.registry must be a prom-client Registry (e.g. `new Registry()` or `register` from prom-client).');
  }
  return option;
}

function namesIn(registry: PromRegistry): string[] {
  return registry.getMetricsAsArray().map((m) => m.name);
}
