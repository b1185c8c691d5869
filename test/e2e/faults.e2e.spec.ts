import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RunNotFoundError, Workflow, WorkflowError, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('f-steps', { queue: 'fq' })
@Injectable()
class StepsWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const a = await ctx.step.run('a', () => ctx.input.n + 1);
    return a * 2;
  }
}

@Workflow('f-unknown-here', { queue: 'fq' })
@Injectable()
class NotDeployedWorkflow {
  async execute() {
    return 'ran';
  }
}

/** Every key of a prefix with its value, timestamps (13-digit ms) masked: the state to compare. */
async function snapshot(redis: Redis, prefix: string): Promise<Record<string, unknown>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', '1000');
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const mask = (v: string) => v.replace(/\b\d{13}\b/g, 'T');
  const state: Record<string, unknown> = {};
  for (const key of keys.sort()) {
    const type = await redis.type(key);
    if (type === 'hash') state[key] = Object.fromEntries(Object.entries(await redis.hgetall(key)).map(([k, v]) => [k, mask(v)]));
    else if (type === 'zset') state[key] = (await redis.zrange(key, '0', '-1', 'WITHSCORES')).map(mask);
    else if (type === 'list') state[key] = (await redis.lrange(key, 0, -1)).map(mask);
    else if (type === 'set') state[key] = (await redis.smembers(key)).sort();
    else state[key] = mask(String(await redis.get(key)));
  }
  return state;
}

describe('faults: repeated calls, damaged data, unknown workflows, bad input (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;
  let raw: Redis;
  const prefix = uniquePrefix('faults');

  beforeAll(async () => {
    redis = await redisUrlForTests();
    raw = redisFor(redis.url);
    app = await startApp({ connection: redis.url, prefix, worker: { reaperIntervalMs: 20 } }, [StepsWorkflow]);
  });

  afterAll(async () => {
    await app?.close();
    raw?.disconnect();
    await redis?.stop();
  });

  it('a write function called twice with the same arguments leaves the state it left once (ioredis resends)', async () => {
    const engine = app.moduleRef.get(WorkflowRedis);
    const store = engine.store;
    const shard = { queue: 'iq', partition: 0 };
    const twice = async (call: () => Promise<unknown>) => {
      await call();
      const once = await snapshot(raw, prefix);
      await call();
      expect(await snapshot(raw, prefix)).toEqual(once);
    };
    const runId = engine.keys.newRunId(shard);
    const emit = () => store.emit(shard, { runId, workflow: 'idem', queue: 'iq', input: '{"x":1}', priority: 0, idempotencyKey: 'k' });
    await twice(emit);
    const [claimed] = await store.claim(shard, 'w1', 1, 30_000, 'c1', [{ name: 'idem', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 1000);
    expect(claimed.id).toBe(runId);
    await twice(() => store.commitStep(shard, runId, claimed.token, '0:a', 'S', '{"k":"step","r":1}'));
    await twice(() => store.heartbeat(shard, 30_000, [{ id: runId, token: claimed.token }]));
    await twice(() => store.fail(shard, runId, claimed.token, '{"name":"Error","message":"x"}', 'finalize'));
    await twice(() => store.fail(shard, runId, claimed.token, '{"name":"Error","message":"x"}', 'failed', { retentionMs: 60_000 }));
    await twice(() => store.retry(shard, runId));
    const [again] = await store.claim(shard, 'w1', 1, 30_000, 'c2', [{ name: 'idem', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 1000);
    await twice(() => store.park(shard, runId, again.token, '{}', [{ kind: 'event', field: '0:e', event: 'ev', key: 'k1' }]));
    await twice(() => store.waitEvent('ev', 'k1', runId, '0:e', { runCreatedAt: 0 }, engine.keys.shardRoot(shard)));
    const eventId = '01JZZZZZZZZZZZZZZZZZZZZZZZ';
    await twice(() => store.sendEvent(eventId, 'ev', 'k1', '{"ok":1}', 60_000));
    const { handoffs } = await store.sendEvent('01JZZZZZZZZZZZZZZZZZZZZZZY', 'ev', 'k1', '{"ok":2}', 60_000);
    expect(handoffs).toHaveLength(0); // the waiter was taken by the first send
    await twice(() => store.cancel(shard, runId, '{"name":"CanceledError","message":"c"}', 60_000));
    // complete and release, on a second run
    const second = engine.keys.newRunId(shard);
    await store.emit(shard, { runId: second, workflow: 'idem', queue: 'iq', input: '{}', priority: 0 });
    const [third] = await store.claim(shard, 'w1', 1, 30_000, 'c4', [{ name: 'idem', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 1000);
    await twice(() => store.release(shard, 'test', [{ id: second, token: third.token }]));
    const [fourth] = await store.claim(shard, 'w1', 1, 30_000, 'c5', [{ name: 'idem', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 1000);
    await twice(() => store.fail(shard, second, fourth.token, '{"name":"Error","message":"y"}', 'retry', { delayMs: 0 }));
    const [fifth] = await store.claim(shard, 'w1', 1, 30_000, 'c6', [{ name: 'idem', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 1000);
    await twice(() => store.complete(shard, second, fifth.token, '{"done":true}', 60_000));
    await twice(() => store.register([{ name: 'idem', meta: '{"queue":"iq"}' }]));
    await twice(() => store.tick(engine.keys.shardRoot(shard), 100));
  });

  it('a delivered hand-off is not applied twice', async () => {
    const engine = app.moduleRef.get(WorkflowRedis);
    const shard = { queue: 'iq', partition: 0 };
    const runId = engine.keys.newRunId(shard);
    await engine.store.emit(shard, { runId, workflow: 'idem2', queue: 'iq', input: '{}', priority: 0 });
    const [claimed] = await engine.store.claim(shard, 'w1', 1, 30_000, 'c3', [{ name: 'idem2', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }], 1000);
    await engine.store.park(shard, runId, claimed.token, '{}', [{ kind: 'event', field: '0:e', event: 'ev2', key: '' }]);
    const handoff = {
      targetRoot: engine.keys.shardRoot(shard), runId, field: '0:e', state: 'S' as const, record: '{"k":"event","r":1}', kind: 'event' as const,
      sourceRoot: engine.keys.eventRoot(), messageId: 'm1',
    };
    await engine.store.deliver(handoff);
    const once = await snapshot(raw, prefix);
    await engine.store.deliver(handoff);
    expect(await snapshot(raw, prefix)).toEqual(once);
  });

  it('fails a run whose stored hash was damaged by hand, with the reason in its history, and keeps serving others', async () => {
    const handle = await app.client.emit(StepsWorkflow, { n: 1 }, { delayMs: 300 });
    const root = app.moduleRef.get(WorkflowRedis).keys.shardRoot({ queue: 'fq', partition: 0 });
    await raw.hset(`${root}:r:${handle.id}`, 'att', 'garbage');
    const error = await handle.result({ timeoutMs: 10_000 }).catch((e) => e);
    expect(error.name).toBe('CorruptedRunError');
    expect((await app.client.getRunHistory(handle.id)).at(-1)).toMatchObject({ type: 'failed', error: { name: 'CorruptedRunError' } });
    expect(await app.client.run(StepsWorkflow, { n: 2 }, { timeoutMs: 10_000 })).toBe(6);

    const badInput = await app.client.emit(StepsWorkflow, { n: 3 }, { delayMs: 300 });
    await raw.hset(`${root}:r:${badInput.id}`, 'in', '{not json');
    const inputError = await badInput.result({ timeoutMs: 10_000 }).catch((e) => e);
    expect(inputError.message).toContain('not valid JSON');
    expect((await app.client.getRun(badInput.id))?.attempt).toBe(1);
  });

  it('a run of a workflow no live worker knows waits, using no attempts, with a note, until a worker that has it starts', async () => {
    const handle = await app.client.emit(NotDeployedWorkflow, {});
    await new Promise((resolve) => setTimeout(resolve, 300));
    const state = await handle.getState();
    expect(state).toMatchObject({ status: 'queued', attempt: 1 });
    const history = await app.client.getRunHistory(handle.id);
    expect(history.find((e) => e.type === 'note')?.data?.message).toContain("No live worker serves workflow 'f-unknown-here'");
    const newer = await startApp({ connection: redis.url, prefix, worker: { reaperIntervalMs: 20 } }, [NotDeployedWorkflow]);
    try {
      expect(await handle.result({ timeoutMs: 10_000 })).toBe('ran');
      expect((await app.client.getRun(handle.id))?.attempt).toBe(1);
    } finally {
      await newer.close();
    }
  });

  it('refuses bad input through every public client method with a clear error, changing nothing', async () => {
    const before = await snapshot(raw, prefix);
    const c = app.client;
    const other = `${'0'.repeat(26)}.fq.0`;
    await expect(c.emit('no-such-workflow', {})).rejects.toThrow("Unknown workflow 'no-such-workflow'");
    await expect(c.emit(123 as never, {} as never)).rejects.toThrow('Name a workflow');
    await expect(c.emit(class NotAWorkflow {} as never, {} as never)).rejects.toThrow('is not a workflow');
    await expect(c.emit(StepsWorkflow, { n: () => 1 } as never)).rejects.toThrow('is a function');
    await expect(c.emit(StepsWorkflow, { n: 10n } as never)).rejects.toThrow('BigInt');
    await expect(c.emit(StepsWorkflow, { n: 'x'.repeat(2 * 1024 * 1024) } as never)).rejects.toThrow('maxPayloadBytes');
    await expect(c.emit(StepsWorkflow, { n: 1 }, { priority: 9999 })).rejects.toThrow('priority');
    await expect(c.emit(StepsWorkflow, { n: 1 }, { delayMs: -1 })).rejects.toThrow('delayMs');
    await expect(c.emit(StepsWorkflow, { n: 1 }, { runAt: new Date('nope') })).rejects.toThrow('runAt');
    await expect(c.emit(StepsWorkflow, { n: 1 }, { idempotencyKey: 'k'.repeat(600) })).rejects.toThrow('idempotencyKey');
    await expect(c.emit(StepsWorkflow, { n: 1 }, { queue: 'bad queue!' })).rejects.toThrow('Invalid queue');
    expect(await c.getRun('not-a-run-id')).toBeNull();
    expect(await c.getRun(other)).toBeNull();
    expect(await c.getRun({} as never)).toBeNull();
    expect(await c.getRunSteps('x'.repeat(10_000))).toEqual([]);
    expect(await c.getRunHistory(other)).toEqual([]);
    expect(await c.cancelRun('nope')).toBe(false);
    expect(await c.cancelRun(other)).toBe(false);
    // An id that names no retained run, malformed or not, is the same unknown run everywhere: getRun
    // answers null, and what needs the run rejects with RunNotFoundError (the HTTP filter's 404).
    for (const id of ['nope', other]) {
      await expect(c.retryRun(id)).rejects.toThrow(RunNotFoundError);
      await expect(c.handle(id).getState()).rejects.toThrow(RunNotFoundError);
      await expect(c.handle(id).result()).rejects.toMatchObject({ name: 'RunNotFoundError', runId: id });
      expect(await c.handle(id).cancel()).toBe(false);
    }
    await expect(c.findRun('f-steps', '')).rejects.toThrow('non-empty');
    await expect(c.findRun('no-such', 'k')).rejects.toThrow('Unknown workflow');
    await expect(c.sendEvent('', {})).rejects.toThrow('event name');
    await expect(c.sendEvent('e', { f: () => 1 })).rejects.toThrow('is a function');
    await expect(c.sendEvent('e', {}, { key: 'k'.repeat(600) })).rejects.toThrow('key');
    await expect(c.listRuns({ limit: 0 })).rejects.toThrow('limit');
    await expect(c.listRuns({ cursor: 'garbage' })).rejects.toThrow('cursor');
    expect(await c.getWorkflowMeta('no-such')).toBeNull();
    expect(await snapshot(raw, prefix)).toEqual(before);
    expect(WorkflowError).toBeDefined();
  });
});
