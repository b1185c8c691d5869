import type { Redis } from 'ioredis';
import { WorkflowConnectionError } from '../errors/workflow.errors.js';
import type { FunctionLoader } from './function-loader.js';
import { isFunctionNotFound } from './function-loader.js';
import type { KeySpace, ShardRef } from './keys.js';
import type { RedisClient } from './redis-connections.js';

export interface EmitArgs {
  runId: string;
  workflow: string;
  queue: string;
  input: string;
  priority: number;
  runAtMs?: number;
  delayMs?: number;
  idempotencyKey?: string;
  parentId?: string;
}

export interface ClaimWorkflowSpec {
  name: string;
  maxConcurrency: number;
  maxAttempts: number;
  timeoutMs: number;
}

export interface ClaimedRun {
  id: string;
  workflow: string;
  input: string;
  attempt: number;
  maxAttempts: number;
  token: string;
  createdAt: number;
  parentId?: string;
  finalizing?: 'failed' | 'canceled';
  error?: string;
  /** step field -> '<committed ms>|<record JSON>' */
  steps: Map<string, string>;
  /** The Redis server's time at the claim, in ms. */
  serverNow: number;
}

export type TransitionResult = { ok: true } | { ok: false; reason: string };

export type FailNext = 'retry' | 'finalize' | 'failed' | 'canceled';

/**
 * Typed wrappers around every FCALL of the library: the one place in lib/ that spells a function name.
 * Each state change is exactly one call.
 */
export class WorkflowStore {
  constructor(
    readonly client: RedisClient,
    readonly keys: KeySpace,
    private readonly loader: FunctionLoader,
  ) {}

  root(shard: ShardRef): string {
    return this.keys.shardRoot(shard);
  }

  async emit(shard: ShardRef, a: EmitArgs): Promise<{ created: boolean; runId: string; status: string }> {
    this.assertConnected();
    const [created, runId, status] = (await this.fcall('wf1_emit', [this.root(shard)], [
      a.runId,
      a.workflow,
      a.queue,
      a.input,
      a.priority,
      a.runAtMs ?? '',
      a.delayMs ?? '',
      a.idempotencyKey ?? '',
      a.parentId ?? '',
    ])) as [number, string, string];
    return { created: created === 1, runId, status };
  }

  async claim(
    shard: ShardRef,
    workerId: string,
    max: number,
    leaseMs: number,
    claimId: string,
    workflows: ClaimWorkflowSpec[],
  ): Promise<ClaimedRun[]> {
    const args: (string | number)[] = [workerId, max, leaseMs, claimId];
    for (const w of workflows) args.push(w.name, w.maxConcurrency, w.maxAttempts, w.timeoutMs);
    const reply = (await this.fcall('wf1_claim', [this.root(shard)], args)) as unknown[];
    const serverNow = Number(reply[0]);
    return reply.slice(1).map((entry) => {
      const [id, workflow, input, attempt, maxAttempts, token, createdAt, parentId, finalizing, error, flat] =
        entry as [string, string, string, number, number, string, number, string, string, string, string[]];
      const steps = new Map<string, string>();
      for (let i = 0; i < flat.length; i += 2) steps.set(flat[i], flat[i + 1]);
      return {
        id,
        workflow,
        input,
        attempt: Number(attempt),
        maxAttempts: Number(maxAttempts),
        token,
        createdAt: Number(createdAt),
        parentId: parentId || undefined,
        finalizing: (finalizing || undefined) as ClaimedRun['finalizing'],
        error: error || undefined,
        steps,
        serverNow,
      };
    });
  }

  async commitStep(
    shard: ShardRef,
    runId: string,
    token: string,
    field: string,
    record: string,
    hasCompensation: boolean,
  ): Promise<TransitionResult> {
    return toResult(
      await this.fcall('wf1_commit_step', [this.root(shard)], [runId, token, field, record, hasCompensation ? '1' : '0']),
    );
  }

  async complete(shard: ShardRef, runId: string, token: string, output: string, retentionMs: number): Promise<TransitionResult> {
    return toResult(await this.fcall('wf1_complete', [this.root(shard)], [runId, token, output, retentionMs]));
  }

  async fail(
    shard: ShardRef,
    runId: string,
    token: string,
    error: string,
    next: FailNext,
    opts: { delayMs?: number; retentionMs?: number; compensating?: boolean } = {},
  ): Promise<TransitionResult> {
    return toResult(
      await this.fcall('wf1_fail', [this.root(shard)], [
        runId,
        token,
        error,
        next,
        opts.delayMs ?? 0,
        opts.retentionMs ?? 0,
        opts.compensating ? '1' : '0',
      ]),
    );
  }

  async park(
    shard: ShardRef,
    runId: string,
    token: string,
    waitingFor: string,
    wakeAtMs: number | undefined,
    newSleeps: { field: string; spec: string }[],
  ): Promise<TransitionResult & { wakeAt?: number }> {
    const args: (string | number)[] = [runId, token, waitingFor, wakeAtMs ?? ''];
    for (const s of newSleeps) args.push(s.field, s.spec);
    const reply = (await this.fcall('wf1_park', [this.root(shard)], args)) as [number, number | string];
    if (reply[0] !== 1) return { ok: false, reason: String(reply[1]) };
    return { ok: true, wakeAt: Number(reply[1]) >= 0 ? Number(reply[1]) : undefined };
  }

  async heartbeat(shard: ShardRef, leaseMs: number, runs: { id: string; token: string }[]): Promise<string[]> {
    const args: (string | number)[] = [leaseMs];
    for (const r of runs) args.push(r.id, r.token);
    return (await this.fcall('wf1_heartbeat', [this.root(shard)], args)) as string[];
  }

  async release(shard: ShardRef, reason: string, runs: { id: string; token: string }[]): Promise<number> {
    const args: string[] = [reason];
    for (const r of runs) args.push(r.id, r.token);
    return Number(await this.fcall('wf1_release', [this.root(shard)], args));
  }

  async tick(shard: ShardRef, batch: number): Promise<{ serverNow: number; nextDueMs?: number; more: boolean }> {
    const [now, nextDue, more] = (await this.fcall('wf1_tick', [this.root(shard)], [batch])) as number[];
    return { serverNow: Number(now), nextDueMs: Number(nextDue) >= 0 ? Number(nextDue) : undefined, more: more === 1 };
  }

  async register(entries: { name: string; meta: string }[]): Promise<void> {
    if (entries.length === 0) return;
    await this.fcall('wf1_register', [this.keys.registry()], entries.flatMap((e) => [e.name, e.meta]));
  }

  // Reads are plain commands on keys of one slot; they change nothing.

  async readRun(shard: ShardRef, runId: string): Promise<Record<string, string> | undefined> {
    const hash = await this.guard(() => this.client.hgetall(this.keys.run(this.root(shard), runId)));
    return Object.keys(hash).length === 0 ? undefined : hash;
  }

  async readSteps(shard: ShardRef, runId: string): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.steps(this.root(shard), runId)));
  }

  async readHistory(shard: ShardRef, runId: string): Promise<string[]> {
    return this.guard(() => this.client.lrange(this.keys.history(this.root(shard), runId), 0, -1));
  }

  async readIdempotencyKey(shard: ShardRef, workflow: string, key: string): Promise<string | null> {
    return this.guard(() => this.client.hget(this.keys.idempotency(this.root(shard), workflow), key));
  }

  async readRegistry(): Promise<Record<string, string>> {
    return this.guard(() => this.client.hgetall(this.keys.registry()));
  }

  async readRegistryEntry(name: string): Promise<string | null> {
    return this.guard(() => this.client.hget(this.keys.registry(), name));
  }

  /**
   * Producers fail fast while the connection is down. Without this check a call would wait behind
   * commands that were in flight when the connection dropped, which ioredis holds for resending until
   * several reconnect attempts have failed (seconds when the host does not answer).
   */
  private assertConnected(): void {
    if (this.client.status === 'ready') return;
    throw new WorkflowConnectionError(
      `Redis is unreachable (connection ${this.client.status}). Retry when it is back: every call is safe to repeat.`,
    );
  }

  /** One FCALL; reloads the library once if the server lost it (flushed or restarted), then retries. */
  private async fcall(fn: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.guard(async () => {
      try {
        return await (this.client as Redis).fcall(fn, keys.length, ...keys, ...args);
      } catch (error) {
        if (!isFunctionNotFound(error)) throw error;
        await this.loader.reload();
        return (this.client as Redis).fcall(fn, keys.length, ...keys, ...args);
      }
    });
  }

  private async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof Error && isConnectionError(error)) {
        throw new WorkflowConnectionError(
          `Redis is unreachable (${error.message}). Retry when it is back: every call is safe to repeat.`,
          { cause: error },
        );
      }
      throw error;
    }
  }
}

function toResult(reply: unknown): TransitionResult {
  const [ok, reason] = reply as [number, string?];
  return ok === 1 ? { ok: true } : { ok: false, reason: reason ?? 'UNKNOWN' };
}

function isConnectionError(error: Error): boolean {
  return /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|MaxRetriesPerRequest|enableOfflineQueue/i.test(
    error.message,
  );
}
