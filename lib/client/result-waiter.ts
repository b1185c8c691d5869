import { ENCODED_PAYLOAD_PLACEHOLDER } from '../codecs/payload-codec.js';
import { parseJson } from './run-info.mapper.js';
import { decodeError, type StoredError } from '../errors/error-codec.js';
import { markRunFailure } from '../errors/run-failure.js';
import { CanceledError, PayloadError, RunNotFoundError, WaitTimeoutError, WorkflowConnectionError, WorkflowError } from '../errors/workflow.errors.js';
import type { RunInfo } from '../interfaces/run.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';

const FINAL = new Set(['succeeded', 'failed', 'canceled']);
/** A status read that failed because Redis was unreachable is tried again after this long. */
const RECHECK_AFTER_OUTAGE_MS = 250;

interface Waiter {
  check: () => void;
  /** The done message carried the final state: settle without reading the run. */
  settle: (done: DoneMessage) => void;
  abandon: (error: Error) => void;
}

interface DoneMessage {
  runId: string;
  status?: 'succeeded' | 'failed' | 'canceled';
  payload?: string;
}

/** '<id>' or '<id>|<final state>|<output or error JSON>' (see finish_run in lua/includes/01-common.lua). */
export function parseDoneMessage(message: string): DoneMessage {
  for (const status of ['succeeded', 'failed', 'canceled'] as const) {
    const at = message.indexOf(`|${status}|`);
    if (at > 0) return { runId: message.slice(0, at), status, payload: message.slice(at + status.length + 2) };
  }
  return { runId: message };
}

/**
 * Waits for runs to finish without polling: one sharded subscription per shard on the module's single
 * subscriber connection, however many result() calls wait. It subscribes first and reads the status
 * after, and reads again after a reconnect, so a completion published in between is never missed. A done
 * message that carries the final state and output (or error) settles the wait without a read.
 */
export class ResultWaiter {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly channelListeners = new Map<string, (runId: string) => void>();

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly readRun: (runId: string) => Promise<RunInfo | null>,
    /** The live run of the chain `runId` continued into (ctx.continueAsNew), or undefined when none is retained. */
    private readonly followChain: (runId: string, shard: ShardRef) => Promise<string | undefined> = async () => undefined,
  ) {
    redis.subscriber.onReconnect(() => {
      for (const set of this.waiters.values()) for (const waiter of set) waiter.check();
    });
    redis.onShutdown(() => {
      const error = new WorkflowError('The application is shutting down; the run goes on (wait for it with handle(id).result() elsewhere).');
      for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.abandon(error);
    });
  }

  async wait<O>(runId: string, shard: ShardRef, timeoutMs?: number): Promise<O> {
    // '<done channel>v' carries the outcome with the id (the done channel itself only the id, for older builds).
    const channel = this.redis.keys.doneChannel(this.redis.keys.shardRoot(shard));
    const startedAt = Date.now();
    return new Promise<O>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let recheckTimer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        check: () => {
          if (settled) return;
          this.readRun(runId).then(
            (run) => {
              if (!run) return finish(() => reject(new RunNotFoundError(runId)));
              if (run.status === 'succeeded' && run.continuedAs) return finish(() => this.followed<O>(runId, shard, timeoutMs, startedAt).then(resolve, reject));
              if (FINAL.has(run.status)) finish(() => settle(run, resolve, reject));
            },
            (error) => {
              // An outage does not end the wait (its timeoutMs does): read again until Redis answers,
              // since the completion may have been published while the read failed.
              if (error instanceof WorkflowConnectionError) {
                clearTimeout(recheckTimer);
                recheckTimer = setTimeout(() => waiter.check(), RECHECK_AFTER_OUTAGE_MS);
                return;
              }
              finish(() => reject(error));
            },
          );
        },
        settle: (done) => {
          const payload = parseJson(done.payload);
          finish(() => settle({ id: runId, status: done.status!, output: payload, error: done.status === 'succeeded' ? undefined : (payload as RunInfo['error']) }, resolve, reject));
        },
        abandon: (error) => finish(() => reject(error)),
      };
      const finish = (action: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(recheckTimer);
        this.remove(runId, waiter);
        action();
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => finish(() => reject(new WaitTimeoutError(`Run ${runId} did not finish within ${timeoutMs} ms; it goes on (use handle(id).result() to wait again).`, runId))),
          timeoutMs,
        );
      }
      let set = this.waiters.get(runId);
      if (!set) this.waiters.set(runId, (set = new Set()));
      set.add(waiter);
      // A subscription that fails (the subscriber is reconnecting) does not end the wait: the status is
      // read now, and re-read until Redis answers, as after any outage.
      this.listen(channel).then(
        () => waiter.check(),
        () => waiter.check(),
      );
    });
  }

  /** The run continued as a new run: the wait goes on with the chain's live run, within what is left of its timeout. */
  private async followed<O>(runId: string, shard: ShardRef, timeoutMs: number | undefined, startedAt: number): Promise<O> {
    const live = await this.followChain(runId, shard);
    if (!live) throw new RunNotFoundError(runId);
    return this.wait<O>(live, shard, timeoutMs === undefined ? undefined : Math.max(0, timeoutMs - (Date.now() - startedAt)));
  }

  private async listen(channel: string): Promise<void> {
    if (this.channelListeners.has(channel)) return this.redis.subscriber.subscribe(channel, this.channelListeners.get(channel)!);
    const listener = (message: string) => {
      const done = parseDoneMessage(message);
      for (const waiter of this.waiters.get(done.runId) ?? []) {
        if (done.status) waiter.settle(done);
        else waiter.check();
      }
    };
    this.channelListeners.set(channel, listener);
    await this.redis.subscriber.subscribe(channel, listener);
  }

  /** The shard's subscription stays: there is one per shard, reused by the next wait. */
  private remove(runId: string, waiter: Waiter): void {
    const set = this.waiters.get(runId);
    set?.delete(waiter);
    if (set && set.size === 0) this.waiters.delete(runId);
  }
}

function settle<O>(run: Pick<RunInfo, 'id' | 'status' | 'output' | 'error'>, resolve: (value: O) => void, reject: (error: unknown) => void): void {
  if (run.status === 'succeeded') {
    if (run.output === ENCODED_PAYLOAD_PLACEHOLDER) {
      return reject(new PayloadError(`Run ${run.id}'s output was stored with a codec (the codec option) and this process has none: give it the same codec to read it.`));
    }
    return resolve(run.output as O);
  }
  const error = run.error ? decodeError(run.error as StoredError) : undefined;
  if (run.status === 'canceled') {
    return reject(markRunFailure(error instanceof CanceledError ? error : new CanceledError(error?.message ?? 'The run was canceled.', { cause: error }), run.id));
  }
  reject(markRunFailure(error ?? new WorkflowError(`Run ${run.id} failed.`), run.id));
}
