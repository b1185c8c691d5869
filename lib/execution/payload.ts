import { PayloadError } from '../errors/workflow.errors.js';
import { decodeStoredValue, encodePayloadText } from '../codecs/payload-codec.js';

/**
 * Turns a value into the JSON text that is stored, refusing what JSON would silently change or drop:
 * functions, symbols, BigInts, cycles, Maps and Sets, non-finite numbers. Dates and objects with toJSON
 * are stored as JSON makes them (a Date becomes its ISO string), so a value read back after a replay is
 * the same as on first execution. `undefined` is stored as no value.
 */
export function toPayload(value: unknown, what: string, maxBytes: number): string | undefined {
  if (value === undefined) return undefined;
  // Plain scalars (the common step result) need no walk.
  const type = typeof value;
  const scalar = value === null || type === 'boolean' || type === 'string' || (type === 'number' && Number.isFinite(value));
  const problem = scalar ? undefined : findUnstorable(value, '$', new Set(), 0);
  if (problem) throw new PayloadError(`${what} is not JSON: ${problem}. Return plain data (objects, arrays, strings, numbers, booleans, null).`);
  const text = JSON.stringify(value);
  // A UTF-8 character takes at most 3 bytes per UTF-16 unit: short texts need no count.
  if (text.length * 3 <= maxBytes) return encodePayloadText(text);
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > maxBytes) {
    throw new PayloadError(
      `${what} is ${bytes} bytes, more than maxPayloadBytes (${maxBytes}). Store large data elsewhere (S3, a database) and pass a reference.`,
    );
  }
  return encodePayloadText(text);
}

/** A stored payload's value (decoded with the codec when it was stored encoded, see lib/codecs). */
export function fromPayload<T>(text: string | undefined | null): T {
  return (text === undefined || text === null || text === '' ? undefined : decodeStoredValue(JSON.parse(text))) as T;
}

/** How deeply objects and arrays may nest in a stored value: deeper ones overflowed the stack (RangeError). */
export const MAX_PAYLOAD_DEPTH = 200;

/** Refuses a value nested deeper than MAX_PAYLOAD_DEPTH, before a library walks it recursively. */
export function assertPayloadDepth(value: unknown, what: string): void {
  const problem = tooDeep(value, 0);
  if (problem) throw new PayloadError(`${what} ${problem}. Flatten the data.`);
}

function tooDeep(value: unknown, depth: number): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (depth >= MAX_PAYLOAD_DEPTH) return `nests objects or arrays more than ${MAX_PAYLOAD_DEPTH} levels deep`;
  for (const child of Array.isArray(value) ? value : Object.values(value)) {
    const problem = tooDeep(child, depth + 1);
    if (problem) return problem;
  }
  return undefined;
}

function findUnstorable(value: unknown, path: string, seen: Set<object>, depth: number): string | undefined {
  switch (typeof value) {
    case 'function':
      return `${path} is a function`;
    case 'symbol':
      return `${path} is a symbol`;
    case 'bigint':
      return `${path} is a BigInt (convert it to a string)`;
    case 'number':
      return Number.isFinite(value) ? undefined : `${path} is ${value}`;
    case 'object': {
      if (value === null) return undefined;
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return undefined;
      if (value instanceof Map || value instanceof Set) return `${path} is a ${value.constructor.name} (convert it to an array or object)`;
      if (seen.has(value)) return `${path} is a circular reference`;
      if (depth >= MAX_PAYLOAD_DEPTH) return `${path.length > 200 ? `${path.slice(0, 200)}…` : path} nests objects or arrays more than ${MAX_PAYLOAD_DEPTH} levels deep (flatten the data)`;
      seen.add(value);
      const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
      for (const [key, child] of entries) {
        // JSON drops undefined object properties; that loses nothing the code could read back differently.
        if (child === undefined && !Array.isArray(value)) continue;
        const problem = findUnstorable(child, Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`, seen, depth + 1);
        if (problem) return problem;
      }
      seen.delete(value);
      return undefined;
    }
    default:
      return undefined;
  }
}
