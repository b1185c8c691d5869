import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import {
  NonDeterminismError,
  NonRetriableError,
  OnFailure,
  TimeoutError,
  Step,
  Workflow,
  currentStep,
  type OnFailureContext,
  type WorkflowContext,
} from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, type TestApp } from '../support/workflow-app.js';

let redis: TestRedis;
let counters: Redis;
const counterKey = uniquePrefix('calls');

async function count(name: string): Promise<number> {
  return Number((await counters.hget(counterKey, name)) ?? 0);
}

@Injectable()
class PaymentsService {
  @Step({ name: 'capture-payment' })
  async capture(orderId: string): Promise<{ id: string; at: Date; key: string | undefined }> {
    await counters.hincrby(counterKey, `capture:${orderId}`, 1);
    return { id: `ch_${orderId}`, at: new Date(0), key: currentStep()?.idempotencyKey };
  }

  @Step()
  async flaky(orderId: string): Promise<string> {
    const n = await counters.hincrby(counterKey, `flaky:${orderId}`, 1);
    if (n < 3) throw new Error(`flaky failure ${n}`);
    return `ok after ${n}`;
  }
}

interface CheckoutInput {
  orderId: string;
}

@Workflow('checkout', { maxAttempts: 2, backoff: { type: 'fixed', delayMs: 10 } })
@Injectable()
class CheckoutWorkflow {
  constructor(private readonly payments: PaymentsService) {}

  async execute(ctx: WorkflowContext<CheckoutInput>) {
    const reserved = await ctx.step.run('reserve', async (s) => {
      await counters.hincrby(counterKey, `reserve:${ctx.input.orderId}`, 1);
      return { reserved: true, key: s.idempotencyKey };
    });
    const charge = await this.payments.capture(ctx.input.orderId);
    const flaky = await ctx.step.run('flaky', () => this.payments.flaky(ctx.input.orderId), { retries: 5 });
    if (ctx.input.orderId.startsWith('fail-once') && ctx.run.attempt === 1) throw new Error('boom on attempt 1');
    return { reserved, charge, flaky, attempt: ctx.run.attempt };
  }
}

@Workflow('always-fails', { maxAttempts: 3, backoff: { type: 'fixed', delayMs: 5 } })
@Injectable()
class AlwaysFailsWorkflow {
  async execute(ctx: WorkflowContext<{ id: string; fatal?: boolean }>) {
    await counters.hincrby(counterKey, `attempt:${ctx.input.id}`, 1);
    if (ctx.input.fatal) throw new NonRetriableError('do not retry me');
    throw new Error(`failure on attempt ${ctx.run.attempt}`);
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<{ id: string }>) {
    await counters.hincrby(counterKey, `onFailure:${ctx.input.id}`, 1);
    await counters.hset(counterKey, `onFailureError:${ctx.input.id}`, ctx.error.message);
  }
}

@Injectable()
class SlowService {
  @Step({ name: 'slow-call', timeoutMs: 100, retries: 2, backoff: { type: 'fixed', delayMs: 20 } })
  async call(id: string): Promise<string> {
    const step = currentStep()!;
    const n = await counters.hincrby(counterKey, `slow:${id}`, 1);
    if (n < 3) {
      // too slow: the step's timeout aborts its signal
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 1_000);
        step.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          void counters.hset(counterKey, `slow-aborted:${id}:${n}`, (step.signal.reason as Error).name);
          resolve(undefined);
        });
      });
    }
    return `attempt ${step.attempt}`;
  }
}

@Workflow('timeouts', { maxAttempts: 1 })
@Injectable()
class TimeoutsWorkflow {
  constructor(private readonly slow: SlowService) {}
  async execute(ctx: WorkflowContext<{ id: string; never?: boolean }>) {
    if (ctx.input.never) {
      return ctx.step.run('never', () => new Promise((resolve) => setTimeout(resolve, 2_000)), { timeoutMs: 50 });
    }
    return this.slow.call(ctx.input.id);
  }
}

let variant = 'a';
@Workflow('changing')
@Injectable()
class ChangingWorkflow {
  constructor(private readonly payments: PaymentsService) {}
  async execute(ctx: WorkflowContext<{ id: string }>) {
    // The code version is fixed for the whole attempt: the test switches it while attempt 1 runs.
    const version = variant;
    await this.payments.capture(version === 'a' ? ctx.input.id : `${ctx.input.id}-other`);
    if (version === 'a') throw new Error('first attempt fails so that the run replays');
    return 'done';
  }
}

describe('durable steps, retries and failures (e2e, real Redis)', () => {
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    counters = redisFor(redis.url);
    app = await startApp({ connection: redis.url, prefix: uniquePrefix('steps') }, [
      PaymentsService,
      CheckoutWorkflow,
      AlwaysFailsWorkflow,
      ChangingWorkflow,
      SlowService,
      TimeoutsWorkflow,
    ]);
  });

  afterAll(async () => {
    await app?.close();
    counters?.disconnect();
    await redis?.stop();
  });

  it('runs steps once, returns JSON round-tripped values and exposes stable idempotency keys', async () => {
    const handle = await app.client.emit(CheckoutWorkflow, { orderId: 'o1' });
    const output = (await handle.result({ timeoutMs: 10_000 })) as any;
    expect(output.charge).toEqual({ id: 'ch_o1', at: '1970-01-01T00:00:00.000Z', key: `${handle.id}:0:capture-payment` });
    expect(output.reserved).toEqual({ reserved: true, key: `${handle.id}:0:reserve` });
    expect(output.flaky).toBe('ok after 3');
    expect(await count('reserve:o1')).toBe(1);
    expect(await count('capture:o1')).toBe(1);

    const run = await app.client.getRun(handle.id);
    expect(run).toMatchObject({ id: handle.id, workflow: 'checkout', queue: 'default', status: 'succeeded', attempt: 1, input: { orderId: 'o1' } });
    expect(run?.finishedAt).toBeDefined();
    const steps = await app.client.getRunSteps(handle.id);
    expect(steps.map((s) => [s.name, s.occurrence, s.status])).toEqual([
      ['reserve', 0, 'succeeded'],
      ['capture-payment', 0, 'succeeded'],
      ['flaky', 0, 'succeeded'],
    ]);
    expect(steps[2].attempts).toBe(3);
  });

  it('replays a retried run without executing committed steps again', async () => {
    const output = (await app.client.run(CheckoutWorkflow, { orderId: 'fail-once-1' }, { timeoutMs: 10_000 })) as any;
    expect(output.attempt).toBe(2);
    expect(await count('reserve:fail-once-1')).toBe(1);
    expect(await count('capture:fail-once-1')).toBe(1);
    expect(await count('flaky:fail-once-1')).toBe(3);
  });

  it('retries up to maxAttempts, then runs @OnFailure once and rejects result() with the error', async () => {
    const handle = await app.client.emit('always-fails', { id: 'x1' });
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('failure on attempt 3');
    expect(await count('attempt:x1')).toBe(3);
    expect(await count('onFailure:x1')).toBe(1);
    expect(await counters.hget(counterKey, 'onFailureError:x1')).toBe('failure on attempt 3');
    const run = await app.client.getRun(handle.id);
    expect(run).toMatchObject({ status: 'failed', attempt: 3, error: { name: 'Error', message: 'failure on attempt 3' } });
  });

  it('fails at once on NonRetriableError', async () => {
    const handle = await app.client.emit(AlwaysFailsWorkflow, { id: 'x2', fatal: true });
    const error = await handle.result({ timeoutMs: 10_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(NonRetriableError);
    expect(error.message).toBe('do not retry me');
    expect(await count('attempt:x2')).toBe(1);
    expect(await count('onFailure:x2')).toBe(1);
  });

  it('times steps out (signal aborted with TimeoutError) and retries them with backoff', async () => {
    const started = Date.now();
    expect(await app.client.run(TimeoutsWorkflow, { id: 't1' }, { timeoutMs: 10_000 })).toBe('attempt 3');
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await counters.hget(counterKey, 'slow-aborted:t1:1')).toBe('TimeoutError');
    expect(await counters.hget(counterKey, 'slow-aborted:t1:2')).toBe('TimeoutError');
    const [step] = await app.client.getRunSteps((await app.client.listRuns({ workflow: 'timeouts' })).runs[0].id);
    expect(step).toMatchObject({ name: 'slow-call', status: 'succeeded', attempts: 3 });
    const error = (await app.client.run(TimeoutsWorkflow, { id: 't2', never: true }, { timeoutMs: 10_000 }).catch((e) => e)) as Error;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toContain("Step 'never' timed out after 50 ms");
  });

  it('fails with NonDeterminismError when a replay asks for a different step than was recorded', async () => {
    variant = 'a';
    const handle = await app.client.emit(ChangingWorkflow, { id: 'nd1' });
    // The first attempt records capture-payment(nd1) and fails; switch the code before the retry.
    await new Promise<void>((resolve) => {
      const check = async () => ((await count('capture:nd1')) >= 1 ? resolve() : setTimeout(check, 5));
      void check();
    });
    variant = 'b';
    const error = await handle.result({ timeoutMs: 10_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect(error.message).toContain('capture-payment');
    expect(await count('capture:nd1-other')).toBe(0);
  });
});
