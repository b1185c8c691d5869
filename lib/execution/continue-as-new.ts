/**
 * What ctx.continueAsNew throws through the handler: the execution ends by continuing as a new run
 * (RunExecution.continueRun). A handler that catches it and goes on still continues: the call is recorded
 * on the execution before this is thrown, and wins over whatever the handler does next.
 */
export class ContinueAsNewSignal extends Error {
  constructor() {
    super('The run continues as a new run (ctx.continueAsNew); this execution ends here.');
    this.name = 'ContinueAsNew';
  }
}

export const CONTINUED_TWICE =
  "ctx.continueAsNew was called twice in one execution: call it once, as the handler's last act (return ctx.continueAsNew(next)).";
