/**
 * Faults to inject into runs, to prove in a test that a workflow's steps are idempotent: each fault is
 * what a crash, a duplicate delivery or a lost lease does to a step in production, made to happen at a
 * step you name (the @Step name or ctx.step.run's name). Each fault fires once per run and step name (its
 * first execution), so the run then goes on. For runInline's `faults` and, against a real Redis, the
 * module's `faults` option; never set it in production.
 */
export interface FaultInjection {
  /** The step's function returns, then the process "crashes" before its result is recorded: the run is
   *  executed again and the step runs a second time, with the same idempotency key. */
  crashAfterStep?: string[];
  /** The step's function runs twice, as when a run is delivered twice; the first result is recorded. */
  repeatStep?: string[];
  /** The lease is lost while the step runs: its signal aborts (reason LeaseLostError), its result is not
   *  recorded, and the next execution runs it again. */
  loseLeaseAt?: string;
}

export type FaultKind = keyof FaultInjection;

/** A fault that fired, in the order they fired. */
export interface InjectedFault {
  runId: string;
  step: string;
  fault: FaultKind;
}
