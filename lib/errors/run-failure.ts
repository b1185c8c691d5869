/**
 * The errors a run's `result()` rejects with are rebuilt from what the run stored (any class, often the
 * user's own), so nothing in their type says that a run failed rather than the code that awaited it.
 * The waiter records them here with their run id; the HTTP filter answers them as failed runs.
 * A WeakMap: no property is added to the error, and nothing is kept once the error is gone.
 */
const runIds = new WeakMap<Error, string>();

export function markRunFailure<E extends Error>(error: E, runId: string): E {
  runIds.set(error, runId);
  return error;
}

/** The id of the run that failed with this error, if `result()` rejected with it. */
export function failedRunIdOf(error: unknown): string | undefined {
  return error instanceof Error ? runIds.get(error) : undefined;
}
