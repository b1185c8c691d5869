/**
 * ctx.step.redis: the commands a step queues run inside the call that commits it. Replies are recorded
 * and replayed, guards make check-then-act atomic, bad input changes nothing, a stale worker is refused,
 * and a worker SIGKILLed around the commit leaves the stock exactly right (a plain step does not).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Cluster } from 'ioredis';
import {
  InvalidArgumentError,
  NonRetriableError,
  RedisStepGuardError,
  Workflow,
  type WorkflowContext,
} from '../../lib/index.js';
import { monitorCommands } from '../support/redis-monitor.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { reserveUnderCrashes } from '../support/stock-crashes.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';
import { compileFixtures } from '../support/worker-process.js';

const suite = useSuiteRedis();
const data = uniquePrefix('shop');
const enginePrefix = uniquePrefix('rs');

interface Order {
  order: string;
  sku: string;
  qty: number;
}

@Workflow('checkout-redis', { maxAttempts: 1 })
@Injectable()
class CheckoutWorkflow {
  static executions = 0;

  async execute(ctx: WorkflowContext<Order>) {
    CheckoutWorkflow.executions += 1;
    const { order, sku, qty } = ctx.input;
    const replies = await ctx.step.redis('reserve', (tx) => {
      tx.decrby(`${data}:stock:${sku}`, qty).hset(`${data}:orders`, order, 'reserved').get(`${data}:stock:${sku}`).get(`${data}:missing`);
    });
    await ctx.step.sleep('settle', 30); // the run parks: the wake replays 'reserve' from its record
    return replies;
  }
}

@Workflow('guarded-redis', { maxAttempts: 1 })
@Injectable()
class GuardedWorkflow {
  async execute(ctx: WorkflowContext<{ expected: string }>) {
    try {
      await ctx.step.redis('ship', (tx) => {
        tx.expect(`${data}:status`, ctx.input.expected).set(`${data}:status`, 'shipped').incr(`${data}:shipments`);
      });
      return 'shipped';
    } catch (error) {
      if (error instanceof RedisStepGuardError) return 'guard held it back';
      throw error;
    }
  }
}

@Workflow('bad-redis', { maxAttempts: 1 })
@Injectable()
class BadInputWorkflow {
  async execute(ctx: WorkflowContext<{ mode: string }>) {
    const key = `${data}:bad`;
    return ctx.step.redis('bad', (tx) => {
      tx.set(`${data}:bad-first`, 'written?');
      if (ctx.input.mode === 'fraction') tx.incrby(key, 1.5);
      if (ctx.input.mode === 'engine-key') tx.set(`${enginePrefix}:r:x`, 'x');
      if (ctx.input.mode === 'wrong-type') tx.hset(`${data}:a-hash`, 'f', 'v').incr(`${data}:a-hash`);
      if (ctx.input.mode === 'counter-after-set') tx.set(key, 'abc').incr(key);
      if (ctx.input.mode === 'script') (tx as unknown as Record<string, (k: string) => void>).eval(key);
      if (ctx.input.mode === 'async') return Promise.resolve() as never;
    });
  }
}

@Workflow('holding-redis', { maxAttempts: 1 })
@Injectable()
class HoldingWorkflow {
  static release?: () => void;

  async execute(ctx: WorkflowContext) {
    await ctx.step.run('hold', () => new Promise<void>((resolve) => (HoldingWorkflow.release = resolve)));
  }
}

@Workflow('two-steps-cost', { maxAttempts: 1 })
@Injectable()
class TwoStepsWorkflow {
  async execute(ctx: WorkflowContext<{ redis: boolean }>) {
    const first = ctx.input.redis
      ? await ctx.step.redis('first', (tx) => tx.incr(`${data}:cost`))
      : await ctx.step.run('first', () => suite.direct.incr(`${data}:cost`));
    return ctx.step.run('second', () => first);
  }
}

@Workflow('saga-redis', { maxAttempts: 1 })
@Injectable()
class SagaWorkflow {
  async execute(ctx: WorkflowContext<{ order: string }>) {
    const stock = `${data}:saga-stock`;
    await ctx.step.redis('reserve', (tx) => tx.decrby(stock, 2).hset(`${data}:saga-orders`, ctx.input.order, 'reserved'), {
      compensate: (tx, replies) => tx.incrby(stock, 2).hset(`${data}:saga-orders`, ctx.input.order, `released at ${String(replies[0])}`),
    });
    await ctx.step.run('charge', () => {
      throw new NonRetriableError('card declined');
    });
  }
}

describe('Redis steps', () => {
  let app: TestApp;

  beforeAll(async () => {
    // without warm executions (executionCache), so that a wake replays the handler and its Redis steps' replies
    app = await startApp({ connection: suite.redis.url, prefix: enginePrefix, executionCache: false }, [CheckoutWorkflow, GuardedWorkflow, BadInputWorkflow, HoldingWorkflow, TwoStepsWorkflow, SagaWorkflow]);
    suite.apps.push(app);
  });

  it('runs the commands in the commit call and replays their replies without running them again', async () => {
    await suite.direct.set(`${data}:stock:sku-1`, 10);
    const handle = await app.client.emit(CheckoutWorkflow, { order: 'o-1', sku: 'sku-1', qty: 3 });
    expect(await handle.result({ timeoutMs: 10_000 })).toEqual([7, 1, '7', null]);
    expect(CheckoutWorkflow.executions).toBeGreaterThanOrEqual(2); // the handler ran again after the sleep
    expect(await suite.direct.get(`${data}:stock:sku-1`)).toBe('7');
    expect(await suite.direct.hget(`${data}:orders`, 'o-1')).toBe('reserved');
    const steps = await app.client.getRunSteps(handle.id);
    expect(steps.find((s) => s.name === 'reserve')).toMatchObject({ kind: 'redis', status: 'succeeded', result: [7, 1, '7', null] });
  });

  it('writes nothing when a guard does not hold, and fails the step with RedisStepGuardError', async () => {
    await suite.direct.set(`${data}:status`, 'paid');
    expect(await app.client.run(GuardedWorkflow, { expected: 'pending' }, { timeoutMs: 10_000 })).toBe('guard held it back');
    expect(await suite.direct.get(`${data}:status`)).toBe('paid');
    expect(await suite.direct.get(`${data}:shipments`)).toBeNull();
    expect(await app.client.run(GuardedWorkflow, { expected: 'paid' }, { timeoutMs: 10_000 })).toBe('shipped');
    expect(await suite.direct.get(`${data}:status`)).toBe('shipped');
    expect(await suite.direct.get(`${data}:shipments`)).toBe('1');
  });

  it('runs a compensation as one call that also marks the step compensated', async () => {
    await suite.direct.set(`${data}:saga-stock`, 5);
    const handle = await app.client.emit(SagaWorkflow, { order: 's-1' });
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('card declined');
    expect(await suite.direct.get(`${data}:saga-stock`)).toBe('5');
    expect(await suite.direct.hget(`${data}:saga-orders`, 's-1')).toBe('released at 3');
    const steps = await app.client.getRunSteps(handle.id);
    expect(steps.find((s) => s.name === 'reserve')?.status).toBe('compensated');
  });

  it.each([
    ['fraction', InvalidArgumentError, /whole number/],
    ['engine-key', InvalidArgumentError, /belong to the workflow engine/],
    ['counter-after-set', InvalidArgumentError, /sets earlier/],
    ['script', TypeError, /eval/],
    ['async', InvalidArgumentError, /returned a promise/],
    ['wrong-type', Error, /WRONGTYPE/],
  ])('refuses %s and writes nothing', async (mode, type, message) => {
    await suite.direct.del(`${data}:bad-first`, `${data}:a-hash`);
    const handle = await app.client.emit(BadInputWorkflow, { mode });
    const error = await handle.result({ timeoutMs: 10_000 }).then(() => undefined, (e: Error) => e);
    expect(error?.message).toMatch(message);
    if (type !== Error) expect((await app.client.getRun(handle.id))?.error?.name).toBe(type.name);
    expect(await suite.direct.get(`${data}:bad-first`)).toBeNull();
    expect(await suite.direct.exists(`${data}:a-hash`)).toBe(0);
  });

  it('a repeated commit call runs nothing again, and a stale token is refused', async () => {
    HoldingWorkflow.release = undefined;
    const handle = await app.client.emit(HoldingWorkflow, {});
    await waitFor(() => HoldingWorkflow.release !== undefined);
    const root = `{${enginePrefix}:default:0}`;
    const token = (await suite.direct.hget(`${root}:r:${handle.id}`, 'tok'))!;
    const key = `${data}:repeat`;
    const call = (withToken: string) =>
      suite.direct.call('FCALL', 'wf1_commit_redis_step', '2', root, key, handle.id, withToken, '0:by-hand', '{"k":"redis"', '{"k":"redis"}', 'commit', '0', '1', 'incr', '2');
    expect(await call(token)).toEqual([1, expect.any(Number), '[1]']);
    expect(await call(token)).toEqual([2, expect.stringMatching(/\|S\|\{"k":"redis","r":\[1\]\}$/)]);
    expect(await call(`1${token}`)).toEqual([0, expect.stringMatching(/NOT_EXECUTING|TOKEN/)]);
    expect(await suite.direct.get(key)).toBe('1');
    HoldingWorkflow.release!();
    await handle.result({ timeoutMs: 10_000 });
  });

  it('costs no more calls than a plain step', async () => {
    const callsOf = async (redis: boolean) => {
      let id = '';
      const seen = await monitorCommands(suite.redis.url, async () => {
        const handle = await app.client.emit(TwoStepsWorkflow, { redis });
        id = handle.id;
        await handle.result({ timeoutMs: 10_000 });
      });
      return seen.filter((c) => c.source !== 'lua' && c.args[0].toLowerCase() === 'fcall' && c.args.includes(id)).map((c) => c.args[1]);
    };
    const plain = await callsOf(false);
    const viaRedis = await callsOf(true);
    expect(plain.length).toBeGreaterThan(0);
    expect(viaRedis).toContain('wf1_commit_redis_step');
    expect(viaRedis.length).toBeLessThanOrEqual(plain.length);
  });

  it('exactly once under SIGKILL around the commit; a plain step shows duplicates', async () => {
    compileFixtures();
    const common = { direct: suite.direct, redisUrl: suite.redis.url, initialStock: 100, timeoutMs: 90_000 };
    const viaRedis = await reserveUnderCrashes({ ...common, prefix: uniquePrefix('stock'), mode: 'redis', runs: 2 });
    expect(viaRedis.statuses).toEqual(['succeeded', 'succeeded']);
    expect(viaRedis.kills).toBe(2); // one before the commit call, one after it
    expect(viaRedis).toMatchObject({ stock: 98, reserved: 2 });

    const plain = await reserveUnderCrashes({ ...common, prefix: uniquePrefix('stock'), mode: 'plain', runs: 2 });
    expect(plain.kills).toBe(2);
    // the run killed after its writes and before the step's commit wrote them twice
    expect(plain).toMatchObject({ stock: 97, reserved: 2 });
  }, 120_000);
});

describe('Redis steps on a Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;

  @Workflow('cluster-redis-step', { maxAttempts: 1 })
  @Injectable()
  class ClusterStepWorkflow {
    async execute(ctx: WorkflowContext<{ useTxKey: boolean }>) {
      return ctx.step.redis('count', (tx) => {
        const key = ctx.input.useTxKey ? tx.key('visits') : 'visits';
        tx.incr(key).get(key);
      });
    }
  }

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await startApp({ connection: { nodes: cluster.nodes }, prefix: uniquePrefix('rsc') } as never, [ClusterStepWorkflow]);
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('runs a step whose keys are in its run slot, and refuses one whose are not before writing', async () => {
    expect(await app.client.run(ClusterStepWorkflow, { useTxKey: true }, { timeoutMs: 10_000 })).toEqual([1, '1']);
    const refused = await app.client.emit(ClusterStepWorkflow, { useTxKey: false });
    await expect(refused.result({ timeoutMs: 10_000 })).rejects.toThrow(/tx.key\("visits"\)/);
    const direct = new Cluster(cluster.nodes);
    try {
      expect(await direct.get('visits')).toBeNull();
    } finally {
      direct.disconnect();
    }
  });
});
