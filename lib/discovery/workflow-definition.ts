import type { Type } from '@nestjs/common';
import type { WorkflowMetadata } from '../decorators/workflow.decorator.js';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { BackoffOptions, CronTrigger, InputValidationOptions, WorkflowHandler } from '../interfaces/workflow.interfaces.js';
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
  };
}
