import { rawCommand, REDIS_SERVER_NOT_FOUND, startRedis } from '../support/redis-server.js';

export interface SampleRedis {
  url: string;
  /** Stops the private redis-server (and removes its directory); does nothing for the user's Redis. */
  stop(): Promise<void>;
}

/**
 * The Redis the sample uses: the one at REDIS_URL (default redis://127.0.0.1:6379) when something answers
 * there, else a private redis-server on a free port in a temporary directory, which `stop()` shuts down
 * and removes. So `npm run sample` needs no Redis of the user's, only redis-server installed.
 */
export async function sampleRedis(log: (line: string) => void = console.log): Promise<SampleRedis> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  if (await answers(url)) return { url, stop: async () => undefined };
  let server;
  try {
    server = await startRedis();
  } catch (error) {
    const reason = (error as Error).message === REDIS_SERVER_NOT_FOUND ? 'redis-server is not installed' : (error as Error).message;
    throw new Error(`Nothing answers at ${url} and no private redis-server could be started (${reason}): run bash scripts/setup.sh, or start Redis >= 7 and set REDIS_URL.`);
  }
  log(`Nothing answers at ${url}: started a private redis-server at ${server.url} (in ${server.dir}); it stops when the sample does.`);
  return { url: server.url, stop: () => server.stop() };
}

/** Any reply to PING (PONG, or an error such as NOAUTH) means a Redis is there. */
async function answers(url: string): Promise<boolean> {
  const { protocol, hostname, port } = new URL(url);
  if (protocol === 'rediss:') return true; // TLS: not probed with a plain PING; ioredis reports what it finds

  try {
    await rawCommand(Number(port || 6379), 'PING', 1000, hostname.replace(/^\[|\]$/g, '') || '127.0.0.1');
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `shutdown` once on SIGINT or SIGTERM, then exits (130 / 143, as the shell reports a signal):
 * what Nest's enableShutdownHooks() does, plus stopping the private redis-server after the app closed.
 */
export function onSignal(shutdown: () => Promise<void>): void {
  let done = false;
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(signal, () => {
      if (done) return;
      done = true;
      shutdown().then(
        () => process.exit(code),
        (error: unknown) => {
          console.error(error);
          process.exit(code);
        },
      );
    });
  }
}
