import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { PayloadCodec } from './payload-codec.js';

export interface AesGcmCodecOptions {
  /** Keys by id: 32 bytes each (AES-256). Keep an old key here as long as runs written with it are kept. */
  keys: Record<string, Buffer>;
  /** The id of the key new payloads are encrypted with. */
  current: string;
}

/**
 * Encryption at rest with AES-256-GCM. Each payload is stored as `<key id>.<iv>.<tag>.<ciphertext>`
 * (base64url), so that rotating `current` to a new key leaves older payloads readable with theirs, and
 * nothing is rewritten.
 */
export function aesGcmCodec(options: AesGcmCodecOptions): PayloadCodec {
  const keys = options?.keys;
  if (!keys || typeof keys !== 'object') throw new WorkflowConfigurationError('aesGcmCodec needs { keys: { <id>: <32-byte Buffer> }, current: <id> }.');
  for (const [id, key] of Object.entries(keys)) {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id)) throw new WorkflowConfigurationError(`aesGcmCodec: key id ${JSON.stringify(id)} must be 1-32 letters, digits, '_' or '-'.`);
    if (!Buffer.isBuffer(key) || key.length !== 32) {
      throw new WorkflowConfigurationError(`aesGcmCodec: key '${id}' must be a 32-byte Buffer (AES-256), e.g. Buffer.from(process.env.PAYLOAD_KEY, 'base64').`);
    }
  }
  const current = keys[options.current];
  if (!current) throw new WorkflowConfigurationError(`aesGcmCodec: current key '${options.current}' is not in keys.`);
  return {
    encode(text) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', current, iv);
      const ciphertext = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
      return [options.current, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.');
    },
    decode(stored) {
      const [id, iv, tag, ciphertext] = stored.split('.');
      const key = keys[id];
      if (!key) throw new Error(`key '${id}' is not in the codec's keys`);
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}
