import { brotliCompressSync, brotliDecompressSync, constants } from 'node:zlib';
import type { PayloadCodec } from './payload-codec.js';

export interface CompressionCodecOptions {
  /** Payloads shorter than this (bytes of JSON) are stored as they are. Default 1024. */
  minBytes?: number;
}

/** Brotli compression of large payloads (`b:<base64>`); smaller ones are kept as they are (`p:<text>`). */
export function compressionCodec(options: CompressionCodecOptions = {}): PayloadCodec {
  const minBytes = options.minBytes ?? 1024;
  return {
    encode(text) {
      if (Buffer.byteLength(text) < minBytes) return `p:${text}`;
      return `b:${brotliCompressSync(text, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } }).toString('base64')}`;
    },
    decode(stored) {
      if (stored.startsWith('p:')) return stored.slice(2);
      if (stored.startsWith('b:')) return brotliDecompressSync(Buffer.from(stored.slice(2), 'base64')).toString('utf8');
      throw new Error('not a compressionCodec payload');
    },
  };
}

/** Applies codecs in order when encoding (e.g. compression, then encryption) and in reverse when decoding. */
export function chainCodecs(...codecs: PayloadCodec[]): PayloadCodec {
  return {
    encode: (text) => codecs.reduce((value, codec) => codec.encode(value), text),
    decode: (text) => codecs.reduceRight((value, codec) => codec.decode(value), text),
  };
}
