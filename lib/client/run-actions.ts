import { Logger } from '@nestjs/common';
import { ulid } from 'ulid';
import type { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { encodeErrorJson, errorMessage } from '../errors/error-codec.js';
import { CanceledError, InvalidArgumentError, RunNotFoundError, WorkflowError } from '../errors/workflow.errors.js';
import type { RetryRunOptions } from './run-recovery.js';
import { checkEvent, checkSendId } from '../execution/call-limits.js';
import type { SendEventOptions } from '../interfaces/run.interfaces.js';
import { toPayload } from '../execution/payload.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import type { Handoff } from '../redis/workflow-store.js';
import { liveRunOf } from './run-chain.js';

/** What the client does to runs that exist: cancel them (and their children), retry them, send them events. */
export class RunActions {
  private readonly logger = new Logger('WorkflowClient');

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
  ) {}

  /** See WorkflowClient.cancelRun. */
  async cancelRun(runId: string, opts: { reason?: string } = {}): Promise<boolean> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return false;
    await this.redis.ready();
    const reason = opts.reason === undefined ? 'The run was canceled.' : `The run was canceled: ${String(opts.reason).slice(0, 1000)}`;
    const result = await this.redis.store.cancel(
      shard,
      runId,
      encodeErrorJson(new CanceledError(reason)),
      this.redis.settings.retentionMs.canceled,
      await this.hasOnFailure(runId, shard),
    );
    if (!result.canceled) return this.cancelChainOf(runId, shard, opts);
    if (result.handoff) await this.redis.store.deliver(result.handoff);
    await this.cancelChildren(runId, result);
    return true;
  }

  /** A run that continued as a new run (ctx.continueAsNew) is canceled as its chain's live run. */
  private async cancelChainOf(runId: string, shard: ShardRef, opts: { reason?: string }): Promise<boolean> {
    const hash = await this.redis.store.readRun(shard, runId);
    if (!hash?.cn) return false;
    const live = await liveRunOf(this.redis.store, shard, runId, hash);
    return !!live && live.id !== runId && this.cancelRun(live.id, opts);
  }

  /** See WorkflowClient.cancelChildren. */
  async cancelChildren(runId: string, page: { children: string[]; nextPage?: string }): Promise<void> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) return;
    for (;;) {
      await Promise.all(page.children.map((child) => this.cancelRun(child, { reason: `its parent ${runId} was canceled` })));
      // builds before 48 answer every child at once and keep no cascade
      if (page.nextPage === undefined) return;
      page = await this.redis.store.cancelMore(shard, runId, page.nextPage === '0' ? 'done' : page.nextPage);
    }
  }

  /** Sends a failed or canceled run back to the queue (see WorkflowClient.retryRun); throws when it is neither. */
  async retryRun(runId: string, opts: RetryRunOptions = {}): Promise<void> {
    const shard = this.redis.keys.parseRunId(runId);
    if (!shard) throw new RunNotFoundError(runId);
    const version = this.targetVersion(opts);
    await this.redis.ready();
    if (version) {
      // A run that has not finished only changes version (a pinned one is then claimed by this version's workers).
      const moved = await this.redis.store.moveVersion(shard, runId, version);
      if (moved.ok) return;
      if (moved.status === 'succeeded') {
        throw new WorkflowError(`Run ${runId} has succeeded; there is nothing to move or retry (forkRun starts a new run from it).`);
      }
    }
    const result = await this.redis.store.retry(shard, runId, version);
    if (!result.ok) {
      if (result.status === 'unknown') throw new RunNotFoundError(runId);
      throw new WorkflowError(`Run ${runId} is ${result.status}; only failed or canceled runs can be retried.`);
    }
  }

  /** The version retryRun's onVersion names, checked (undefined: the run keeps its own). */
  private targetVersion(opts: RetryRunOptions): string | undefined {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('retryRun options must be an object, e.g. { onVersion: \'current\' }.');
    if (opts.onVersion === undefined) return undefined;
    if (opts.onVersion !== 'current') {
      throw new InvalidArgumentError(`retryRun: onVersion must be 'current' (this app's version), got ${JSON.stringify(opts.onVersion)}.`);
    }
    const version = this.redis.settings.version;
    if (!version) {
      throw new InvalidArgumentError(
        "retryRun(id, { onVersion: 'current' }) moves the run to this app's version, but this app has none: set WorkflowModule.forRoot({ version }) (e.g. process.env.APP_VERSION).",
      );
    }
    return version;
  }

  /** See WorkflowClient.sendEvent. */
  async sendEvent(event: string, payload?: unknown, opts: SendEventOptions = {}): Promise<number> {
    const { key } = checkEvent(event, opts?.key, 'sendEvent');
    const sendId = checkSendId(opts?.id);
    const text = toPayload(payload ?? null, `The payload of event '${event}'`, this.redis.settings.maxPayloadBytes) ?? 'null';
    await this.redis.ready();
    const eventId = ulid();
    let page: { more: boolean; handoffs: Handoff[] } = await this.redis.store.sendEvent(eventId, event, key, text, this.redis.settings.eventRetentionMs, sendId);
    let delivered = 0;
    // A page of waiters at a time (lua/events.lua): each page is delivered before the next is taken, so that
    // Redis holds one page's hand-offs at a time and no call's work grows with the number of waiters.
    try {
      for (;;) {
        await Promise.all(page.handoffs.map((handoff) => this.redis.store.deliver(handoff)));
        delivered += page.handoffs.length;
        if (!page.more) return delivered;
        page = await this.redis.store.sendEventMore(eventId, text);
      }
    } catch (error) {
      // The event is stored, and every waiter it was not delivered to yet is in the outbox or the event's
      // fan-out, which housekeeping works off: the send has happened, only its deliveries are late.
      this.logger.warn(
        `Event '${event}' is stored, but delivering it to its waiters failed after ${delivered} (${errorMessage(error)}); housekeeping delivers it to the others once Redis accepts the writes again.`,
      );
      return delivered;
    }
  }

  /** Whether the run's workflow has an @OnFailure method (known here, or as registered by its workers). */
  private async hasOnFailure(runId: string, shard: ShardRef): Promise<boolean> {
    const hash = await this.redis.store.readRun(shard, runId);
    const workflow = hash?.wf;
    if (!workflow) return false;
    const local = this.registry.get(workflow);
    if (local) return !!local.onFailure;
    const entry = await this.redis.store.readRegistryEntry(workflow);
    try {
      return !!entry && (JSON.parse(entry) as { onFailure?: boolean }).onFailure === true;
    } catch {
      return false;
    }
  }
}
