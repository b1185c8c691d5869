import { PayloadError, WorkflowConfigurationError } from '../errors/workflow.errors.js';

/**
 * Turns the JSON text of a payload (an input, a step result, an output, an event, an error) into the text
 * that is stored, and back: encryption at rest, compression. `decode(encode(text)) === text`. The library
 * in Redis never reads payloads, so it needs nothing of this.
 */
export interface PayloadCodec {
  encode(text: string): string;
  decode(text: string): string;
}

/**
 * An encoded payload is stored as a JSON string that starts with this (a NUL, so no text a person writes
 * starts so), so it stays valid JSON wherever the engine embeds a payload (a step record, a delivery), and
 * a reader tells it from a plain payload without knowing which codec the writer had.
 */
export const ENCODED_PAYLOAD_MARKER = '\u0000wfc1:';

/** What a reader without the codec shows in place of an encoded payload (the dashboard, the CLI). */
export const ENCODED_PAYLOAD_PLACEHOLDER = '[encoded payload: this process has no codec for it]';

/**
 * The codec of this process. The module installs its `codec` option at start; apps of one process share
 * it (payloads cross between them), so two apps with different codecs in one process are refused.
 */
let installed: { codec: PayloadCodec; users: number } | undefined;

export function installPayloadCodec(codec: PayloadCodec): () => void {
  if (!codec || typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new WorkflowConfigurationError('The codec option needs { encode(text): string, decode(text): string }, e.g. aesGcmCodec({ keys, current }).');
  }
  if (installed && installed.codec !== codec) {
    throw new WorkflowConfigurationError(
      'Another WorkflowModule of this process uses a different codec. Payloads pass between the apps of a process: give them the same codec instance.',
    );
  }
  installed = installed ? { codec, users: installed.users + 1 } : { codec, users: 1 };
  let removed = false;
  return () => {
    if (removed || !installed) return;
    removed = true;
    installed.users -= 1;
    if (installed.users === 0) installed = undefined;
  };
}

/** The stored form of a payload's JSON text: encoded (as a JSON string) when a codec is installed. */
export function encodePayloadText(text: string): string {
  return installed ? JSON.stringify(ENCODED_PAYLOAD_MARKER + installed.codec.encode(text)) : text;
}

/** Whether a parsed stored value is an encoded payload. */
export function isEncodedPayload(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(ENCODED_PAYLOAD_MARKER);
}

/**
 * A parsed stored value as the code wrote it: an encoded payload is decoded with the installed codec.
 * `lenient`: without the codec (or with a key it lacks) the placeholder is returned instead of an error,
 * for readers that only display (getRun, the dashboard, the CLI).
 */
export function decodeStoredValue(value: unknown, lenient = false): unknown {
  if (!isEncodedPayload(value)) return value;
  if (!installed) {
    if (lenient) return ENCODED_PAYLOAD_PLACEHOLDER;
    throw new PayloadError('A payload was stored with a codec (the codec option) and this process has none: start it with the same codec to read it.');
  }
  let text: string;
  try {
    text = installed.codec.decode(value.slice(ENCODED_PAYLOAD_MARKER.length));
  } catch (error) {
    if (lenient) return ENCODED_PAYLOAD_PLACEHOLDER;
    throw new PayloadError(`A stored payload cannot be decoded with this process's codec (${(error as Error).message}). A rotated key must stay in the codec's keys while runs written with it are kept.`);
  }
  return JSON.parse(text);
}
