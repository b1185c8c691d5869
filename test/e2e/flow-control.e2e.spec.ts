import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { InvalidArgumentError, Workflow, WorkflowConfigurationError, type WorkflowContext } from '../../lib/index.js';
import { Registry } from 'prom-client';
import { statsView } from '../../lib/cli/workflow-views.js';
import { sleep, uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';
import { flowKeysLeft } from '../support/flow-keys.js';

// Flow control (README "Flow control"): per-key concurrency, rate limits, fairness and queue-wide limits,
// enforced by the Lua library (lua/includes/01-flow.lua) against a real Redis.
const suite = useSuiteRedis();
let log = '';

/** Records a start in Redis and fails the run's key if another run of it is executing (side effects only). */
async function enter(key: string): Promise<void> {
  const active = await suite.direct.hincrby(`${log}:active`, key, 1);
  if (active > 1) await suite.direct.incr(`${log}:overlaps`);
  await suite.direct.rpush(`${log}:starts:${key}`, String(Date.now()));
}
async function leave(key: string): Promise<void> {
  await suite.direct.hincrby(`${log}:active`, key, -1);
}

@Workflow('per-customer', { concurrency: { key: (input: { customer: string }) => input.customer, limit: 1 } })
@Injectable()
class PerCustomer {
  async execute(ctx: WorkflowContext<{ customer: string; n: number }>) {
    await enter(ctx.input.customer);
    await sleep(3);
    await leave(ctx.input.customer);
    return ctx.input.n;
  }
}

@Workflow('napping', { concurrency: { key: (input: { customer: string }) => input.customer, limit: 1 } })
@Injectable()
class Napping {
  async execute(ctx: WorkflowContext<{ customer: string; napMs: number }>) {
    await ctx.step.run('before', () => suite.direct.rpush(`${log}:naps`, `${ctx.run.id}:before`));
    if (ctx.input.napMs) await ctx.step.sleep('nap', ctx.input.napMs);
    await ctx.step.run('after', () => suite.direct.rpush(`${log}:naps`, `${ctx.run.id}:after`));
  }
}

@Workflow('partner-calls', { rateLimit: { key: (input: { account: string }) => input.account, limit: 20, periodMs: 1000 } })
@Injectable()
class PartnerCalls {
  async execute(ctx: WorkflowContext<{ account: string }>) {
    await suite.direct.rpush(`${log}:starts:${ctx.input.account}`, String(Date.now()));
  }
}

@Workflow('fair-sync', { concurrency: { key: (input: { tenant: string }) => input.tenant, limit: 1000 }, fairness: true })
@Injectable()
class FairSync {
  async execute(ctx: WorkflowContext<{ tenant: string }>) {
    await suite.direct.rpush(`${log}:order`, ctx.input.tenant);
  }
}

@Workflow('unfair-sync', { concurrency: { key: (input: { tenant: string }) => input.tenant, limit: 1000 } })
@Injectable()
class UnfairSync {
  async execute(ctx: WorkflowContext<{ tenant: string }>) {
    await suite.direct.rpush(`${log}:order`, ctx.input.tenant);
  }
}

const sharedQueueWorkflow = (name: string) => {
  @Workflow(name, { queue: 'partner' })
  @Injectable()
  class SharedQueue {
    async execute() {
      const active = await suite.direct.incr(`${log}:queue-active`);
      await suite.direct.eval(`local m = tonumber(redis.call('GET', KEYS[1]) or '0') if ${active} > m then redis.call('SET', KEYS[1], ${active}) end`, 1, `${log}:queue-max`);
      await sleep(5);
      await suite.direct.decr(`${log}:queue-active`);
    }
  }
  return SharedQueue;
};
const QueueA = sharedQueueWorkflow('queue-a');
const QueueB = sharedQueueWorkflow('queue-b');
const QueueC = sharedQueueWorkflow('queue-c');

@Workflow('profile-changed', { debounce: { key: (input: { user: string }) => input.user, periodMs: 1500 } })
@Injectable()
class ProfileChanged {
  async execute(ctx: WorkflowContext<{ user: string; version: number }>) {
    await suite.direct.rpush(`${log}:synced`, `${ctx.input.user}:${ctx.input.version}`);
    return ctx.input.version;
  }
}

@Workflow('profile-parent')
@Injectable()
class ProfileParent {
  async execute(ctx: WorkflowContext<{ user: string; version: number }>) {
    return ctx.step.runWorkflow('sync', ProfileChanged, ctx.input);
  }
}

@Workflow('bursty', { debounce: { key: () => 'all', periodMs: 300, maxWaitMs: 700 } })
@Injectable()
class Bursty {
  async execute(ctx: WorkflowContext<{ at: number }>) {
    await suite.direct.rpush(`${log}:bursts`, `${ctx.input.at}:${Date.now()}`);
  }
}

@Workflow('bad-key', { concurrency: { key: (input: { n: number }) => input.n as unknown as string, limit: 2 } })
@Injectable()
class BadKey {
  async execute() {}
}

async function started(apps: TestApp[]): Promise<TestApp[]> {
  suite.apps.push(...apps);
  return apps;
}

describe('flow control (e2e, real Redis)', () => {
  it('runs at most `limit` runs of a key at once: 1,000 runs over 50 keys with limit 1 never overlap, and all finish', async () => {
    const prefix = uniquePrefix('conc');
    log = prefix;
    const [a, b] = await started([
      await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 25, reaperIntervalMs: 20 } }, [PerCustomer]),
      await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 25, reaperIntervalMs: 20 } }, [PerCustomer]),
    ]);
    const handles = [];
    for (let chunk = 0; chunk < 10; chunk++) {
      handles.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => (chunk % 2 ? a : b).client.emit(PerCustomer, { customer: `c${Math.floor((chunk * 100 + i) / 20)}`, n: chunk * 100 + i })))));
    }
    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 60_000 })));
    expect(results.sort((x, y) => Number(x) - Number(y))).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Number(await suite.direct.get(`${prefix}:overlaps`))).toBe(0);
    // each key ran its 20 runs one after the other (emitted one after the other: without the limit, they overlap)
    for (const key of ['c0', 'c49']) expect(await suite.direct.llen(`${prefix}:starts:${key}`)).toBe(20);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 90_000);

  it('shows a held-back run as queued with flowKey and delayedBy, counts it in stats, and runs it when the slot frees', async () => {
    const prefix = uniquePrefix('held');
    log = prefix;
    const registry = new Registry();
    const [producer] = await started([await startApp({ connection: suite.redis.url, prefix, worker: false, metrics: { registry } }, [PerCustomer])]);
    const first = await producer.client.emit(PerCustomer, { customer: 'acme', n: 1 });
    const second = await producer.client.emit(PerCustomer, { customer: 'acme', n: 2 });
    const other = await producer.client.emit(PerCustomer, { customer: 'globex', n: 3 });
    const [one, two, three] = await Promise.all([first, second, other].map((h) => producer.client.getRun(h.id)));
    expect(one).toMatchObject({ status: 'queued', flowKey: 'acme' });
    expect(one?.delayedBy).toBeUndefined();
    expect(two).toMatchObject({ status: 'queued', flowKey: 'acme', delayedBy: 'concurrency' });
    expect(three?.delayedBy).toBeUndefined();
    const page = await producer.client.listRuns({ workflow: 'per-customer' });
    expect(page.runs.find((r) => r.id === second.id)).toMatchObject({ flowKey: 'acme', delayedBy: 'concurrency' });
    const stats = await producer.client.getStats();
    expect(stats.workflows.find((w) => w.name === 'per-customer')).toMatchObject({ queueDepth: 2, heldBack: { concurrency: 1 } });
    expect(stats.queues.find((q) => q.name === 'default')?.heldBack).toEqual({ concurrency: 1 });
    expect(statsView(stats, prefix, Date.now(), 200)).toContain('concurrency 1');
    const text = await registry.metrics();
    expect(text).toContain('workflow_runs_held_back{workflow="per-customer",queue="default",reason="concurrency"} 1');
    expect(text).toContain('workflow_runs_held_back{workflow="per-customer",queue="default",reason="rateLimit"} 0');

    await started([await startApp({ connection: suite.redis.url, prefix }, [PerCustomer])]);
    expect(await second.result({ timeoutMs: 10_000 })).toBe(2);
    expect((await producer.client.getStats()).workflows[0].heldBack).toBeUndefined();
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('a canceled held-back run leaves its key; a parked run gives its slot to the key\'s next run', async () => {
    const prefix = uniquePrefix('park');
    log = prefix;
    const [producer] = await started([await startApp({ connection: suite.redis.url, prefix, worker: false }, [Napping])]);
    const napper = await producer.client.emit(Napping, { customer: 'acme', napMs: 1500 });
    const canceled = await producer.client.emit(Napping, { customer: 'acme', napMs: 0 });
    const quick = await producer.client.emit(Napping, { customer: 'acme', napMs: 0 });
    await producer.client.cancelRun(canceled.id);
    expect((await producer.client.getRun(quick.id))?.delayedBy).toBe('concurrency');
    await started([await startApp({ connection: suite.redis.url, prefix }, [Napping])]);
    await quick.result({ timeoutMs: 10_000 });
    // the quick run went while the first one slept
    expect((await producer.client.getRun(napper.id))?.status).toBe('waiting');
    await napper.result({ timeoutMs: 10_000 });
    const naps = await suite.direct.lrange(`${prefix}:naps`, 0, -1);
    expect(naps).toEqual([`${napper.id}:before`, `${quick.id}:before`, `${quick.id}:after`, `${napper.id}:after`]);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('starts at most `limit` runs of a key in any window of periodMs, while other keys proceed', async () => {
    const prefix = uniquePrefix('rate');
    log = prefix;
    const [producer] = await started([await startApp({ connection: suite.redis.url, prefix, worker: false }, [PartnerCalls])]);
    const busy = await Promise.all(Array.from({ length: 50 }, () => producer.client.emit(PartnerCalls, { account: 'busy' })));
    const quiet = await Promise.all(Array.from({ length: 5 }, () => producer.client.emit(PartnerCalls, { account: 'quiet' })));
    expect((await producer.client.getRun(busy[0].id))?.delayedBy).toBeUndefined();
    await started([await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 20, reaperIntervalMs: 20 } }, [PartnerCalls])]);
    await Promise.all(quiet.map((h) => h.result({ timeoutMs: 10_000 })));
    const quietDoneAt = Date.now();
    await waitFor(async () => (await suite.direct.llen(`${prefix}:starts:busy`)) >= 21, 5_000);
    const heldBusy = (await producer.client.listRuns({ workflow: 'partner-calls', status: 'queued' })).runs;
    expect(heldBusy.some((r) => r.delayedBy === 'rateLimit')).toBe(true);
    await Promise.all(busy.map((h) => h.result({ timeoutMs: 10_000 })));
    const starts = (await suite.direct.lrange(`${prefix}:starts:busy`, 0, -1)).map(Number).sort((x, y) => x - y);
    expect(starts).toHaveLength(50);
    // any 21 consecutive starts span at least a period (less the jitter between claim and handler start)
    for (let i = 0; i + 20 < starts.length; i++) expect(starts[i + 20] - starts[i]).toBeGreaterThanOrEqual(950);
    expect(starts[49] - starts[0]).toBeGreaterThanOrEqual(1950);
    expect(quietDoneAt).toBeLessThan(starts[20]);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual(expect.not.arrayContaining([expect.stringContaining(':f:')]));
  }, 30_000);

  it.each([
    ['with fairness, a key with 5,000 queued runs delays one with 5 by a few claims', FairSync, (at: number) => expect(at).toBeLessThan(20)],
    ['without fairness, the same backlog delays it by about its size (the test above would fail)', UnfairSync, (at: number) => expect(at).toBeGreaterThan(900)],
  ])('%s', async (_name, type, check) => {
    const prefix = uniquePrefix('fair');
    log = prefix;
    const [producer] = await started([await startApp({ connection: suite.redis.url, prefix, worker: false }, [type])]);
    const total = type === FairSync ? 5000 : 1000;
    for (let chunk = 0; chunk < total / 500; chunk++) {
      await Promise.all(Array.from({ length: 500 }, () => producer.client.emit(type, { tenant: 'big' })));
    }
    const small = await Promise.all(Array.from({ length: 5 }, () => producer.client.emit(type, { tenant: 'small' })));
    await started([await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 4, reaperIntervalMs: 20 } }, [type])]);
    await Promise.all(small.map((h) => h.result({ timeoutMs: 60_000 })));
    const order = await suite.direct.lrange(`${prefix}:order`, 0, -1);
    check(order.lastIndexOf('small'));
  }, 60_000);

  it('queues.<name>.concurrency is shared by every workflow of the queue across workers', async () => {
    const prefix = uniquePrefix('queue');
    log = prefix;
    const options = { connection: suite.redis.url, prefix, queues: { partner: { concurrency: 5 } }, worker: { concurrency: 10, reaperIntervalMs: 20 } };
    const apps = await started([
      await startApp(options, [QueueA, QueueB, QueueC]),
      await startApp(options, [QueueA, QueueB, QueueC]),
      await startApp(options, [QueueA, QueueB, QueueC]),
    ]);
    const handles = [];
    for (let i = 0; i < 300; i++) handles.push(apps[i % 3].client.emit([QueueA, QueueB, QueueC][i % 3], {}));
    await Promise.all((await Promise.all(handles)).map((h) => h.result({ timeoutMs: 30_000 })));
    expect(Number(await suite.direct.get(`${prefix}:queue-max`))).toBe(5);
  }, 60_000);

  it('collapses 100 emits within the debounce period into one run with the last input', async () => {
    const prefix = uniquePrefix('debounce');
    log = prefix;
    const [app] = await started([await startApp({ connection: suite.redis.url, prefix }, [ProfileChanged])]);
    const handles = [];
    for (let version = 1; version <= 100; version++) handles.push(await app.client.emit(ProfileChanged, { user: 'u1', version }));
    const other = await app.client.emit(ProfileChanged, { user: 'u2', version: 1 });
    expect(new Set(handles.map((h) => h.id)).size).toBe(1);
    const pending = await app.client.getRun(handles[0].id);
    expect(pending).toMatchObject({ status: 'scheduled', delayedBy: 'debounce', input: { user: 'u1', version: 100 } });
    expect((await app.client.getStats()).workflows[0].heldBack).toEqual({ debounce: 2 });
    expect(await handles[99].result({ timeoutMs: 10_000 })).toBe(100);
    await other.result({ timeoutMs: 10_000 });
    expect((await suite.direct.lrange(`${prefix}:synced`, 0, -1)).sort()).toEqual(['u1:100', 'u2:1']);
    expect((await app.client.getStats()).workflows[0].counts.succeeded).toBe(2);
    expect((await app.client.getStats()).workflows[0].heldBack).toBeUndefined();
    // the key's period is over: the next emit starts a new run
    const later = await app.client.emit(ProfileChanged, { user: 'u1', version: 101 });
    expect(later.id).not.toBe(handles[0].id);
    expect(await suite.direct.keys(`{${prefix}:*}:db:*`)).toHaveLength(1);
  }, 30_000);

  it('a parent whose child emit joins a pending debounced run gets that run\'s outcome', async () => {
    const prefix = uniquePrefix('debounce-child');
    log = prefix;
    const [app] = await started([await startApp({ connection: suite.redis.url, prefix }, [ProfileChanged, ProfileParent])]);
    const pending = await app.client.emit(ProfileChanged, { user: 'p', version: 1 });
    const parent = await app.client.emit(ProfileParent, { user: 'p', version: 2 });
    expect(await parent.result({ timeoutMs: 10_000 })).toBe(2);
    expect(await pending.result({ timeoutMs: 1_000 })).toBe(2);
    expect((await app.client.listRuns({ workflow: 'profile-changed' })).runs).toHaveLength(1);
  }, 30_000);

  it('debounce.maxWaitMs starts a run of a steady stream of emits at most that long after its first', async () => {
    const prefix = uniquePrefix('maxwait');
    log = prefix;
    const [app] = await started([await startApp({ connection: suite.redis.url, prefix }, [Bursty])]);
    const until = Date.now() + 2000;
    const ids = new Set<string>();
    while (Date.now() < until) {
      ids.add((await app.client.emit(Bursty, { at: Date.now() })).id);
      await sleep(50);
    }
    await waitFor(async () => (await suite.direct.llen(`${prefix}:bursts`)) === ids.size, 5_000);
    // a 2 s stream with a 300 ms period would never end a period: maxWaitMs cuts it into runs of about 700 ms
    expect(ids.size).toBeGreaterThanOrEqual(3);
    expect(ids.size).toBeLessThanOrEqual(4);
  }, 30_000);

  it('refuses bad options at module start and a bad key at emit, writing nothing', async () => {
    const prefix = uniquePrefix('bad');
    @Workflow('zero-limit', { concurrency: { key: () => 'k', limit: 0 } })
    @Injectable()
    class ZeroLimit {
      async execute() {}
    }
    await expect(startApp({ connection: suite.redis.url, prefix }, [ZeroLimit])).rejects.toThrow(WorkflowConfigurationError);
    await expect(startApp({ connection: suite.redis.url, prefix, queues: { q: { partitions: 2, concurrency: 3 } } }, [])).rejects.toThrow(/remove partitions/);
    const [app] = await started([await startApp({ connection: suite.redis.url, prefix, worker: false }, [BadKey])]);
    const before = await suite.direct.keys(`{${prefix}:*`);
    const emitting = app.client.emit(BadKey, { n: 7 });
    await expect(emitting).rejects.toThrow(InvalidArgumentError);
    await expect(emitting).rejects.toThrow(/must return a non-empty string/);
    expect(await suite.direct.keys(`{${prefix}:*`)).toEqual(before);
  });
});
