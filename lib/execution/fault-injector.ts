import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { FaultInjection, FaultKind, InjectedFault } from '../interfaces/fault-injection.interfaces.js';

/**
 * Decides which fault (if any) a step's execution gets: each configured fault fires on the first
 * execution of its step in a run, and is remembered so that the run's next execution goes on (in this
 * process: a run taken over by another process meets that process's own injector).
 */
export class FaultInjector {
  readonly injected: InjectedFault[] = [];
  private readonly byStep = new Map<string, FaultKind[]>();
  private readonly fired = new Set<string>();

  constructor(faults: FaultInjection, where: string) {
    if (faults === null || typeof faults !== 'object' || Array.isArray(faults)) {
      throw new WorkflowConfigurationError(`${where} must be an object like { crashAfterStep: ['charge'] }.`);
    }
    const known: FaultKind[] = ['crashAfterStep', 'repeatStep', 'loseLeaseAt'];
    for (const key of Object.keys(faults)) {
      if (!known.includes(key as FaultKind)) {
        throw new WorkflowConfigurationError(`${where} has an unknown fault '${key}'; the faults are ${known.join(', ')}.`);
      }
    }
    const add = (step: unknown, kind: FaultKind) => {
      if (typeof step !== 'string' || step === '') throw new WorkflowConfigurationError(`${where}.${kind} must name steps (non-empty strings), got ${JSON.stringify(step)}.`);
      this.byStep.set(step, [...(this.byStep.get(step) ?? []), kind]);
    };
    for (const kind of ['crashAfterStep', 'repeatStep'] as const) {
      const steps = faults[kind];
      if (steps === undefined) continue;
      if (!Array.isArray(steps)) throw new WorkflowConfigurationError(`${where}.${kind} must be an array of step names, e.g. ['charge'].`);
      for (const step of steps) add(step, kind);
    }
    if (faults.loseLeaseAt !== undefined) add(faults.loseLeaseAt, 'loseLeaseAt');
  }

  /** The faults of this execution of `step` in `runId` (none after each has fired once), marked as fired. */
  take(runId: string, step: string): FaultKind[] {
    const kinds = this.byStep.get(step);
    if (!kinds) return NONE;
    const due = kinds.filter((kind) => !this.fired.has(`${kind}\n${runId}\n${step}`));
    for (const kind of due) {
      this.fired.add(`${kind}\n${runId}\n${step}`);
      this.injected.push({ runId, step, fault: kind });
    }
    return due;
  }

  /** Configured steps whose faults never fired (a misspelt step name makes a test that cannot fail). */
  unfired(): string[] {
    return [...this.byStep.keys()].filter((step) => !this.injected.some((f) => f.step === step));
  }
}

const NONE: FaultKind[] = [];

/** What a crash or a lost lease does to the execution that meets it: it stops, and the run is executed again. */
export class InjectedFaultStop extends Error {
  constructor(readonly fault: FaultKind, readonly step: string) {
    super(`Fault injection: ${fault === 'loseLeaseAt' ? 'lease lost at' : 'crash after'} step '${step}'`);
  }
}
