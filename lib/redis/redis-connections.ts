import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { errorMessage } from '../errors/error-codec.js';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import { isAuthenticationError, maskUrl } from './connection-description.js';
import type { WorkflowConnection } from '../interfaces/module-options.interface.js';
import { DEFAULTS } from '../workflow.constants.js';

export type RedisClient = Redis | Cluster;

/**
 * The module's connections: one for commands (auto-pipelined, so concurrent runs share round trips), one
 * for sharded pub/sub and, in an app that runs a worker, one for the worker's transitions. A client passed
 * in by the user is shared and never closed here; the ones the module creates are owned and closed on
 * shutdown.
 *
 * The worker has a connection of its own because Redis answers one connection's commands in order: on a
 * shared one, a burst of emits from the app (a request that starts 500 runs) queued every claim, step
 * commit, completion and heartbeat of the worker behind it, so the worker's slots stood idle and then
 * came back all at once (bench/NOTES.md, seventh round).
 */
export class RedisConnections {
  private readonly owned: RedisClient[] = [];
  readonly command: RedisClient;
  readonly subscriber: RedisClient;
  /** The worker's transitions; the command connection itself in an app without a worker. */
  readonly worker: RedisClient;

  constructor(connection: WorkflowConnection | undefined, withWorker = true) {
    const given = connection ?? DEFAULTS.connection;
    if (given instanceof Redis || given instanceof Cluster) {
      this.command = given;
    } else {
      this.command = this.own(createClient(given));
    }
    // A duplicate keeps the options of the client it copies (the user's, for a shared one).
    this.worker = withWorker
      ? this.own(this.command instanceof Cluster ? this.command.duplicate() : (this.command as Redis).duplicate())
      : this.command;
    // On a cluster, sharded pub/sub needs a subscriber per primary, which ioredis keeps for us.
    // Subscribing changes no state, so while the subscriber reconnects (a cut connection, a failover) a
    // subscription waits for it instead of failing the result() wait that asked for it.
    // No auto-pipelining on it: ioredis 6.0 auto-pipelines SSUBSCRIBE, and a cluster then remembers only the
    // first channel of each batch, so the others were not subscribed again on a promoted replica.
    this.subscriber = this.own(
      this.command instanceof Cluster
        ? this.command.duplicate(undefined, {
            shardedSubscribers: true,
            lazyConnect: true,
            enableOfflineQueue: true,
            enableAutoPipelining: false,
            redisOptions: { ...this.command.options.redisOptions, enableAutoPipelining: false },
          })
        : // ChannelSubscriber subscribes again after a reconnect, and waits for the reply (ioredis's own
          // resubscription leaves its promise unhandled when the connection drops again).
          (this.command as Redis).duplicate({ lazyConnect: true, enableOfflineQueue: true, enableAutoPipelining: false, autoResubscribe: false }),
    );
  }

  get isCluster(): boolean {
    return this.command instanceof Cluster;
  }

  /**
   * Waits until every connection is ready; rejects with a clear error when Redis cannot be reached within
   * `timeoutMs`, and at once when it refuses the credentials. `where`: the server, password masked.
   * `onFirstError`: told once, at the first failed attempt, so that a start-up does not wait in silence.
   */
  async connect(timeoutMs: number, where: string, onFirstError?: (error: Error) => void): Promise<void> {
    let told = false;
    const tell = (error: Error) => {
      if (told) return;
      told = true;
      onFirstError?.(error);
    };
    await Promise.all([...new Set([this.command, this.subscriber, this.worker])].map((client) => waitReady(client, timeoutMs, where, tell)));
  }

  async close(): Promise<void> {
    await Promise.all(
      this.owned.map(async (client) => {
        try {
          if (client.status === 'ready') await client.quit();
        } catch {
          // closed below
        }
        // Also ends reconnection timers: a cluster keeps retrying a node that died (a failed-over primary).
        client.disconnect();
      }),
    );
  }

  private own(client: RedisClient): RedisClient {
    this.owned.push(client);
    client.on('error', () => undefined); // reported through the calls that fail, and once per outage by the worker
    return client;
  }
}

const OWNED_DEFAULTS: RedisOptions = {
  enableAutoPipelining: true,
  // Producers fail fast while Redis is unreachable instead of queueing calls in memory.
  enableOfflineQueue: false,
  lazyConnect: true,
  maxRetriesPerRequest: 2,
};

function createClient(connection: Exclude<WorkflowConnection, Redis | Cluster>): RedisClient {
  if (typeof connection === 'string') {
    if (!/^rediss?:\/\//.test(connection)) {
      throw new WorkflowConfigurationError(
        `connection ${JSON.stringify(maskUrl(connection))} is not a redis:// or rediss:// URL; pass a URL, RedisOptions, a Redis or Cluster instance, or { nodes }.`,
      );
    }
    try {
      return new Redis(connection, OWNED_DEFAULTS);
    } catch (error) {
      // ioredis's URL parser quotes the URL it could not read
      throw new WorkflowConfigurationError(`connection ${JSON.stringify(maskUrl(connection))} is not a valid Redis URL: ${maskUrl(errorMessage(error)).replaceAll(connection, maskUrl(connection))}`);
    }
  }
  if ('nodes' in connection && Array.isArray(connection.nodes)) {
    return new Cluster(connection.nodes, {
      ...connection.options,
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      lazyConnect: true,
      redisOptions: { maxRetriesPerRequest: 2, ...connection.options?.redisOptions },
    });
  }
  return new Redis({ ...OWNED_DEFAULTS, ...(connection as RedisOptions) });
}

async function waitReady(client: RedisClient, timeoutMs: number, where: string, onError: (error: Error) => void): Promise<void> {
  if (client.status === 'ready') return;
  if (client.status === 'wait') {
    client.connect().catch(() => undefined);
  }
  await new Promise<void>((resolve, reject) => {
    let lastError: Error | undefined;
    const onFailure = (error: Error) => {
      lastError = error;
      if (isAuthenticationError(error)) {
        done(
          new WorkflowConfigurationError(
            `Redis at ${where} refused the credentials (${error.message}): check the password (and username, for an ACL user) in the module's connection option, and that the user exists and is enabled on that server.`,
          ),
        );
        return;
      }
      onError(error);
    };
    const done = (error?: Error) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onFailure);
      if (error) reject(error);
      else resolve();
    };
    const onReady = () => done();
    const timer = setTimeout(
      () =>
        done(
          new WorkflowConfigurationError(
            `Cannot reach Redis at ${where} within ${timeoutMs} ms${lastError ? ` (${lastError.message})` : ''}: check the module's connection option and that Redis is running (connectTimeoutMs sets how long to wait).`,
          ),
        ),
      timeoutMs,
    );
    client.on('ready', onReady);
    client.on('error', onFailure);
  });
}
