import { maskUrl } from '../redis/connection-description.js';
import { CliError, EXIT } from './cli-error.js';

export interface ConnectionFlags {
  redis?: string;
  cluster?: boolean;
  prefix: string;
  connectTimeout: number;
  /** The version the client acts as (runs retry --to-version). */
  version?: string;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';

/** The seed URLs: --redis (comma-separated for several cluster nodes), else REDIS_URL, else the default. */
export function seedUrls(flags: ConnectionFlags, env: NodeJS.ProcessEnv): string[] {
  const given = flags.redis ?? env.REDIS_URL ?? DEFAULT_URL;
  const urls = given
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  const bad = urls.find((url) => !/^rediss?:\/\/[^/]/.test(url));
  if (urls.length === 0 || bad !== undefined) {
    const source = flags.redis !== undefined ? '--redis' : 'REDIS_URL';
    throw new CliError(
      `${source} ${JSON.stringify(maskUrl(bad ?? given))} is not a redis:// or rediss:// URL: pass e.g. --redis redis://127.0.0.1:6379 (several comma-separated URLs for cluster seed nodes).`,
      EXIT.usage,
    );
  }
  return urls;
}
