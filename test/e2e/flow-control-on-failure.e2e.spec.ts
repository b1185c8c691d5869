import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { OnFailure, Workflow, type OnFailureContext, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';
import { flowKeysLeft } from '../support/flow-keys.js';

// The @OnFailure of a run canceled at once runs under its flow key's limit (lua/cancel.lua, flow_release's
// keep_slot): the run keeps its slot, or its place in its key's queue, until the hook has run, the run is
// retried, or its retention ends.
const suite = useSuiteRedis();
let log = '';

interface HookInput {
  customer: string;
  tag: string;
  workMs?: number;
  hookMs?: number;
}

/** When each part of a run began and ended (server-independent: this process's clock, one process). */
async function mark(tag: string, what: string): Promise<void> {
  await suite.direct.hset(`${log}:at`, `${tag}:${what}`, String(Date.now()));
}
async function at(tag: string, what: string): Promise<number> {
  return Number(await suite.direct.hget(`${log}:at`, `${tag}:${what}`));
}
function waitAbortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });
}

@Workflow('hooked-keyed', { concurrency: { key: (input: HookInput) => input.customer, limit: 1 } })
@Injectable()
class HookedKeyed {
  async execute(ctx: WorkflowContext<HookInput>) {
    await mark(ctx.input.tag, 'start');
    await ctx.step.run('work', (step) => waitAbortable(ctx.input.workMs ?? 0, step.signal));
    await mark(ctx.input.tag, 'end');
    return ctx.input.tag;
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<HookInput>) {
    await mark(ctx.input.tag, 'hook-start');
    await new Promise((resolve) => setTimeout(resolve, ctx.input.hookMs ?? 0));
    await mark(ctx.input.tag, 'hook-end');
  }
}

@Workflow('hooked-rated', { rateLimit: { key: (input: HookInput) => input.customer, limit: 1, periodMs: 2000 } })
@Injectable()
class HookedRated {
  async execute(ctx: WorkflowContext<HookInput>) {
    await mark(ctx.input.tag, 'start');
    return ctx.input.tag;
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<HookInput>) {
    await mark(ctx.input.tag, 'hook-start');
  }
}

describe('flow control: the @OnFailure of a run canceled at once counts against its key (e2e, real Redis)', () => {
  it('a held run canceled: its @OnFailure waits until the key\'s running run has finished', async () => {
    const prefix = uniquePrefix('hook-held');
    log = prefix;
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [HookedKeyed]);
    suite.apps.push(producer);
    const running = await producer.client.emit(HookedKeyed, { customer: 'acme', tag: 'running', workMs: 800 });
    const held = await producer.client.emit(HookedKeyed, { customer: 'acme', tag: 'held' });
    suite.apps.push(await startApp({ connection: suite.redis.url, prefix }, [HookedKeyed]));
    await waitFor(async () => (await at('running', 'start')) > 0, 10_000);
    await producer.client.cancelRun(held.id);
    expect(await running.result({ timeoutMs: 10_000 })).toBe('running');
    await waitFor(async () => (await at('held', 'hook-end')) > 0, 10_000);
    expect(await at('held', 'start')).toBe(0);
    expect(await at('held', 'hook-start')).toBeGreaterThanOrEqual(await at('running', 'end'));
    await waitFor(async () => (await flowKeysLeft(suite.direct, prefix)).length === 0, 5_000);
  }, 30_000);

  it('a running run canceled: the key\'s next run starts after its @OnFailure has run', async () => {
    const prefix = uniquePrefix('hook-running');
    log = prefix;
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [HookedKeyed]);
    suite.apps.push(producer);
    const canceled = await producer.client.emit(HookedKeyed, { customer: 'acme', tag: 'canceled', workMs: 60_000, hookMs: 600 });
    const next = await producer.client.emit(HookedKeyed, { customer: 'acme', tag: 'next' });
    suite.apps.push(await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 5, reaperIntervalMs: 20 } }, [HookedKeyed]));
    await waitFor(async () => (await at('canceled', 'start')) > 0, 10_000);
    await producer.client.cancelRun(canceled.id);
    expect(await next.result({ timeoutMs: 10_000 })).toBe('next');
    expect(await at('canceled', 'hook-end')).toBeGreaterThan(0);
    expect(await at('next', 'start')).toBeGreaterThanOrEqual(await at('canceled', 'hook-end'));
    await waitFor(async () => (await flowKeysLeft(suite.direct, prefix)).length === 0, 5_000);
  }, 30_000);

  it('on a rate-limited key the @OnFailure counts as a start: the key\'s next run waits for the window', async () => {
    const prefix = uniquePrefix('hook-rated');
    log = prefix;
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [HookedRated]);
    suite.apps.push(producer);
    const canceled = await producer.client.emit(HookedRated, { customer: 'acme', tag: 'canceled' });
    const next = await producer.client.emit(HookedRated, { customer: 'acme', tag: 'next' });
    await producer.client.cancelRun(canceled.id);
    suite.apps.push(await startApp({ connection: suite.redis.url, prefix }, [HookedRated]));
    expect(await next.result({ timeoutMs: 10_000 })).toBe('next');
    expect(await at('canceled', 'start')).toBe(0);
    // one start in any 2 s window of the key: the hook's, then the next run's (less claim-to-handler jitter)
    expect(await at('next', 'start')).toBeGreaterThanOrEqual((await at('canceled', 'hook-start')) + 1900);
    await waitFor(async () => (await flowKeysLeft(suite.direct, prefix)).filter((key) => !key.includes(':fr:')).length === 0, 5_000);
  }, 30_000);

  it('the slot kept for an @OnFailure still to run is given back when the run is retried, and at its retention', async () => {
    const prefix = uniquePrefix('hook-kept');
    log = prefix;
    const options = { connection: suite.redis.url, prefix, retention: { succeededMs: 60_000, failedMs: 60_000, canceledMs: 500 } };
    const producer = await startApp({ ...options, worker: false }, [HookedKeyed]);
    suite.apps.push(producer);
    const emit = (tag: string) => producer.client.emit(HookedKeyed, { customer: 'acme', tag });
    const [a, b, c] = [await emit('a'), await emit('b'), await emit('c')];
    const delayedBy = async (id: string) => (await producer.client.getRun(id))?.delayedBy;

    // a's hook keeps a's slot: b and c stay held
    await producer.client.cancelRun(a.id);
    expect([await delayedBy(b.id), await delayedBy(c.id)]).toEqual(['concurrency', 'concurrency']);

    // retried, a gives that slot to b and queues behind c
    await producer.client.retryRun(a.id);
    expect([await delayedBy(b.id), await delayedBy(c.id), await delayedBy(a.id)]).toEqual([undefined, 'concurrency', 'concurrency']);

    // b canceled keeps its slot for its hook until its retention ends (housekeeping of a worker of another
    // workflow of the queue, so that nothing claims the hook): then c has the slot
    await producer.client.cancelRun(b.id);
    expect(await delayedBy(c.id)).toBe('concurrency');
    suite.apps.push(await startApp({ ...options, worker: { reaperIntervalMs: 20 } }, [HookedRated]));
    await waitFor(async () => (await producer.client.getRun(b.id)) === null, 10_000);
    expect(await delayedBy(c.id)).toBeUndefined();
    expect(await delayedBy(a.id)).toBe('concurrency');

    // a worker of the workflow runs c, then a; b's hook never ran (b expired first)
    suite.apps.push(await startApp({ ...options, worker: { reaperIntervalMs: 20 } }, [HookedKeyed]));
    expect(await c.result({ timeoutMs: 10_000 })).toBe('c');
    expect(await a.result({ timeoutMs: 10_000 })).toBe('a');
    expect(await at('b', 'hook-start')).toBe(0);
    await waitFor(async () => (await flowKeysLeft(suite.direct, prefix)).length === 0, 5_000);
  }, 30_000);
});
