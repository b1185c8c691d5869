import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { FlowControl } from '../interfaces/workflow.interfaces.js';

/** A run's flow-control key and the spec wf1_emit stores with it (lua/includes/01-flow.lua). */
export interface RunFlow {
  /** Absent when the workflow has only debounce. */
  key?: string;
  spec?: string;
  debounce?: { key: string; periodMs: number; maxWaitMs?: number };
}

/** The key of a workflow whose rateLimit has no key function: one key for all its runs. */
export const WORKFLOW_WIDE_KEY = '*';
const MAX_KEY_LENGTH = 512;

/**
 * Computes a run's flow key from its input, when it is emitted: the key decides the run's shard and is
 * stored with it, so a later change of the function applies to new runs only.
 */
export function flowOfRun(workflow: string, flow: FlowControl, input: unknown): RunFlow {
  const run: RunFlow = {};
  if (flow.limited) {
    run.key = flow.key ? keyOf(workflow, flow.key, input) : WORKFLOW_WIDE_KEY;
    run.spec = flowSpec(flow);
  }
  if (flow.debounce) {
    // one function for both (checked at start): computed once
    const key = run.key !== undefined && flow.key === flow.debounce.key ? run.key : keyOf(workflow, flow.debounce.key, input);
    run.debounce = { key, periodMs: flow.debounce.periodMs, maxWaitMs: flow.debounce.maxWaitMs };
  }
  return run;
}

/** The key a workflow's key function gives the input: a non-empty string, else a clear error (nothing is written). */
function keyOf(workflow: string, fn: (input: unknown) => string, input: unknown): string {
  let key: unknown;
  try {
    key = fn(input);
  } catch (error) {
    throw new InvalidArgumentError(
      `The flow-control key function of workflow '${workflow}' threw for this input (${error instanceof Error ? error.message : String(error)}); nothing was emitted. Make it return a string for every valid input.`,
    );
  }
  if (typeof key !== 'string' || key === '' || key.length > MAX_KEY_LENGTH) {
    throw new InvalidArgumentError(
      `The flow-control key function of workflow '${workflow}' must return a non-empty string of at most ${MAX_KEY_LENGTH} characters, got ${typeof key === 'string' ? `a string of ${key.length}` : typeof key}; nothing was emitted. Return e.g. String(input.customerId).`,
    );
  }
  return key;
}

/** '<concurrency limit>,<rate limit>,<rate period ms>,<fair 0|1>', as lua/includes/01-flow.lua reads it. */
export function flowSpec(flow: FlowControl): string {
  return `${flow.concurrency},${flow.rateLimit},${flow.ratePeriodMs},${flow.fairness ? 1 : 0}`;
}
