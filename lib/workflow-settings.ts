import { WorkflowConfigurationError } from './errors/workflow.errors.js';
import type { WorkflowModuleOptions } from './interfaces/module-options.interface.js';
import { assertKeySegment } from './redis/keys.js';
import { resolveMetricsOption } from './observability/metrics/metrics-options.js';
import { DEFAULTS } from './workflow.constants.js';
import { FaultInjector } from './execution/fault-injector.js';
import type { PayloadCodec } from './codecs/payload-codec.js';

/** The module's options with defaults applied and checked once, at start. */
export interface WorkflowSettings {
  prefix: string;
  worker: false | { queues?: string[]; concurrency: number; leaseMs: number; reaperIntervalMs: number };
  cron: boolean;
  shutdownGraceMs: number;
  connectTimeoutMs: number;
  maxPayloadBytes: number;
  retentionMs: { succeeded: number; failed: number; canceled: number };
  eventRetentionMs: number;
  maxStepsPerRun: number;
  executionCache: false | { maxRuns: number; maxBytes: number; stickyWindowMs: number; minRecords: number };
  trustedLibraryHashes: string[];
  metrics: ReturnType<typeof resolveMetricsOption>;
  /** This deployment's version (WorkflowModuleOptions.version), checked; undefined when not set. */
  version?: string;
  /** The `faults` option, for tests: one injector per app, so each fault fires once per run. */
  faults?: FaultInjector;
  codec?: PayloadCodec;
  partitions(queue: string): number;
  /** queues.<name>.concurrency: runs of the queue executing at once, cluster-wide (0 = unlimited). */
  queueConcurrency(queue: string): number;
}

export function resolveSettings(options: WorkflowModuleOptions): WorkflowSettings {
  if (options === null || typeof options !== 'object') {
    throw new WorkflowConfigurationError('WorkflowModule.forRoot() needs an options object, e.g. forRoot({ connection: "redis://127.0.0.1:6379" }).');
  }
  const prefix = options.prefix ?? DEFAULTS.prefix;
  assertKeySegment('prefix', prefix);
  const number = (value: number | undefined, fallback: number, name: string, min: number) => {
    const result = value ?? fallback;
    if (typeof result !== 'number' || !Number.isFinite(result) || result < min) {
      throw new WorkflowConfigurationError(`WorkflowModule option ${name} must be a number >= ${min}, got ${String(value)}.`);
    }
    return result;
  };
  let worker: WorkflowSettings['worker'] = false;
  if (options.worker !== false) {
    const w = options.worker ?? {};
    if (w.queues !== undefined) {
      if (!Array.isArray(w.queues)) throw new WorkflowConfigurationError('worker.queues must be an array of queue names.');
      for (const queue of w.queues) assertKeySegment('queue', queue);
    }
    worker = {
      queues: w.queues,
      concurrency: Math.floor(number(w.concurrency, DEFAULTS.concurrency, 'worker.concurrency', 1)),
      leaseMs: number(w.leaseMs, DEFAULTS.leaseMs, 'worker.leaseMs', 100),
      reaperIntervalMs: number(w.reaperIntervalMs, DEFAULTS.reaperIntervalMs, 'worker.reaperIntervalMs', 1),
    };
  }
  const partitions = new Map<string, number>();
  const queueConcurrency = new Map<string, number>();
  for (const [queue, settings] of Object.entries(options.queues ?? {})) {
    assertKeySegment('queue', queue);
    const count = number(settings?.partitions, DEFAULTS.partitions, `queues.${queue}.partitions`, 1);
    if (!Number.isInteger(count) || count > 1024) {
      throw new WorkflowConfigurationError(`queues.${queue}.partitions must be a whole number from 1 to 1024.`);
    }
    partitions.set(queue, count);
    if (settings?.concurrency !== undefined) {
      if (!Number.isInteger(settings.concurrency) || settings.concurrency < 1) {
        throw new WorkflowConfigurationError(`queues.${queue}.concurrency must be a whole number of at least 1, got ${String(settings.concurrency)}.`);
      }
      if (count > 1) {
        throw new WorkflowConfigurationError(
          `queues.${queue} has concurrency and ${count} partitions: a queue-wide limit is counted in one shard, so remove partitions (or the limit).`,
        );
      }
      queueConcurrency.set(queue, settings.concurrency);
    }
  }
  const trustedLibraryHashes = options.trustedLibraryHashes ?? [];
  if (!Array.isArray(trustedLibraryHashes) || !trustedLibraryHashes.every((hash) => typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash))) {
    throw new WorkflowConfigurationError('trustedLibraryHashes must be an array of sha256 hashes (64 lowercase hex digits), as printed in the error that names the library.');
  }
  const retention = options.retention ?? {};
  const version = checkVersion(options.version, 'WorkflowModule option version');
  return {
    prefix,
    worker,
    cron: options.cron ?? true,
    shutdownGraceMs: number(options.shutdownGraceMs, DEFAULTS.shutdownGraceMs, 'shutdownGraceMs', 0),
    connectTimeoutMs: number(options.connectTimeoutMs, DEFAULTS.connectTimeoutMs, 'connectTimeoutMs', 1),
    maxPayloadBytes: number(options.maxPayloadBytes, DEFAULTS.maxPayloadBytes, 'maxPayloadBytes', 1),
    retentionMs: {
      succeeded: number(retention.succeededMs, DEFAULTS.retention.succeededMs, 'retention.succeededMs', 0),
      failed: number(retention.failedMs, DEFAULTS.retention.failedMs, 'retention.failedMs', 0),
      canceled: number(retention.canceledMs, DEFAULTS.retention.canceledMs, 'retention.canceledMs', 0),
    },
    eventRetentionMs: number(options.eventRetentionMs, DEFAULTS.eventRetentionMs, 'eventRetentionMs', 0),
    maxStepsPerRun: Math.floor(number(options.maxStepsPerRun, DEFAULTS.maxStepsPerRun, 'maxStepsPerRun', 1)),
    executionCache: resolveExecutionCache(options.executionCache),
    trustedLibraryHashes,
    metrics: resolveMetricsOption(options.metrics),
    version,
    codec: checkCodec(options.codec),
    faults: options.faults !== undefined ? new FaultInjector(options.faults, 'WorkflowModule option faults') : undefined,
    partitions: (queue) => partitions.get(queue) ?? DEFAULTS.partitions,
    queueConcurrency: (queue) => queueConcurrency.get(queue) ?? 0,
  };
}

/** What a version may be: it names Redis keys of pinned runs (no ':') and is shown everywhere. */
const VERSION_PATTERN = /^[A-Za-z0-9._+-]{1,64}$/;

/** A version as given (WorkflowModuleOptions.version), checked; `what` names it in the error. */
export function checkVersion(version: unknown, what: string): string | undefined {
  if (version === undefined) return undefined;
  if (typeof version !== 'string' || !VERSION_PATTERN.test(version)) {
    throw new WorkflowConfigurationError(
      `${what} must be 1 to 64 letters, digits and . _ + - (a build id such as '2026.12.07-3' or a git sha), got ${JSON.stringify(version)}.`,
    );
  }
  return version;
}

function resolveExecutionCache(option: WorkflowModuleOptions['executionCache']): WorkflowSettings['executionCache'] {
  if (option === false) return false;
  const defaults = DEFAULTS.executionCache;
  if (option === undefined || option === null) return { ...defaults };
  const shape = 'executionCache must be false or { maxRuns?: number, maxBytes?: number, stickyWindowMs?: number, minRecords?: number }';
  if (typeof option !== 'object' || Array.isArray(option)) throw new WorkflowConfigurationError(`${shape}, got ${JSON.stringify(option)}.`);
  const unknown = Object.keys(option).filter((key) => !(key in defaults));
  if (unknown.length > 0) throw new WorkflowConfigurationError(`${shape}; '${unknown[0]}' is not one of them.`);
  const whole = (value: unknown, fallback: number, name: string, min: number) => {
    const result = value ?? fallback;
    if (typeof result !== 'number' || !Number.isInteger(result) || result < min) {
      throw new WorkflowConfigurationError(`executionCache.${name} must be a whole number >= ${min}, got ${String(value)} (or executionCache: false to turn the cache off).`);
    }
    return result;
  };
  return {
    maxRuns: whole(option.maxRuns, defaults.maxRuns, 'maxRuns', 1),
    maxBytes: whole(option.maxBytes, defaults.maxBytes, 'maxBytes', 1024),
    stickyWindowMs: whole(option.stickyWindowMs, defaults.stickyWindowMs, 'stickyWindowMs', 1),
    minRecords: whole(option.minRecords, defaults.minRecords, 'minRecords', 0),
  };
}

function checkCodec(codec: PayloadCodec | undefined): PayloadCodec | undefined {
  if (codec === undefined) return undefined;
  if (codec === null || typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new WorkflowConfigurationError('The codec option needs { encode(text): string, decode(text): string }, e.g. aesGcmCodec({ keys, current }).');
  }
  return codec;
}
