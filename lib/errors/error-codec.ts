import {
  CanceledError,
  ChildWorkflowError,
  InputValidationError,
  LeaseLostError,
  NonDeterminismError,
  NonRetriableError,
  PayloadError,
  TimeoutError,
  UnknownWorkflowError,
  WaitTimeoutError,
  WorkflowError,
} from './workflow.errors.js';

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
  UnknownWorkflowError,
  LeaseLostError,
  NonDeterminismError,
  ChildWorkflowError,
  PayloadError,
};

const MAX_STACK = 4_000;
const MAX_MESSAGE = 8_000;

export function encodeError(error: unknown, depth = 0): StoredError {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: truncate(typeof error === 'string' ? error : safeString(error), MAX_MESSAGE) };
  }
  const stored: StoredError = { name: error.name || 'Error', message: truncate(error.message ?? '', MAX_MESSAGE) };
  if (error.stack) stored.stack = truncate(error.stack, MAX_STACK);
  if (error.cause !== undefined && depth < 3) stored.cause = encodeError(error.cause, depth + 1);
  const data: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key === 'name' || key === 'message' || key === 'stack' || key === 'cause') continue;
    if (error instanceof InputValidationError && key === 'errors') continue;
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) data[key] = value;
  }
  if (Object.keys(data).length > 0) stored.data = data;
  return stored;
}

export function encodeErrorJson(error: unknown): string {
  return JSON.stringify(encodeError(error));
}

/** Rebuilds an Error from its stored form: the package's own errors get their class back. */
export function decodeError(stored: StoredError): Error {
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
    return decodeError(JSON.parse(text) as StoredError);
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
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
