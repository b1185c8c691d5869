export const WORKFLOW_MODULE_OPTIONS = Symbol('WORKFLOW_MODULE_OPTIONS');
export const WORKFLOW_METADATA = 'nestjs-redis-workflows:workflow';
export const ON_FAILURE_METADATA = 'nestjs-redis-workflows:on-failure';
export const STEP_METADATA = 'nestjs-redis-workflows:step';

export const DEFAULTS = {
  connection: 'redis://127.0.0.1:6379',
  prefix: 'wf',
  queue: 'default',
  concurrency: 10,
  leaseMs: 30_000,
  reaperIntervalMs: 100,
  shutdownGraceMs: 10_000,
  connectTimeoutMs: 10_000,
  maxPayloadBytes: 1024 * 1024,
  maxAttempts: 3,
  backoff: { type: 'exponential', delayMs: 1_000, maxDelayMs: 60_000 },
  retention: { succeededMs: 7 * 24 * 3600_000, failedMs: 30 * 24 * 3600_000, canceledMs: 30 * 24 * 3600_000 },
  eventRetentionMs: 24 * 3600_000,
  partitions: 1,
  maxStepsPerRun: 10_000,
  executionCache: { maxRuns: 1_000, maxBytes: 64 * 1024 * 1024, stickyWindowMs: 1_000, minRecords: 32 },
} as const;
