import {
  CanceledError,
  ChildWorkflowError,
  InputValidationError,
  InvalidArgumentError,
  LeaseLostError,
  NonDeterminismError,
  NonRetriableError,
  CorruptedRunError,
  PayloadError,
  RedisStepGuardError,
  TimeoutError,
  UnknownWorkflowError,
  WaitTimeoutError,
  WorkflowError,
} from './workflow.errors.js';
import { decodeStoredValue, encodePayloadText, isEncodedPayload } from '../codecs/payload-codec.js';

/** How an error is stored in Redis: plain JSON, so that any process can show and rethrow it. */
export interface StoredError {
  name: string;
  message: string;
  stack?: string;
  cause?: StoredError;
  /** Own enumerable properties of the original error that are JSON (e.g. a status code). */
  data?: Record<string, unknown>;
}

const KNOWN: Record<string, new (message: string) => Error> = {
  WorkflowError,
  CanceledError,
  TimeoutError,
  WaitTimeoutError,
  NonRetriableError,
  CorruptedRunError,
  UnknownWorkflowError,
  LeaseLostError,
  NonDeterminismError,
  ChildWorkflowError,
  PayloadError,
  InvalidArgumentError,
  RedisStepGuardError,
};

/**
 * What is kept of an error (characters). An error's own properties and causes are user data of any size:
 * a 4 MB string property was stored whole with every attempt. The run's own error keeps the most; each
 * cause (at most MAX_CAUSES deep) keeps less, so a stored error stays under about 32 KB.
 */
const LIMITS = [
  { message: 8_000, stack: 4_000 },
  { message: 2_000, stack: 1_000 },
] as const;
const MAX_CAUSES = 3;
const MAX_NAME = 200;
const MAX_DATA_PROPERTIES = 10;
const MAX_DATA_KEY = 100;
const MAX_DATA_STRING = 256;

export function encodeError(error: unknown, depth = 0): StoredError {
  const limits = LIMITS[Math.min(depth, LIMITS.length - 1)];
  if (!(error instanceof Error)) {
    return { name: 'Error', message: truncate(typeof error === 'string' ? error : safeString(error), limits.message) };
  }
  const stored: StoredError = { name: truncate(String(error.name || 'Error'), MAX_NAME), message: truncate(String(error.message ?? ''), limits.message) };
  if (error.stack) stored.stack = truncate(String(error.stack), limits.stack);
  if (error.cause !== undefined && depth < MAX_CAUSES) stored.cause = encodeError(error.cause, depth + 1);
  const data: Record<string, unknown> = {};
  let kept = 0;
  for (const [key, value] of Object.entries(error)) {
    if (key === 'name' || key === 'message' || key === 'stack' || key === 'cause') continue;
    if (error instanceof InputValidationError && key === 'errors') continue;
    if (!(value === null || ['string', 'number', 'boolean'].includes(typeof value))) continue;
    if (kept === MAX_DATA_PROPERTIES || key.length > MAX_DATA_KEY) continue;
    data[key] = typeof value === 'string' ? truncate(value, MAX_DATA_STRING) : value;
    kept += 1;
  }
  if (kept > 0) stored.data = data;
  return stored;
}

/** An error as stored for a run or a step: encoded with the payload codec when there is one (its message and data are the user's). */
export function encodeErrorJson(error: unknown): string {
  return encodePayloadText(JSON.stringify(encodeError(error)));
}

/** Rebuilds an Error from its stored form (encoded, or not): the package's own errors get their class back. */
export function decodeError(given: StoredError | string): Error {
  const decoded = isEncodedPayload(given) ? decodeStoredValue(given, true) : given;
  if (typeof decoded === 'string') return new WorkflowError(decoded);
  const stored = decoded as StoredError;
  const Known = KNOWN[stored.name];
  const error: Error = Known ? new Known(stored.message) : new WorkflowError(stored.message);
  error.name = stored.name;
  if (stored.stack) error.stack = stored.stack;
  if (stored.cause) (error as { cause?: unknown }).cause = decodeError(stored.cause);
  if (stored.data) Object.assign(error, stored.data);
  return error;
}

export function decodeErrorJson(text: string | null | undefined): Error | undefined {
  if (!text) return undefined;
  try {
    return decodeError(JSON.parse(text) as StoredError | string);
  } catch {
    return new WorkflowError(`Unreadable stored error: ${truncate(text, 200)}`);
  }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length - max} more characters)` : text;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return 'unprintable error value';
  }
}

/** An error's message, for log lines. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An error's name and message, for log lines where the kind of error matters. */
/** An error in one line for logs and messages, cut like a stored cause: a user's error message can be megabytes. */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : safeString(error);
  return truncate(text, LIMITS[1].message);
}
