import { RunNotFoundError, WorkflowConnectionError, WorkflowError } from '../errors/workflow.errors.js';
import { checkDuration, MAX_TIMER_MS } from '../execution/call-limits.js';
import { checkPublishedKey } from '../execution/published-values.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';

const FINAL = new Set(['succeeded', 'failed', 'canceled']);
/** A read that failed because Redis was unreachable is tried again after this long (the wait goes on). */
const RECHECK_AFTER_OUTAGE_MS = 250;

/**
 * client.getEvent: reads a value a run published with ctx.setEvent (lua/published.lua), or waits for it
 * without polling: it subscribes to the shard's done channel first, where every publication and every end of
 * a run is announced, then reads, and reads again on each announcement for the run and after a reconnect.
 * A run that ends without the key set ends the wait at once: nothing can set it any more.
 */
export class PublishedReader {
  /** The waits in progress: their check, and how they give up at shutdown. */
  private readonly waits = new Map<() => void, (error: Error) => void>();

  constructor(private readonly redis: WorkflowRedis) {
    redis.subscriber.onReconnect(() => {
      for (const check of this.waits.keys()) check();
    });
    redis.onShutdown(() => {
      const error = new WorkflowError('The application is shutting down; getEvent() gave up waiting (the run goes on).');
      for (const abandon of [...this.waits.values()]) abandon(error);
    });
  }

  async getEvent(runId: string, key: string, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    checkPublishedKey(key, 'getEvent()');
    const timeoutMs = opts?.timeoutMs;
    if (timeoutMs !== undefined) checkDuration(timeoutMs, 'getEvent(): timeoutMs', 0, MAX_TIMER_MS);
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) throw new RunNotFoundError(runId);
    await this.redis.ready();
    const read = async () => {
      const { value, status } = await this.redis.store.readPublished(shard, runId, key);
      if (status === null) throw new RunNotFoundError(runId);
      return { value: value === null ? undefined : (JSON.parse(value) as unknown), over: value !== null || FINAL.has(status) };
    };
    if (!timeoutMs) return (await read()).value;
    const channel = this.redis.keys.doneChannel(this.redis.keys.shardRoot(shard));
    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      let recheck: NodeJS.Timeout | undefined;
      const check = () => {
        if (settled) return;
        read().then(
          (r) => {
            if (r.over) finish(() => resolve(r.value));
          },
          (error: unknown) => {
            if (error instanceof WorkflowConnectionError) {
              clearTimeout(recheck);
              recheck = setTimeout(check, RECHECK_AFTER_OUTAGE_MS);
              return;
            }
            finish(() => reject(error));
          },
        );
      };
      // '<id>' and '<id>|...': the run ended, or published a value (lua/published.lua)
      const listener = (message: string) => {
        if (message === runId || message.startsWith(`${runId}|`)) check();
      };
      const timer = setTimeout(() => finish(() => resolve(undefined)), timeoutMs);
      const finish = (action: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(recheck);
        this.waits.delete(check);
        this.redis.subscriber.unsubscribe(channel, listener).catch(() => undefined);
        action();
      };
      this.waits.set(check, (error) => finish(() => reject(error)));
      this.redis.subscriber.subscribe(channel, listener).then(check, check);
    });
  }
}
