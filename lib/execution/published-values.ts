import { InvalidArgumentError, PayloadError } from '../errors/workflow.errors.js';
import { quoteName } from './call-limits.js';
import type { ExecutionState } from './execution-state.js';
import { toPayload } from './payload.js';
import { encodeStepRecord } from './step-record.js';
import { EndOfRecords } from './suspension.js';

/** The largest value ctx.setEvent publishes (JSON, UTF-8): a status or an intermediate result, not a data set. */
export const MAX_PUBLISHED_VALUE_BYTES = 64 * 1024;
/** The longest key of a published value. */
export const MAX_PUBLISHED_KEY_LENGTH = 200;

/**
 * The step name a publication is recorded under: a NUL first, which no step name a user writes has, so that
 * ctx.setEvent('status') and ctx.step.run('status') never share a record.
 */
export const PUBLISHED_STEP_PREFIX = '\u0000setEvent:';

export function checkPublishedKey(key: unknown, where: string): string {
  if (typeof key !== 'string' || key === '' || key.length > MAX_PUBLISHED_KEY_LENGTH) {
    throw new InvalidArgumentError(`${where} needs a key of 1 to ${MAX_PUBLISHED_KEY_LENGTH} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}.`);
  }
  return key;
}

/**
 * ctx.setEvent(key, value): publishes a value of the run (lua/published.lua) that client.getEvent reads or
 * waits for. Each call is a record of the run (its key and place among the run's calls, not its value), so
 * a replay that reaches it again publishes nothing: what readers saw stands.
 */
export function publishValue(run: ExecutionState, key: string, value: unknown): Promise<void> {
  let text: string;
  let field: string;
  try {
    run.assertExecuting();
    checkPublishedKey(key, 'ctx.setEvent()');
    text = toPayload(value ?? null, `ctx.setEvent(${quoteName(key)})'s value`, run.settings.maxPayloadBytes) ?? 'null';
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > MAX_PUBLISHED_VALUE_BYTES) {
      throw new PayloadError(
        `ctx.setEvent(${quoteName(key)})'s value is ${bytes} bytes, more than ${MAX_PUBLISHED_VALUE_BYTES} (64 KiB). Publish a status or a summary, and keep large data in step results or a store of its own.`,
      );
    }
    field = run.journal.nextField(`${PUBLISHED_STEP_PREFIX}${key}`);
    const stored = run.journal.steps.get(field);
    if (stored) {
      run.journal.assertSameStep(stored, 'set-event', key);
      return Promise.resolve();
    }
    if (run.mode === 'collect') throw new EndOfRecords();
  } catch (error) {
    return Promise.reject(error);
  }
  const record = encodeStepRecord({ k: 'set-event', f: key, s: 'succeeded', n: run.journal.position(field) });
  return run.parking.track(async () => {
    // the run's earlier steps first, so that a reader never sees a value ahead of the records it follows
    await run.commits.flush();
    const result = await run.store.setEvent(run.shard, run.id, run.token, field, record, key, text);
    if (!result.ok) {
      run.lose(result.reason);
      throw run.stopReason();
    }
    run.journal.remember(field, result.at, 'S', JSON.parse(record));
  });
}
