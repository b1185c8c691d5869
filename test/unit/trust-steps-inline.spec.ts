/** runInline applies @Step's compensate and shouldRetry, ctx.step.run's shouldRetry, and a nested @Step's own retries. */
import { describe, expect, it } from '@jest/globals';
import type { LoggerService } from '@nestjs/common';
import { NonRetriableError, Step, Workflow, runInline, type WorkflowContext } from '../../lib/index.js';

const silent: LoggerService = { log() {}, error() {}, warn() {}, debug() {}, verbose() {} };

class Shop {
  released: unknown[][] = [];
  chargeCalls = 0;
  flakyCalls = 0;

  @Step({ name: 'reserve', compensate: 'release' })
  async reserve(sku: string) {
    return { reservation: `r-${sku}` };
  }

  async release(result: unknown, sku: string) {
    this.released.push([result, sku]);
  }

  @Step({ name: 'charge', retries: 5, shouldRetry: (error) => !(error as Error).message.includes('declined') })
  async charge() {
    this.chargeCalls += 1;
    throw new Error(this.chargeCalls === 1 ? 'network hiccup' : 'card declined');
  }

  @Step({ name: 'flaky', retries: 2 })
  async flaky() {
    this.flakyCalls += 1;
    if (this.flakyCalls < 3) throw new Error('flaky');
    return 'ok';
  }
}

@Workflow('inline-trust', { maxAttempts: 1 })
class ShopWorkflow {
  constructor(readonly shop: Shop) {}

  async execute(ctx: WorkflowContext<{ mode: string }>) {
    if (ctx.input.mode === 'nested') return ctx.step.run('outer', () => this.shop.flaky());
    if (ctx.input.mode === 'charge') return this.shop.charge();
    if (ctx.input.mode === 'run-should-retry') {
      let calls = 0;
      return ctx.step.run('inline', () => {
        calls += 1;
        throw new Error(`inline ${calls}`);
      }, { retries: 5, shouldRetry: (_error, attempt) => attempt < 2 });
    }
    await this.shop.reserve('sku-1');
    throw new NonRetriableError('boom');
  }
}

describe('runInline and the step options of 0.2', () => {
  it('compensates a @Step with its named method, result first', async () => {
    const workflow = new ShopWorkflow(new Shop());
    const result = await runInline(workflow, { input: { mode: 'saga' }, logger: silent });
    expect(result.succeeded).toBe(false);
    expect(workflow.shop.released).toEqual([[{ reservation: 'r-sku-1' }, 'sku-1']]);
    expect(result.steps.find((s) => s.name === 'reserve')?.status).toBe('compensated');
  });

  it('stops retrying when shouldRetry says no (@Step and ctx.step.run)', async () => {
    const workflow = new ShopWorkflow(new Shop());
    const charged = await runInline(workflow, { input: { mode: 'charge' }, logger: silent });
    expect(charged.error?.message).toBe('card declined');
    expect(workflow.shop.chargeCalls).toBe(2);
    const inline = await runInline(workflow, { input: { mode: 'run-should-retry' }, logger: silent });
    expect(inline.error?.message).toBe('inline 2');
    expect(inline.steps[0].attempts).toBe(2);
  });

  it('gives a @Step called inside ctx.step.run its own retries', async () => {
    const workflow = new ShopWorkflow(new Shop());
    const result = await runInline(workflow, { input: { mode: 'nested' }, logger: silent });
    expect(result.output).toBe('ok');
    expect(workflow.shop.flakyCalls).toBe(3);
    expect(result.steps.map((s) => s.name)).toEqual(['outer']);
  });
});
