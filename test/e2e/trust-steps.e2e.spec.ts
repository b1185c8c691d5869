/**
 * @Step methods stay durable when their provider is replaced, keep their own retries and timeout inside
 * another step, and take `compensate` and `shouldRetry` (issue 24, item 7).
 */
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { NonRetriableError, Step, Workflow, WorkflowClient, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { useSuiteRedis } from '../support/workflow-app.js';

@Injectable()
class PaymentService {
  @Step({ name: 'create-intent' })
  async createIntent(orderId: string): Promise<{ id: string }> {
    return { id: `real-${orderId}` };
  }
}

@Workflow('trust-pay')
@Injectable()
class PayWorkflow {
  constructor(private readonly payments: PaymentService) {}

  async execute(ctx: WorkflowContext<{ orderId: string }>) {
    const intent = await this.payments.createIntent(ctx.input.orderId);
    await ctx.step.sleep('first-nap', 5);
    await ctx.step.sleep('second-nap', 5);
    await ctx.step.run('after', () => 'done');
    return intent;
  }
}

class FakePayments {
  calls = 0;
  async createIntent(orderId: string) {
    this.calls += 1;
    return { id: `class-fake-${orderId}` };
  }
}

const flakyCalls = { count: 0 };
const slowCalls = { count: 0 };

@Injectable()
class Flaky {
  @Step({ name: 'flaky', retries: 2 })
  async flaky(): Promise<string> {
    flakyCalls.count += 1;
    if (flakyCalls.count < 3) throw new Error(`flaky failure ${flakyCalls.count}`);
    return 'ok';
  }

  @Step({ name: 'slow', timeoutMs: 50 })
  async slow(): Promise<string> {
    slowCalls.count += 1;
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    return 'too late';
  }
}

@Workflow('trust-nested', { maxAttempts: 1 })
@Injectable()
class NestedWorkflow {
  constructor(private readonly flaky: Flaky) {}

  async execute(ctx: WorkflowContext<{ slow?: boolean }>) {
    if (ctx.input.slow) return ctx.step.run('outer-slow', () => this.flaky.slow());
    return ctx.step.run('outer', () => this.flaky.flaky());
  }
}

const released: unknown[][] = [];
const chargeCalls = { count: 0 };
const inlineCalls = { count: 0 };

@Injectable()
class Inventory {
  @Step({ name: 'reserve', compensate: 'release' })
  async reserve(sku: string, quantity: number) {
    return { reservation: `r-${sku}` };
  }

  async release(result: unknown, sku: string, quantity: number) {
    released.push([result, sku, quantity]);
  }

  @Step({ name: 'charge', retries: 5, shouldRetry: (error) => !(error as Error).message.includes('declined') })
  async charge() {
    chargeCalls.count += 1;
    throw new Error(chargeCalls.count === 1 ? 'network hiccup' : 'card declined');
  }
}

@Workflow('trust-saga', { maxAttempts: 1 })
@Injectable()
class SagaWorkflow {
  constructor(private readonly inventory: Inventory) {}

  async execute(ctx: WorkflowContext<{ mode: 'compensate' | 'charge' | 'inline-retry' }>) {
    if (ctx.input.mode === 'charge') return this.inventory.charge();
    if (ctx.input.mode === 'inline-retry') {
      return ctx.step.run(
        'inline',
        () => {
          inlineCalls.count += 1;
          throw new Error(`inline failure ${inlineCalls.count}`);
        },
        { retries: 5, shouldRetry: (_error, attempt) => attempt < 2 },
      );
    }
    await this.inventory.reserve('sku-1', 2);
    throw new NonRetriableError('out of luck');
  }
}

describe('@Step methods (e2e, private redis-server)', () => {
  const suite = useSuiteRedis();
  const closers: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  async function start(build: (builder: ReturnType<typeof Test.createTestingModule>) => ReturnType<typeof Test.createTestingModule> | { compile: () => ReturnType<ReturnType<typeof Test.createTestingModule>['compile']> }, providers: unknown[]) {
    const builder = Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: suite.redis.url, prefix: uniquePrefix('steps'), worker: { reaperIntervalMs: 20 } })],
      providers: providers as never[],
    });
    const moduleRef = await build(builder).compile();
    await moduleRef.init();
    closers.push(() => moduleRef.close());
    return { moduleRef, client: moduleRef.get(WorkflowClient) };
  }

  it('overrideProvider(...).useValue({ method: jest.fn() }) keeps the @Step durable: called once, recorded', async () => {
    const createIntent = jest.fn(async (orderId: string) => ({ id: `fake-${orderId}` }));
    const { client } = await start((b) => b.overrideProvider(PaymentService).useValue({ createIntent }), [PaymentService, PayWorkflow]);
    const handle = await client.emit(PayWorkflow, { orderId: 'o-1' });
    expect(await handle.result({ timeoutMs: 15_000 })).toEqual({ id: 'fake-o-1' });
    expect(createIntent).toHaveBeenCalledTimes(1);
    expect(createIntent).toHaveBeenCalledWith('o-1');
    const steps = await client.getRunSteps(handle.id);
    expect(steps.map((s) => [s.name, s.status, s.result])).toEqual([
      ['create-intent', 'succeeded', { id: 'fake-o-1' }],
      ['first-nap', 'succeeded', undefined],
      ['second-nap', 'succeeded', undefined],
      ['after', 'succeeded', 'done'],
    ]);
  }, 30_000);

  it('a { provide, useClass } replacement keeps the @Step durable too', async () => {
    const { client, moduleRef } = await start((b) => b, [{ provide: PaymentService, useClass: FakePayments }, PayWorkflow]);
    const handle = await client.emit(PayWorkflow, { orderId: 'o-2' });
    expect(await handle.result({ timeoutMs: 15_000 })).toEqual({ id: 'class-fake-o-2' });
    expect((moduleRef.get(PaymentService) as unknown as FakePayments).calls).toBe(1);
    expect((await client.getRunSteps(handle.id)).map((s) => s.name)).toContain('create-intent');
  }, 30_000);

  it('a @Step({ retries: 2 }) called inside ctx.step.run keeps its retries; the outer step holds the result', async () => {
    const { client } = await start((b) => b, [Flaky, NestedWorkflow]);
    flakyCalls.count = 0;
    const handle = await client.emit(NestedWorkflow, {});
    expect(await handle.result({ timeoutMs: 15_000 })).toBe('ok');
    expect(flakyCalls.count).toBe(3);
    const steps = await client.getRunSteps(handle.id);
    expect(steps.map((s) => [s.name, s.status, s.attempts, s.result])).toEqual([['outer', 'succeeded', 1, 'ok']]);
  }, 30_000);

  it('a @Step({ timeoutMs }) called inside ctx.step.run keeps its timeout', async () => {
    const { client } = await start((b) => b, [Flaky, NestedWorkflow]);
    const handle = await client.emit(NestedWorkflow, { slow: true });
    const started = Date.now();
    await expect(handle.result({ timeoutMs: 15_000 })).rejects.toThrow("Step 'slow' timed out after 50 ms.");
    expect(Date.now() - started).toBeLessThan(1_900);
  }, 30_000);

  it('@Step({ compensate }) calls the named method with the result, then the arguments, when the saga unwinds', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const { client } = await start((b) => b, [Inventory, SagaWorkflow]);
    released.length = 0;
    const handle = await client.emit(SagaWorkflow, { mode: 'compensate' });
    await expect(handle.result({ timeoutMs: 15_000 })).rejects.toThrow('out of luck');
    expect(released).toEqual([[{ reservation: 'r-sku-1' }, 'sku-1', 2]]);
    expect((await client.getRunSteps(handle.id)).map((s) => [s.name, s.status])).toEqual([['reserve', 'compensated']]);
  }, 30_000);

  it('shouldRetry ends the retries of a @Step and of ctx.step.run', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const { client } = await start((b) => b, [Inventory, SagaWorkflow]);
    chargeCalls.count = 0;
    const charge = await client.emit(SagaWorkflow, { mode: 'charge' });
    await expect(charge.result({ timeoutMs: 15_000 })).rejects.toThrow('card declined');
    expect(chargeCalls.count).toBe(2);
    inlineCalls.count = 0;
    const inline = await client.emit(SagaWorkflow, { mode: 'inline-retry' });
    await expect(inline.result({ timeoutMs: 15_000 })).rejects.toThrow('inline failure 2');
    expect(inlineCalls.count).toBe(2);
    expect((await client.getRunSteps(inline.id))[0].attempts).toBe(2);
  }, 30_000);

  it('refuses a compensate that names no method of the class, when the class is defined', () => {
    expect(() => {
      class Broken {
        @Step({ compensate: 'undo' })
        async act() {
          return 1;
        }
      }
      return Broken;
    }).toThrow("@Step({ compensate: 'undo' }) on Broken.act: Broken has no method of that name. Name a method of the same class.");
  });
});
