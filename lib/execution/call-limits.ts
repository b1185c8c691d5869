import { InvalidArgumentError } from '../errors/workflow.errors.js';

/**
 * Limits on what calls into the API accept, checked at the call, before anything is written. Redis
 * functions compute deadlines as the server's time plus a delay: a delay past what Lua's numbers print
 * exactly (1e300) came back as a deadline in the past, and the wait fired at once.
 */

/** The longest delay, sleep or timeout: 100 years (3,153,600,000,000 ms). */
export const MAX_DELAY_MS = 100 * 365 * 24 * 60 * 60 * 1000;
/** The longest timeout kept by a timer in this process (a step's timeoutMs, result()'s): Node's timers
 *  fire at once past 2^31 - 1 ms (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The most retries a step may have. */
export const MAX_STEP_RETRIES = 1000;
/** The longest step name (UTF-16 units): it is stored with every record and shown in every listing. */
export const MAX_STEP_NAME_LENGTH = 256;
export const MAX_EVENT_NAME_LENGTH = 200;
export const MAX_EVENT_KEY_LENGTH = 512;

/** What a message names (the call and argument): a function when building it would cost on a hot path. */
export type Label = string | (() => string);

const text = (label: Label) => (typeof label === 'string' ? label : label());

/** A delay or timeout in ms: a finite number from `min` to MAX_DELAY_MS. */
export function checkDuration(value: unknown, what: Label, min = 0, max = MAX_DELAY_MS): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `${text(what)} must be a number of milliseconds from ${min} to ${max}${max === MAX_DELAY_MS ? ' (100 years)' : ' (about 24.8 days, the longest timer Node keeps)'}, got ${describe(value)}.`,
    );
  }
  return value;
}

/** A step's own options (ctx.step.run's and @Step's), checked where they are given. */
export function checkStepOptions(opts: { timeoutMs?: unknown; retries?: unknown; shouldRetry?: unknown } | undefined, where: Label): void {
  if (opts === undefined || opts === null) return;
  if (opts.shouldRetry !== undefined && typeof opts.shouldRetry !== 'function') {
    throw new InvalidArgumentError(`${text(where)}: shouldRetry must be a function (error, attempt) => boolean.`);
  }
  if (opts.timeoutMs !== undefined) checkDuration(opts.timeoutMs, () => `${text(where)}: timeoutMs`, 1, MAX_TIMER_MS);
  if (opts.retries !== undefined && !(Number.isInteger(opts.retries) && (opts.retries as number) >= 0 && (opts.retries as number) <= MAX_STEP_RETRIES)) {
    throw new InvalidArgumentError(`${text(where)}: retries must be a whole number from 0 to ${MAX_STEP_RETRIES}, got ${describe(opts.retries)}.`);
  }
}

/** A point in time for sleepUntil / runAt: a valid Date no further than MAX_DELAY_MS from now. */
export function checkInstant(value: unknown, what: Label): number {
  const ms = value instanceof Date ? value.getTime() : NaN;
  if (!Number.isFinite(ms)) throw new InvalidArgumentError(`${text(what)} must be a valid Date, got ${value instanceof Date ? 'an invalid Date' : describe(value)}.`);
  if (ms - Date.now() > MAX_DELAY_MS) throw new InvalidArgumentError(`${text(what)} must be at most 100 years from now, got ${(value as Date).toISOString()}.`);
  return ms;
}

export function checkStepName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_STEP_NAME_LENGTH) {
    throw new InvalidArgumentError(
      `A step needs a name of 1 to ${MAX_STEP_NAME_LENGTH} characters, got ${typeof name === 'string' ? `${name.length} characters` : describe(name)}. ` +
        'Put large or variable data in the step’s arguments or result, not in its name.',
    );
  }
  return name;
}

/** The one rule for event names and keys, shared by sendEvent and waitForEvent (so a wait can be met). */
export function checkEvent(event: unknown, key: unknown, where: Label): { event: string; key: string } {
  if (typeof event !== 'string' || event === '' || event.length > MAX_EVENT_NAME_LENGTH) {
    throw new InvalidArgumentError(`${text(where)} needs an event name of 1 to ${MAX_EVENT_NAME_LENGTH} characters, got ${typeof event === 'string' ? `${event.length} characters` : describe(event)}.`);
  }
  const k = key ?? '';
  if (typeof k !== 'string' || k.length > MAX_EVENT_KEY_LENGTH) {
    throw new InvalidArgumentError(`${text(where)}: the event key must be a string of at most ${MAX_EVENT_KEY_LENGTH} characters, got ${typeof k === 'string' ? `${k.length} characters` : describe(k)}.`);
  }
  return { event, key: k };
}

export const MAX_SEND_ID_LENGTH = 256;

/** sendEvent's `id` (undefined when not given): a string that names one send of an event. */
export function checkSendId(id: unknown): string | undefined {
  if (id === undefined) return undefined;
  if (typeof id !== 'string' || id === '' || id.length > MAX_SEND_ID_LENGTH) {
    throw new InvalidArgumentError(
      `sendEvent: id must be a string of 1 to ${MAX_SEND_ID_LENGTH} characters that names this send (an order id, a webhook's delivery id), got ${typeof id === 'string' ? `${id.length} characters` : describe(id)}.`,
    );
  }
  return id;
}

/** A step name as error messages quote it: at most 100 characters of it. */
export function quoteName(name: unknown): string {
  const text = String(name);
  return text.length > 100 ? `'${text.slice(0, 100)}…'` : `'${text}'`;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined ? String(value) : typeof value;
}
