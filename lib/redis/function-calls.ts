import { Cluster } from 'ioredis';
import { WorkflowConnectionError } from '../errors/workflow.errors.js';
import { executionScope, type ExecutionScope } from '../execution/execution-scope.js';
import type { FunctionLoader } from './function-loader.js';
import { isFunctionNotFound } from './function-loader.js';
import type { KeySpace, ShardRef } from './keys.js';
import type { RedisClient } from './redis-connections.js';
import { TurnBatcher } from './turn-batcher.js';

/** The store FCALLs are written under: none, so that ioredis' objects do not carry a run's scope. */
const NO_SCOPE = undefined as unknown as ExecutionScope;

/**
 * How the store calls Redis: one FCALL, reloading a library the server lost; a worker's transition
 * retried through a connection outage; a read retried once after a cluster redirection. The layers of
 * WorkflowStore (workflow-reads.ts, run-transitions.ts, workflow-store.ts) call through these.
 *
 * transition and fcall run for every call of every run: plain promise chains, no async on their success
 * path (one promise beyond ioredis' own).
 */
export abstract class FunctionCalls {
  private closed = false;
  private readonly writer: TurnBatcher;

  constructor(
    readonly client: RedisClient,
    readonly keys: KeySpace,
    private readonly loader: FunctionLoader,
  ) {
    this.writer = new TurnBatcher(client);
  }

  root(shard: ShardRef): string {
    return this.keys.shardRoot(shard);
  }

  /**
   * Producers fail fast while the connection is down. Without this check a call would wait behind
   * commands that were in flight when the connection dropped, which ioredis holds for resending until
   * several reconnect attempts have failed (seconds when the host does not answer).
   */
  protected assertConnected(): void {
    if (this.client.status === 'ready') return;
    throw new WorkflowConnectionError(
      `Redis is unreachable (connection ${this.client.status}). Retry when it is back: every call is safe to repeat.`,
    );
  }

  /**
   * A worker's transition of a run it holds: every one is safe to repeat, so a connection that drops
   * (a failover, a cut connection, a restart) is retried with backoff while the lease may still be
   * valid, instead of giving the run up; Redis itself refuses the call once the lease has expired.
   */
  protected transition<T>(fn: string, keys: string[], args: (string | number)[], parse: (reply: unknown) => T): Promise<T> {
    // One promise beyond ioredis' own on the success path: a run makes several of these calls.
    return this.send(fn, keys, args).then(parse, (error: unknown) =>
      this.afterFailure(error, fn, keys, args, Date.now() + TRANSITION_RETRY_MS).then(parse),
    );
  }

  /** One FCALL; reloads the library once if the server lost it (flushed or restarted), then retries. */
  protected fcall(fn: string, keys: string[], args: (string | number)[]): Promise<unknown>;
  protected fcall<T>(fn: string, keys: string[], args: (string | number)[], parse: (reply: unknown) => T): Promise<T>;
  protected fcall(fn: string, keys: string[], args: (string | number)[], parse: (reply: unknown) => unknown = asIs): Promise<unknown> {
    return this.send(fn, keys, args).then(parse, (error: unknown) => this.afterFailure(error, fn, keys, args).then(parse));
  }

  /** A call failed: reload a lost library and call again; retry a transition through an outage until `retryUntil`. */
  private async afterFailure(error: unknown, fn: string, keys: string[], args: (string | number)[], retryUntil?: number, redirected = 0): Promise<unknown> {
    if (isFunctionNotFound(error)) {
      await this.loader.reload();
      return this.guard(() => this.send(fn, keys, args));
    }
    // A cluster in the middle of a failover may redirect more than once; a transition then goes on
    // retrying as for a lost connection.
    if (redirected < MAX_REDIRECTED_RESENDS && (await this.refreshedAfterMoved(error))) {
      return this.send(fn, keys, args).catch((next: unknown) => this.afterFailure(next, fn, keys, args, retryUntil, redirected + 1));
    }
    let failure = asConnectionError(error);
    for (let wait = 25; ; wait = Math.min(wait * 2, 1_000)) {
      if (retryUntil === undefined || !(failure instanceof WorkflowConnectionError) || this.closed || Date.now() + wait > retryUntil) throw failure;
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
      try {
        return await this.send(fn, keys, args);
      } catch (next) {
        if (isFunctionNotFound(next) || isRedirection(next)) return this.afterFailure(next, fn, keys, args, retryUntil, redirected);
        failure = asConnectionError(next);
      }
    }
  }

  /** The module is shutting down: calls that fail are not retried any more. */
  close(): void {
    this.closed = true;
  }

  private send(fn: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    // Outside the run's AsyncLocalStorage context: every promise made in it carries the run's scope, and
    // with the scope on ioredis' command objects the runs of a burst survived minor GCs and were promoted
    // whole (10,000 parked runs grew the worker by 40 MB; bench/NOTES.md, "Fourth round"). The caller's
    // own continuation keeps its context: await restores it. run(undefined), not exit(): on Node 20 exit()
    // turns the promise hooks off and on again for every call (setPromiseHooks), 3 % of the worker's CPU.
    return executionScope.run(NO_SCOPE, () => this.writer.write(fn, keys, args));
  }

  protected async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (!(await this.refreshedAfterMoved(error))) throw asConnectionError(error);
      try {
        return await call();
      } catch (again) {
        throw asConnectionError(again);
      }
    }
  }

  /**
   * A MOVED (or ASK) that reached us: ioredis redirects a command on its own, but an auto-pipelined batch
   * whose commands got different redirections (several slots, after a failover or a resharding) is
   * answered with the errors, and nothing refreshes the client's slot map. Without this a client that
   * only reads (an API process, the module's command connection) kept getting MOVED after a failover.
   * Refreshes the map and says whether the call can be sent again (Redis did not execute it).
   */
  private refreshedAfterMoved(error: unknown): Promise<boolean> {
    const client = this.client;
    if (!(client instanceof Cluster) || !isRedirection(error)) return Promise.resolve(false);
    return new Promise((resolve) => client.refreshSlotsCache(() => resolve(true)));
  }
}

/** How many times a call that got MOVED or ASK is sent again after refreshing the cluster's slot map. */
const MAX_REDIRECTED_RESENDS = 5;

function isRedirection(error: unknown): boolean {
  return error instanceof Error && /^(MOVED|ASK) /.test(error.message);
}

/** How long a worker keeps retrying a transition through a connection outage. */
const TRANSITION_RETRY_MS = 15_000;

/** A parse that keeps the reply as it is. */
export function asIs(reply: unknown): unknown {
  return reply;
}

/** A lost or refused connection, as the WorkflowConnectionError callers handle; other errors as they are. */
function asConnectionError(error: unknown): unknown {
  if (error instanceof Error && !(error instanceof WorkflowConnectionError) && isConnectionError(error)) {
    return new WorkflowConnectionError(`Redis is unreachable (${error.message}). Retry when it is back: every call is safe to repeat.`, {
      cause: error,
    });
  }
  return error;
}

function isConnectionError(error: Error): boolean {
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|MaxRetriesPerRequest|enableOfflineQueue/i.test(
    error.message,
  );
}
