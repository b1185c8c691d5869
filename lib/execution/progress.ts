import { PayloadError } from '../errors/workflow.errors.js';
import { toPayload } from './payload.js';

/** The largest progress value stored (lua/ops-progress.lua refuses more): a run hash field, read by every listing. */
export const MAX_PROGRESS_BYTES = 4096;

/** ctx.setProgress's value as stored: JSON text of at most MAX_PROGRESS_BYTES; throws a PayloadError that says what to do. */
export function progressText(value: unknown): string {
  if (value === undefined) throw new PayloadError('setProgress needs a value: a number from 0 to 1, an object such as { fraction: 0.4, done: 40, total: 100 }, or other JSON.');
  try {
    return toPayload(value, 'The progress value', MAX_PROGRESS_BYTES)!;
  } catch (error) {
    if (error instanceof PayloadError && /more than maxPayloadBytes/.test(error.message)) {
      throw new PayloadError(
        `The progress value is more than ${MAX_PROGRESS_BYTES} bytes as JSON. Keep it to counts and a short note (e.g. { fraction: 0.4, done: 40, total: 100 }); put large data in a step's result.`,
      );
    }
    throw error;
  }
}
