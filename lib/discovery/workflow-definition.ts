import type { Type } from '@nestjs/common';
import type { WorkflowMetadata } from '../decorators/workflow.decorator.js';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { BackoffOptions, CronTrigger, FlowControl, InputValidationOptions, WorkflowHandler, WorkflowOptions } from '../interfaces/workflow.interfaces.js';
import { MAX_DELAY_MS } from '../execution/call-limits.js';
import { assertKeySegment } from '../redis/keys.js';
import { DEFAULTS, WORKFLOW_METADATA } from '../workflow.constants.js';

export interface ResolvedWorkflowOptions {
  queue: string;
  input?: Type<object>;
  validation: Required<InputValidationOptions>;
  maxAttempts: number;
  backoff: BackoffOptions;
  maxConcurrency: number; // 0 = unlimited
  cron: CronTrigger[];
  timeoutMs: number; // 0 = none
  /** concurrency / rateLimit / fairness, when the workflow has any. */
  flow?: FlowControl;
  versioning: 'pinned' | 'patch';
}

/** A workflow as the engine sees it: its name, options and (in an app that has it) its handler. */
export interface WorkflowDefinition {
  name: string;
  type: Type<WorkflowHandler>;
  options: ResolvedWorkflowOptions;
  instance?: WorkflowHandler;
  onFailure?: string;
}

export function readWorkflowMetadata(type: unknown): WorkflowMetadata | undefined {
  if (typeof type !== 'function') return undefined;
  return Reflect.getMetadata(WORKFLOW_METADATA, type) as WorkflowMetadata | undefined;
}

export function resolveWorkflowOptions(meta: WorkflowMetadata): ResolvedWorkflowOptions {
  const o = meta.options;
  const where = `@Workflow('${meta.name}')`;
  const queue = o.queue ?? DEFAULTS.queue;
  assertKeySegment('queue', queue);
  const positiveInt = (value: number | undefined, option: string) => {
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
      throw new WorkflowConfigurationError(`${where}: ${option} must be a whole number of at least 1, got ${value}.`);
    }
  };
  positiveInt(o.maxAttempts, 'maxAttempts');
  positiveInt(o.maxConcurrency, 'maxConcurrency');
  positiveInt(o.timeoutMs, 'timeoutMs');
  if (o.timeoutMs !== undefined && o.timeoutMs > MAX_DELAY_MS) {
    throw new WorkflowConfigurationError(`${where}: timeoutMs must be at most ${MAX_DELAY_MS} (100 years), got ${o.timeoutMs}.`);
  }
  const delayOk = (ms: unknown) => ms === undefined || (typeof ms === 'number' && ms >= 0 && ms <= MAX_DELAY_MS);
  if (o.backoff && (!['fixed', 'exponential'].includes(o.backoff.type) || o.backoff.delayMs === undefined || !delayOk(o.backoff.delayMs) || !delayOk(o.backoff.maxDelayMs))) {
    throw new WorkflowConfigurationError(`${where}: backoff needs type 'fixed' or 'exponential' and delayMs (and maxDelayMs) from 0 to ${MAX_DELAY_MS}.`);
  }
  if (o.input !== undefined && typeof o.input !== 'function') {
    throw new WorkflowConfigurationError(`${where}: input must be a class (a class-validator DTO).`);
  }
  if (o.versioning !== undefined && o.versioning !== 'pinned' && o.versioning !== 'patch') {
    throw new WorkflowConfigurationError(`${where}: versioning must be 'pinned' or 'patch', got ${JSON.stringify(o.versioning)}.`);
  }
  const validation = { whitelist: true, forbidNonWhitelisted: true, ...o.validation };
  for (const [option, value] of Object.entries(validation)) {
    if (typeof value !== 'boolean') {
      throw new WorkflowConfigurationError(`${where}: validation.${option} must be true or false, got ${String(value)}.`);
    }
  }
  return {
    queue,
    input: o.input,
    validation,
    maxAttempts: o.maxAttempts ?? DEFAULTS.maxAttempts,
    backoff: o.backoff ?? { ...DEFAULTS.backoff },
    maxConcurrency: o.maxConcurrency ?? 0,
    cron: o.cron ?? [],
    timeoutMs: o.timeoutMs ?? 0,
    versioning: o.versioning ?? 'patch',
    flow: resolveFlowControl(o, where),
  };
}

/** The checked flow-control options (README "Flow control"), or undefined when the workflow has none. */
function resolveFlowControl(o: WorkflowOptions, where: string): FlowControl | undefined {
  const { concurrency, rateLimit, fairness, debounce } = o;
  if (concurrency === undefined && rateLimit === undefined && fairness === undefined && debounce === undefined) return undefined;
  const limit = (value: unknown, option: string) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 1_000_000) {
      throw new WorkflowConfigurationError(`${where}: ${option} must be a whole number from 1 to 1,000,000, got ${String(value)}.`);
    }
    return value;
  };
  const keyFn = (value: unknown, option: string) => {
    if (typeof value !== 'function') {
      throw new WorkflowConfigurationError(`${where}: ${option} must be a function of the input that returns the key, e.g. (input) => input.customerId.`);
    }
    return value as (input: unknown) => string;
  };
  if (concurrency !== undefined && (concurrency === null || typeof concurrency !== 'object')) {
    throw new WorkflowConfigurationError(`${where}: concurrency must be { key: (input) => string, limit: number }.`);
  }
  if (rateLimit !== undefined && (rateLimit === null || typeof rateLimit !== 'object')) {
    throw new WorkflowConfigurationError(`${where}: rateLimit must be { key?: (input) => string, limit: number, periodMs: number }.`);
  }
  if (fairness !== undefined && typeof fairness !== 'boolean') {
    throw new WorkflowConfigurationError(`${where}: fairness must be true or false, got ${String(fairness)}.`);
  }
  const concurrencyKey = concurrency && keyFn(concurrency.key, 'concurrency.key');
  const rateKey = rateLimit?.key !== undefined ? keyFn(rateLimit.key, 'rateLimit.key') : undefined;
  if (concurrencyKey && rateKey && concurrencyKey !== rateKey) {
    throw new WorkflowConfigurationError(
      `${where}: concurrency and rateLimit must share one key function (their limits are kept per key together); pass the same function to both, or leave rateLimit.key out to use concurrency.key.`,
    );
  }
  const key = concurrencyKey ?? rateKey;
  if (fairness && !key) {
    throw new WorkflowConfigurationError(`${where}: fairness needs a key to take turns between: give concurrency.key or rateLimit.key.`);
  }
  if (rateLimit && (typeof rateLimit.periodMs !== 'number' || !Number.isInteger(rateLimit.periodMs) || rateLimit.periodMs < 1 || rateLimit.periodMs > MAX_DELAY_MS)) {
    throw new WorkflowConfigurationError(`${where}: rateLimit.periodMs must be a whole number of ms from 1 to ${MAX_DELAY_MS}, got ${String(rateLimit.periodMs)}.`);
  }
  const duration = (value: unknown, option: string) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_DELAY_MS) {
      throw new WorkflowConfigurationError(`${where}: ${option} must be a whole number of ms from 1 to ${MAX_DELAY_MS}, got ${String(value)}.`);
    }
    return value;
  };
  if (debounce !== undefined && (debounce === null || typeof debounce !== 'object')) {
    throw new WorkflowConfigurationError(`${where}: debounce must be { key: (input) => string, periodMs: number, maxWaitMs?: number }.`);
  }
  const debounceKey = debounce && keyFn(debounce.key, 'debounce.key');
  if (debounceKey && key && debounceKey !== key) {
    throw new WorkflowConfigurationError(
      `${where}: debounce.key must be the same function as ${concurrencyKey ? 'concurrency.key' : 'rateLimit.key'}: runs of one key are kept in one shard, where all their limits are counted.`,
    );
  }
  if (debounce && debounce.maxWaitMs !== undefined && duration(debounce.maxWaitMs, 'debounce.maxWaitMs') < duration(debounce.periodMs, 'debounce.periodMs')) {
    throw new WorkflowConfigurationError(`${where}: debounce.maxWaitMs must be at least debounce.periodMs.`);
  }
  return {
    key,
    limited: concurrency !== undefined || rateLimit !== undefined || fairness === true,
    ...(debounce && debounceKey
      ? { debounce: { key: debounceKey, periodMs: duration(debounce.periodMs, 'debounce.periodMs'), ...(debounce.maxWaitMs !== undefined ? { maxWaitMs: debounce.maxWaitMs } : {}) } }
      : {}),
    concurrency: concurrency ? limit(concurrency.limit, 'concurrency.limit') : 0,
    rateLimit: rateLimit ? limit(rateLimit.limit, 'rateLimit.limit') : 0,
    ratePeriodMs: rateLimit ? rateLimit.periodMs : 0,
    fairness: fairness ?? false,
  };
}
