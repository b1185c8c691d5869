import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { IsInt, IsString, Min } from 'class-validator';
import type { Redis } from 'ioredis';
import { InputValidationError, NonRetriableError, Workflow, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

class OrderInput {
  @IsString()
  orderId!: string;

  @IsInt()
  @Min(1)
  quantity!: number;

  summary(): string {
    return `${this.quantity} x ${this.orderId}`;
  }
}

let executions = 0;

@Workflow('dx-checkout', { input: OrderInput, maxAttempts: 3, backoff: { type: 'fixed', delayMs: 10 } })
@Injectable()
class CheckoutWorkflow {
  async execute(ctx: WorkflowContext<OrderInput>) {
    executions += 1;
    return { isInstance: ctx.input instanceof OrderInput, summary: ctx.input.summary(), keys: Object.keys(ctx.input).sort() };
  }
}

@Workflow('dx-stripping', { input: OrderInput, validation: { forbidNonWhitelisted: false } })
@Injectable()
class StrippingWorkflow {
  async execute(ctx: WorkflowContext<OrderInput>) {
    return Object.keys(ctx.input).sort();
  }
}

@Workflow('dx-permissive', { input: OrderInput, validation: { whitelist: false, forbidNonWhitelisted: false } })
@Injectable()
class PermissiveWorkflow {
  async execute(ctx: WorkflowContext<OrderInput>) {
    return Object.keys(ctx.input).sort();
  }
}

async function keysWithPrefix(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys.sort();
}

describe('input DTO validation (e2e, real Redis)', () => {
  let redis: TestRedis;
  let raw: Redis;
  let worker: TestApp;
  let producer: TestApp;
  const prefix = uniquePrefix('dxval');

  beforeAll(async () => {
    redis = await redisUrlForTests();
    raw = redisFor(redis.url);
    worker = await startApp({ connection: redis.url, prefix }, [CheckoutWorkflow, StrippingWorkflow, PermissiveWorkflow]);
    // An API process: no worker, and none of the workflow classes among its providers.
    producer = await startApp({ connection: redis.url, prefix, worker: false }, []);
  });

  afterAll(async () => {
    await producer?.close();
    await worker?.close();
    raw?.disconnect();
    await redis?.stop();
  });

  it('throws InputValidationError with the ValidationError[] and writes nothing to Redis', async () => {
    const before = await keysWithPrefix(raw, prefix);
    const invalid = await worker.client.emit(CheckoutWorkflow, { orderId: 'o1', quantity: 0 }).catch((e) => e);
    expect(invalid).toBeInstanceOf(InputValidationError);
    expect(invalid.errors.map((e: { property: string }) => e.property)).toEqual(['quantity']);
    expect(invalid.message).toContain('quantity');

    const extra = await worker.client
      .emit(CheckoutWorkflow, { orderId: 'o1', quantity: 1, isAdmin: true } as { orderId: string; quantity: number })
      .catch((e) => e);
    expect(extra).toBeInstanceOf(InputValidationError);
    expect(extra.errors[0].constraints).toHaveProperty('whitelistValidation');
    expect(await keysWithPrefix(raw, prefix)).toEqual(before);
  });

  it('hands the handler the validated DTO instance', async () => {
    const output = await worker.client.run(CheckoutWorkflow, { orderId: 'o2', quantity: 3 }, { timeoutMs: 10_000 });
    expect(output).toEqual({ isInstance: true, summary: '3 x o2', keys: ['orderId', 'quantity'] });
  });

  it('applies the workflow validation options at emit and in the worker alike', async () => {
    const input = { orderId: 'o3', quantity: 1, note: 'gift' } as { orderId: string; quantity: number };
    expect(await worker.client.run(StrippingWorkflow, input, { timeoutMs: 10_000 })).toEqual(['orderId', 'quantity']);
    // Kept by emit, so the worker must not refuse it either.
    expect(await worker.client.run(PermissiveWorkflow, input, { timeoutMs: 10_000 })).toEqual(['note', 'orderId', 'quantity']);
  });

  it('validates at emit with the class DTO in an app that does not have the workflow as a provider', async () => {
    const invalid = await producer.client.emit(CheckoutWorkflow, { orderId: 'o4', quantity: -1 }).catch((e) => e);
    expect(invalid).toBeInstanceOf(InputValidationError);
    const output = await producer.client.run(CheckoutWorkflow, { orderId: 'o4', quantity: 4 }, { timeoutMs: 10_000 });
    expect(output).toMatchObject({ isInstance: true, summary: '4 x o4' });
  });

  it('fails a run whose input bypassed validation (emitted by name) at once with NonRetriableError', async () => {
    const before = executions;
    // By name, an API app knows only what the worker registered in Redis: not the DTO, so it cannot validate.
    const handle = await producer.client.emit('dx-checkout', { orderId: 'o5', quantity: 'many' });
    const error: any = await handle.result({ timeoutMs: 10_000 }).catch((e: any) => e);
    expect(error).toBeInstanceOf(NonRetriableError);
    expect(error.message).toContain('quantity');
    await waitFor(async () => (await producer.client.getRun(handle.id))?.status === 'failed');
    expect(await producer.client.getRun(handle.id)).toMatchObject({ status: 'failed', attempt: 1 });
    expect(executions).toBe(before);
  });
});
