import type { ModuleMetadata, Type, InjectionToken, OptionalFactoryDependency } from '@nestjs/common';
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { WorkflowTracingOptions } from '../observability/tracing.js';
import type { WorkflowMetricsOptions } from '../observability/metrics/metrics-options.js';
import type { FaultInjection } from './fault-injection.interfaces.js';
import type { PayloadCodec } from '../codecs/payload-codec.js';

export type WorkflowConnection =
  | string
  | RedisOptions
  | Redis
  | Cluster
  | { nodes: ClusterNode[]; options?: ClusterOptions };

export interface WorkerOptions {
  /** Queues this app's worker serves. Default: every queue that a discovered workflow uses. */
  queues?: string[];
  /** Runs executing at once in this process. Default 10. */
  concurrency?: number;
  /** Lease of a claimed run; renewed while the run executes. Default 30 000 ms. */
  leaseMs?: number;
  /** Due runs, timers and expired leases are picked up within about this long. Default 100 ms. */
  reaperIntervalMs?: number;
}

/** Sticky executions: a worker keeps the executions it parked warm (see docs/long-runs.md). */
export interface ExecutionCacheOptions {
  /** Executions kept warm at most. Default 1,000. */
  maxRuns?: number;
  /** Memory the kept executions may take, as estimated from their step records. Default 64 MiB. */
  maxBytes?: number;
  /** How long a woken run waits for the worker that keeps it warm before any worker may take it. Default 1,000 ms. */
  stickyWindowMs?: number;
  /**
   * A run parks warm only once it has this many step records; a shorter one parks cold and is replayed on
   * its next wake, which costs less than the warm path's own claim and notice. Default 32; 0 keeps every run warm.
   */
  minRecords?: number;
}

export interface RetentionOptions {
  succeededMs?: number;
  failedMs?: number;
  canceledMs?: number;
}

export interface WorkflowModuleOptions {
  /** Default 'redis://127.0.0.1:6379'. An instance passed in is shared and never closed by the module. */
  connection?: WorkflowConnection;
  /** Key namespace, default 'wf'. */
  prefix?: string;
  /** `false`: this app only emits and inspects. Default: a worker runs. */
  worker?: false | WorkerOptions;
  /** Register cron triggers of discovered workflows. Default true. */
  cron?: boolean;
  /** How long start-up waits for Redis to answer before failing with a clear error. Default 10 000 ms.
   *  What it waits for (host:port, password masked) is logged at once. A refused password fails at once. */
  connectTimeoutMs?: number;
  /** How long app.close() lets executing runs finish. Default 10 000 ms. */
  shutdownGraceMs?: number;
  /** Largest input / step result / output / event payload in bytes. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Finished runs expire after this. Defaults: succeeded 7 days, failed and canceled 30 days. */
  retention?: RetentionOptions;
  /** How long a sent event stays available to runs that wait for it later. Default 24 h. */
  eventRetentionMs?: number;
  /** Per-queue settings; partitions spread a hot queue over shards. Default 1 partition. `concurrency`:
   *  runs of the queue's workflows executing at once across all workers (the queue keeps one partition). */
  queues?: Record<string, { partitions?: number; concurrency?: number }>;
  /** Sticky executions: a worker keeps the handlers of runs it parked suspended in memory, bounded and
   *  least recently parked out, and the run's next wake resumes them with only the new step records
   *  instead of replaying its history. `false`: every wake replays. Default { maxRuns: 1000, maxBytes: 64 MiB }. */
  executionCache?: false | ExecutionCacheOptions;
  /** Most step records one run may have (steps, sleeps, children and event waits all count). Past it the
   *  run fails with a NonRetriableError naming the limit. Default 10 000. */
  maxStepsPerRun?: number;
  /** OpenTelemetry spans for runs and steps. Default true: used when @opentelemetry/api is installed,
   *  a no-op otherwise. `{ tracer }` passes a tracer explicitly; `false` turns tracing off. */
  tracing?: boolean | WorkflowTracingOptions;
  /** sha256 hashes of Function libraries of newer releases of this package that this app runs on although
   *  none of its own processes loaded them (another app on the same Redis upgraded first). The hash is in
   *  the error this app gives when it meets such a library. Default: none. */
  trustedLibraryHashes?: string[];
  /** Prometheus metrics through prom-client (an optional peer: `npm i prom-client`). `true` registers them
   *  in prom-client's global registry (the one @willsoto/nestjs-prometheus serves); `{ registry, prefix }`
   *  picks another registry or prefixes the names. Default: off, and prom-client is never imported. */
  metrics?: boolean | WorkflowMetricsOptions;
  /** This deployment's build id, e.g. process.env.APP_VERSION: recorded on every run this app emits
   *  (RunInfo.version); a workflow with versioning 'pinned' has its runs claimed only by workers of the
   *  same version. Letters, digits and . _ + - (at most 64). Default: none (runs record no version). */
  version?: string;
  /** For integration tests only: crashes, duplicate deliveries and lost leases at the steps named, made to
   *  happen by this app's worker against the real Redis (see FaultInjection and docs/testing.md). A start
   *  with faults set logs a warning. Default: none. */
  faults?: FaultInjection;
  /** Encodes every payload before it is stored (inputs, step results, outputs, events, errors) and decodes
   *  it when read: `aesGcmCodec({ keys, current })` for encryption at rest with key rotation,
   *  `compressionCodec()`, or both with `chainCodecs`. Redis never reads payloads. Default: none. */
  codec?: PayloadCodec;
}

export interface WorkflowOptionsFactory {
  createWorkflowOptions(): Promise<WorkflowModuleOptions> | WorkflowModuleOptions;
}

export interface WorkflowModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useFactory?: (...args: any[]) => Promise<WorkflowModuleOptions> | WorkflowModuleOptions;
  useClass?: Type<WorkflowOptionsFactory>;
  useExisting?: Type<WorkflowOptionsFactory>;
  extraProviders?: ModuleMetadata['providers'];
}
