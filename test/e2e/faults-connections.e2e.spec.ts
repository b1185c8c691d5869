import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

let counters: Redis;
const effectsKey = uniquePrefix('conn-effects');

@Workflow('conn-steps', { queue: 'conn', maxAttempts: 3, backoff: { type: 'fixed', delayMs: 20 } })
@Injectable()
class ConnStepsWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    for (const step of ['one', 'two', 'three']) {
      await ctx.step.run(step, async () => {
        await counters.hincrby(effectsKey, `${ctx.input.i}:${step}`, 1);
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
      });
    }
    return ctx.input.i;
  }
}

describe('faults: connections cut under load (CLIENT KILL)', () => {
  let redis: RedisServerHandle;
  let counterServer: RedisServerHandle;
  let admin: Redis;
  let worker: TestApp;
  let api: TestApp;

  beforeAll(async () => {
    redis = await startRedis();
    counterServer = await startRedis();
    counters = redisFor(counterServer.url);
    admin = redisFor(redis.url);
    const prefix = uniquePrefix('conn');
    worker = await startApp({ connection: redis.url, prefix, worker: { concurrency: 20, leaseMs: 1000, reaperIntervalMs: 20 } }, [ConnStepsWorkflow]);
    api = await startApp({ connection: redis.url, prefix, worker: false });
  });

  afterAll(async () => {
    await api?.close();
    await worker?.close();
    admin?.disconnect();
    counters?.disconnect();
    await redis?.stop();
    await counterServer?.stop();
  });

  it('workers reconnect after their connections are killed, and nothing is lost or doubled', async () => {
    const total = 400;
    const handles = [];
    for (let i = 0; i < total; i += 1) handles.push(await api.client.emit(ConnStepsWorkflow, { i }, { idempotencyKey: `c${i}` }));
    let cuts = 0;
    const cutting = (async () => {
      for (let k = 0; k < 6; k += 1) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        // every normal and pub/sub connection but this one: the worker's and the producer's
        cuts += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'));
        cuts += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
      }
    })();
    await cutting;
    expect(cuts).toBeGreaterThan(6);
    await waitFor(async () => {
      const stats = await api.client.getStats().catch(() => undefined);
      return stats?.workflows.find((w) => w.name === 'conn-steps')?.counts.succeeded === total;
    }, 60_000, 100);
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 10_000 })));
    expect(outputs).toEqual(handles.map((_, i) => i));
    let repeated = 0;
    const effects = await counters.hgetall(effectsKey);
    for (let i = 0; i < total; i += 1) {
      for (const step of ['one', 'two', 'three']) {
        const n = Number(effects[`${i}:${step}`] ?? 0);
        expect(n).toBeGreaterThanOrEqual(1);
        repeated += n - 1;
      }
      const history = await api.client.getRunHistory(handles[i].id);
      expect(history.filter((e) => e.type === 'succeeded')).toHaveLength(1);
    }
    const failedAttempts = (await Promise.all(handles.map((h) => h.getState()))).filter((r) => r.attempt > 1).length;
    process.stdout.write(`client kill: ${cuts} connections cut, ${repeated} step executions repeated, ${failedAttempts} runs needed a second attempt\n`);
    // Transitions are retried through the cut (they are idempotent), so runs keep their attempt and lease;
    // at most a step in flight per slot and cut could run again.
    expect(repeated).toBeLessThanOrEqual(cuts * 20);
    expect(failedAttempts).toBeLessThanOrEqual(cuts * 20);
  }, 90_000);
});
