import { WorkflowConfigurationError } from '../../errors/workflow.errors.js';

/**
 * The parts of prom-client the module uses, written out so that the package's types do not import
 * prom-client (an optional peer): a prom-client `Registry` (its global `register`, the one
 * @willsoto/nestjs-prometheus exposes, or your own) is a PromRegistry.
 */
export interface PromRegistry {
  registerMetric(metric: unknown): void;
  getSingleMetric(name: string): unknown;
  removeSingleMetric(name: string): void;
  getMetricsAsArray(): { name: string }[];
}

export type Labels = Record<string, string>;

interface MetricConfig {
  name: string;
  help: string;
  labelNames: readonly string[];
  registers: PromRegistry[];
}

export interface PromCounter {
  inc(labels: Labels, value?: number): void;
  reset(): void;
}

export interface PromHistogram {
  observe(labels: Labels, value: number): void;
}

export interface PromGauge {
  set(labels: Labels, value: number): void;
  reset(): void;
}

export interface PromClient {
  register: PromRegistry;
  Counter: new (config: MetricConfig & { collect?: (this: PromCounter) => Promise<void> | void }) => PromCounter;
  Histogram: new (config: MetricConfig & { buckets: number[] }) => PromHistogram;
  Gauge: new (config: MetricConfig & { collect?: (this: PromGauge) => Promise<void> | void }) => PromGauge;
}

const PROM_CLIENT = 'prom-client';

/**
 * Imports prom-client only when metrics are turned on: an app that does not set `metrics` never loads it.
 * Fails start-up with what to do when it is not installed.
 */
export async function loadPromClient(): Promise<PromClient> {
  const specifier = PROM_CLIENT;
  let loaded: PromClient & { default?: PromClient };
  try {
    // A variable specifier keeps bundlers and the type checker from requiring the optional package.
    loaded = (await import(specifier)) as PromClient & { default?: PromClient };
  } catch (error) {
    throw new WorkflowConfigurationError(
      `WorkflowModule option metrics is set, but ${PROM_CLIENT} could not be loaded (${error instanceof Error ? error.message.split('\n')[0] : String(error)}): ` +
        `install it with \`npm i ${PROM_CLIENT}\`, or remove the metrics option.`,
    );
  }
  const client = loaded.Counter ? loaded : loaded.default;
  if (!client?.Counter || !client.Gauge || !client.Histogram || !client.register) {
    throw new WorkflowConfigurationError(`The installed ${PROM_CLIENT} does not export Counter, Gauge, Histogram and register: install prom-client 15 (\`npm i prom-client@15\`).`);
  }
  return client;
}
