import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { KeySpace } from '../../lib/redis/keys.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, type TestApp } from '../support/workflow-app.js';

/**
 * Measures what a finished 3-step run costs in Redis (the figure in docs/operations.md, "Retention and
 * memory"): NODE_OPTIONS=--experimental-vm-modules npx jest test/e2e/ops-memory.e2e.spec.ts
 */
const RUNS = 2_000;

@Workflow('checkout', { queue: 'default' })
@Injectable()
class CheckoutWorkflow {
  async execute(ctx: WorkflowContext<{ orderId: string; amount: number }>) {
    const charge = await ctx.step.run('charge', () => ({ chargeId: `ch_${ctx.input.orderId}`, amount: ctx.input.amount }));
    await ctx.step.run('reserve', () => ({ reserved: true }));
    await ctx.step.run('notify', () => 'sent');
    return { chargeId: charge.chargeId };
  }
}

describe('memory per finished run (measurement)', () => {
  let redis: TestRedis;
  let app: TestApp;
  let admin: Redis;
  const prefix = uniquePrefix('mem');

  beforeAll(async () => {
    redis = await redisUrlForTests();
    admin = redisFor(redis.url);
    app = await startApp({ connection: redis.url, prefix, worker: { concurrency: 50, reaperIntervalMs: 20 } }, [CheckoutWorkflow]);
  });

  afterAll(async () => {
    admin?.disconnect();
    await app?.close();
    await redis?.stop();
  });

  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(String(await admin.info('memory')))![1]);

  it(`a finished 3-step run takes a bounded number of bytes (${RUNS} runs, used_memory delta and MEMORY USAGE)`, async () => {
    const emitBatch = async (from: number, count: number) => {
      const handles = await Promise.all(
        Array.from({ length: count }, (_, i) => app.client.emit(CheckoutWorkflow, { orderId: `o-${from + i}`, amount: 4200 + i })),
      );
      await Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
      return handles.map((h) => h.id);
    };
    await emitBatch(0, 100); // warm-up: creates the shard's indexes and sets
    const before = await usedMemory();
    const ids: string[] = [];
    for (let done = 0; done < RUNS; done += 500) ids.push(...(await emitBatch(1_000 + done, 500)));
    const after = await usedMemory();
    const perRun = (after - before) / RUNS;

    const keys = new KeySpace(prefix);
    const root = keys.shardRoot({ queue: 'default', partition: 0 });
    const id = ids[ids.length - 1];
    const usage = async (key: string) => Number(await admin.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
    const [runHash, steps, history] = await Promise.all([usage(keys.run(root, id)), usage(keys.steps(root, id)), usage(keys.history(root, id))]);
    console.log(
      [
        `memory per finished 3-step run (${RUNS} runs, default key prefix length ${prefix.length}):`,
        `  used_memory delta: ${perRun.toFixed(0)} bytes per run (before ${before}, after ${after})`,
        `  MEMORY USAGE of one run: run hash ${runHash} + steps hash ${steps} + history list ${history} = ${runHash + steps + history} bytes;`,
        '  the rest of the delta is its entries in the status index and the expiry set',
      ].join('\n'),
    );
    expect(runHash + steps + history).toBeLessThan(perRun);
    expect(perRun).toBeLessThan(4_096);
  }, 120_000);
});
