import type { BackoffOptions } from '../interfaces/workflow.interfaces.js';

/** Delay before attempt `attempt + 1`, after `attempt` attempts failed (attempt counts from 1). */
export function backoffDelay(backoff: BackoffOptions | undefined, attempt: number): number {
  if (!backoff) return 0;
  const raw = backoff.type === 'exponential' ? backoff.delayMs * 2 ** Math.max(0, attempt - 1) : backoff.delayMs;
  return Math.max(0, Math.min(raw, backoff.maxDelayMs ?? Number.MAX_SAFE_INTEGER));
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it is aborted. */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Settles as `work` does, or rejects with the signal's reason as soon as it is aborted. */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
