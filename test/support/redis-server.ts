/**
 * Test harness: private, throw-away redis-server processes (support/redis-server.ts, shared with the
 * sample), and what only the tests need: REDIS_URL as an alternative, unique key prefixes.
 */
import { randomBytes } from 'node:crypto';
import { startRedis, type RedisServerHandle, type StartRedisOptions } from '../../support/redis-server.js';

export * from '../../support/redis-server.js';

export interface TestRedis {
  url: string;
  /** Present only for a private server; null when REDIS_URL is used. */
  server: RedisServerHandle | null;
  /** True if kill()/restart() are possible (private server). */
  canKill: boolean;
  /** Why kill-tests should skip (when canKill is false). */
  skipKillReason?: string;
  stop(): Promise<void>;
}

/**
 * REDIS_URL from the environment if set (shared server: no kill/restart, use
 * uniquePrefix for all keys), else a private server.
 */
export async function redisUrlForTests(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const envUrl = process.env.REDIS_URL;
  if (envUrl) {
    return {
      url: envUrl,
      server: null,
      canKill: false,
      skipKillReason: 'skipped: REDIS_URL is set, the test cannot kill/restart an external Redis',
      stop: async () => {},
    };
  }
  const server = await startRedis(opts);
  return { url: server.url, server, canKill: true, stop: () => server.stop() };
}

/** Key / namespace prefix unique to one test, e.g. `t_retry_k3f9a1c2`. */
export function uniquePrefix(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40);
  return `t_${safe}_${randomBytes(4).toString('hex')}`;
}
