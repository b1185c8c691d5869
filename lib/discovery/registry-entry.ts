import type { Type } from '@nestjs/common';
import { ON_FAILURE_METADATA } from '../workflow.constants.js';
import type { ResolvedWorkflowOptions } from './workflow-definition.js';

/**
 * A workflow's entry in the registry in Redis (JSON text): what API-only apps need to emit it by name,
 * and what listings, stats and the dashboard show. Written by every worker that serves the workflow,
 * and, when no worker has registered it, by an app that emits it by class (`registeredBy: 'emit'`), so
 * that its runs are listed and counted while no worker serves it.
 */
export function registryEntry(name: string, options: ResolvedWorkflowOptions, onFailure: boolean, registeredBy: 'worker' | 'emit'): string {
  return JSON.stringify({
    name,
    queue: options.queue,
    maxConcurrency: options.maxConcurrency,
    ...(options.flow ? { flow: flowSummary(options) } : {}),
    onFailure,
    maxAttempts: options.maxAttempts,
    timeoutMs: options.timeoutMs,
    backoff: options.backoff,
    cron: options.cron,
    input: options.input?.name,
    ...(options.versioning === 'pinned' ? { versioning: 'pinned' } : {}),
    registeredAt: new Date().toISOString(),
    registeredBy,
  });
}

/** Whether a workflow class has an @OnFailure method (what a worker would register). */
export function hasOnFailureMethod(type: Type): boolean {
  let prototype = type.prototype as object | null;
  while (prototype && prototype !== Object.prototype) {
    for (const key of Object.getOwnPropertyNames(prototype)) {
      const value = Object.getOwnPropertyDescriptor(prototype, key)?.value as unknown;
      if (typeof value === 'function' && Reflect.getMetadata(ON_FAILURE_METADATA, value)) return true;
    }
    prototype = Object.getPrototypeOf(prototype) as object | null;
  }
  return false;
}

/** What the registry shows of a workflow's flow control (its key function stays in the app's code). */
function flowSummary(options: ResolvedWorkflowOptions): Record<string, unknown> {
  const flow = options.flow!;
  return {
    ...(flow.concurrency ? { concurrency: flow.concurrency } : {}),
    ...(flow.rateLimit ? { rateLimit: { limit: flow.rateLimit, periodMs: flow.ratePeriodMs } } : {}),
    ...(flow.fairness ? { fairness: true } : {}),
    ...(flow.debounce ? { debounce: { periodMs: flow.debounce.periodMs, maxWaitMs: flow.debounce.maxWaitMs } } : {}),
  };
}
