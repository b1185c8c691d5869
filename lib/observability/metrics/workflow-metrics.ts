import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { WorkflowClient } from '../../client/workflow.client.js';
import { errorMessage } from '../../errors/error-codec.js';
import { WorkflowConfigurationError } from '../../errors/workflow.errors.js';
import { WorkflowHealthIndicator } from '../../health/workflow-health.indicator.js';
import { WorkflowRedis } from '../../redis/workflow-redis.js';
import { WorkflowEvents } from '../workflow-events.js';
import { loadPromClient, type PromClient, type PromRegistry } from './prom-client.loader.js';
import { RedisGauges } from './redis-gauges.js';
import { RunCounters } from './run-counters.js';

/**
 * Prometheus metrics (`metrics` option): counters and a step histogram fed by this process's lifecycle
 * events, and gauges read from Redis at scrape time. prom-client is imported only when the option is set.
 */
@Injectable()
export class WorkflowMetrics implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('WorkflowMetrics');
  private registered: { registry: PromRegistry; names: string[] } | undefined;
  private counters?: RunCounters;

  constructor(
    private readonly events: WorkflowEvents,
    private readonly client: WorkflowClient,
    private readonly health: WorkflowHealthIndicator,
    private readonly redis: WorkflowRedis,
  ) {}

  async onModuleInit(): Promise<void> {
    const settings = this.redis.settings.metrics;
    if (!settings) return;
    let prom: PromClient;
    try {
      prom = await loadPromClient();
    } catch (error) {
      // Start-up fails: close what the module opened meanwhile, as the lifecycle does on its own failures
      // (not awaited: this error, not a closed connection's, is the one Nest reports).
      this.redis.connections.close().catch((closeError: unknown) => this.logger.warn(`Closing Redis connections failed: ${errorMessage(closeError)}`));
      throw error;
    }
    const registry = settings.registry ?? prom.register;
    const before = new Set(namesIn(registry));
    try {
      this.counters = new RunCounters(prom, registry, settings.prefix);
      new RedisGauges(prom, registry, settings.prefix, this.client, this.health);
    } catch (error) {
      for (const name of namesIn(registry)) if (!before.has(name)) registry.removeSingleMetric(name);
      this.redis.connections.close().catch(() => undefined);
      throw new WorkflowConfigurationError(
        `Could not register the workflow metrics: ${errorMessage(error)} Another WorkflowModule in this process registered them in the same registry: give each its own metrics.prefix or metrics.registry.`,
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

function namesIn(registry: PromRegistry): string[] {
  return registry.getMetricsAsArray().map((m) => m.name);
}
