import { describeError } from '../errors/error-codec.js';
import { LeaseLostError } from '../errors/workflow.errors.js';
import type { FaultKind } from '../interfaces/fault-injection.interfaces.js';
import type { ExecutionState } from './execution-state.js';

/**
 * How the worker meets the faults of the module's `faults` option (tests only) at a step: as production
 * would, through the real engine. A lost lease or a crash stops this execution without recording the
 * step and releases the run (the history says why), so a worker claims it again at once and replays it:
 * what lease expiry and reclaim do after a real crash, without waiting for the lease to run out.
 */

/** Before the step's function runs: a lease lost while it runs (its signal aborts). */
export async function injectFaults(run: ExecutionState, faults: FaultKind[], step: string, call: () => unknown): Promise<void> {
  if (!faults.includes('loseLeaseAt')) return;
  const work = Promise.resolve().then(call);
  await stopExecution(run, `Fault injection: this worker lost the lease of run ${run.id} at step '${step}'`);
  await work.catch(() => undefined);
  throw run.stopReason();
}

/** After the step's function returned: a duplicate delivery runs it again; a crash loses its result. */
export async function injectFaultsAfter(run: ExecutionState, faults: FaultKind[], step: string, call: () => unknown): Promise<void> {
  if (faults.includes('repeatStep')) {
    run.logger.warn(`Fault injection: step '${step}' of run ${run.id} is executed a second time, as a duplicate delivery would`);
    await Promise.resolve()
      .then(call)
      .catch((error: unknown) => run.logger.warn(`Fault injection: the repeated execution of step '${step}' threw (${describeError(error)})`));
  }
  if (faults.includes('crashAfterStep')) {
    await stopExecution(run, `Fault injection: simulated crash after step '${step}' of run ${run.id}, before its result was recorded`);
    throw run.stopReason();
  }
}

async function stopExecution(run: ExecutionState, message: string): Promise<void> {
  run.logger.warn(`${message}; the run is released and executed again`);
  run.abort(new LeaseLostError(`${message}.`));
  await run.store.release(run.shard, message, [{ id: run.id, token: run.token }]);
}
