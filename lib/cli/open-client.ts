import { Logger } from '@nestjs/common';
import { Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import { createStandaloneClient, type StandaloneClient } from '../client/standalone-client.js';
import { errorMessage } from '../errors/error-codec.js';
import { isAuthenticationError, maskUrl } from '../redis/connection-description.js';
import { CliError, EXIT } from './cli-error.js';
import { seedUrls, type ConnectionFlags } from './connection.js';

/**
 * Connects the client the app would use (an API-only WorkflowClient) to the server or cluster the URLs
 * name. A first probe connection, which does not retry, tells a single server from a cluster node and
 * fails at once, with exit code 3, when Redis is down or refuses the credentials.
 */
export async function openClient(flags: ConnectionFlags, env: NodeJS.ProcessEnv): Promise<StandaloneClient> {
  const urls = seedUrls(flags, env);
  const where = urls.map(maskUrl).join(', ');
  const cluster = flags.cluster === true || (await probeIsCluster(urls[0], flags.connectTimeout));
  // The module logs its connection and library loading for an app's operators; a CLI prints its answer only.
  Logger.overrideLogger(false);
  const opened = createStandaloneClient({
    connection: cluster ? { nodes: urls as ClusterNode[], options: { redisOptions: credentialsOf(urls[0]) } } : urls[0],
    prefix: flags.prefix,
    connectTimeoutMs: flags.connectTimeout,
    ...(flags.version !== undefined ? { version: flags.version } : {}),
  });
  try {
    await opened.redis.ready();
  } catch (error) {
    throw new CliError(`${errorMessage(error)} (${cluster ? 'as a cluster' : 'as a single server'} at ${where})`, EXIT.unreachable);
  }
  return opened;
}

async function probeIsCluster(url: string, timeoutMs: number): Promise<boolean> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let lastError: Error | undefined;
  probe.on('error', (error: Error) => (lastError = error));
  try {
    await probe.connect();
    const info = String(await probe.call('INFO', 'cluster'));
    return /cluster_enabled:1/.test(info);
  } catch (error) {
    const cause = lastError && isAuthenticationError(lastError) ? lastError : (error as Error);
    if (isAuthenticationError(cause)) {
      throw new CliError(
        `Redis at ${maskUrl(url)} refused the credentials (${cause.message}): put the right user and password in the URL (redis://user:password@host:port) of --redis or REDIS_URL.`,
        EXIT.unreachable,
      );
    }
    throw new CliError(
      `Cannot reach Redis at ${maskUrl(url)} (${errorMessage(lastError ?? error)}): check --redis (or REDIS_URL) and that Redis is running there.`,
      EXIT.unreachable,
    );
  } finally {
    probe.disconnect();
  }
}

/** Nodes a cluster discovers get the seed URL's credentials and TLS (ioredis uses redisOptions for them). */
function credentialsOf(url: string): RedisOptions {
  const parsed = new URL(url);
  return {
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
