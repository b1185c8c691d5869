import { describe, expect, it } from '@jest/globals';
import { Injectable, type LoggerService } from '@nestjs/common';
import { IsInt, IsString, Min } from 'class-validator';
import {
  ChildWorkflowError,
  InputValidationError,
  NonDeterminismError,
  NonRetriableError,
  OnFailure,
  Step,
  TimeoutError,
  Workflow,
  WorkflowConfigurationError,
  currentStep,
  runInline,
  type OnFailureContext,
  type WorkflowContext,
} from '../../lib/index.js';

const silent: LoggerService = { log() {}, error() {}, warn() {}, debug() {}, verbose() {} };

class OrderInput {
  @IsString()
  orderId!: string;

  @IsInt()
  @Min(1)
  quantity!: number;

  describe(): string {
    return `${this.quantity} x ${this.orderId}`;
  }
}

@Injectable()
class Payments {
  calls: string[] = [];
  failuresLeft = 0;

  @Step({ name: 'capture-payment', retries: 2, backoff: { type: 'fixed', delayMs: 60_000 } })
  async capture(orderId: string, amount: number): Promise<{ id: string; at: Date; key?: string; attempt?: number }> {
    this.calls.push(`capture:${orderId}:${amount}`);
    if (this.failuresLeft > 0) {
      this.failuresLeft -= 1;
      throw new Error('card declined');
    }
    return { id: `ch_${orderId}`, at: new Date(0), key: currentStep()?.idempotencyKey, attempt: currentStep()?.attempt };
  }

  @Step()
  async refund(chargeId: string): Promise<void> {
    this.calls.push(`refund:${chargeId}`);
  }
}

@Workflow('inline-checkout', { input: OrderInput, maxAttempts: 3, backoff: { type: 'fixed', delayMs: 60_000 } })
@Injectable()
class CheckoutWorkflow {
  log: string[] = [];
  failOnAttempts: number[] = [];
  fatal = false;

  constructor(readonly payments: Payments) {}

  async execute(ctx: WorkflowContext<OrderInput>) {
    this.log.push(`attempt ${ctx.run.attempt}: ${ctx.input.describe()}`);
    const reserved = await ctx.step.run('reserve-stock', (s) => ({ key: s.idempotencyKey, qty: ctx.input.quantity }), {
      compensate: () => this.log.push('release-stock'),
    });
    const charge = await ctx.step.run('charge', () => this.payments.capture(ctx.input.orderId, 10), {
      compensate: (c) => this.log.push(`refund ${c.id}`),
    });
    await ctx.step.sleep('cool-down', 3_600_000);
    if (this.fatal) throw new NonRetriableError('order blocked');
    if (this.failOnAttempts.includes(ctx.run.attempt)) throw new Error(`boom on attempt ${ctx.run.attempt}`);
    return { reserved, charge };
  }

  @OnFailure()
  async failed(ctx: OnFailureContext<OrderInput>) {
    this.log.push(`onFailure ${ctx.error.message} ${JSON.stringify(ctx.input)} ${ctx.input.describe()}`);
  }
}

function checkout(): CheckoutWorkflow {
  return new CheckoutWorkflow(new Payments());
}

describe('runInline', () => {
  it('executes steps durably in order, JSON round-trips results and hands the handler the validated DTO instance', async () => {
    const workflow = checkout();
    const started = Date.now();
    const result = await runInline(workflow, { input: { orderId: 'o1', quantity: 2 }, runId: 'r1', logger: silent });
    expect(Date.now() - started).toBeLessThan(2_000); // the one-hour sleep returned at once
    expect(result.succeeded).toBe(true);
    expect(result.output).toEqual({
      reserved: { key: 'r1:0:reserve-stock', qty: 2 },
      // A Date is its ISO string on first execution too; nested @Step inside ctx.step.run is a plain call.
      charge: { id: 'ch_o1', at: '1970-01-01T00:00:00.000Z', key: 'r1:0:charge', attempt: 1 },
    });
    expect(workflow.log).toEqual(['attempt 1: 2 x o1']);
    expect(result.steps.map((s) => [s.name, s.occurrence, s.kind, s.status, s.attempts])).toEqual([
      ['reserve-stock', 0, 'step', 'succeeded', 1],
      ['charge', 0, 'step', 'succeeded', 1],
      ['cool-down', 0, 'sleep', 'succeeded', 1],
    ]);
    expect(workflow.payments.calls).toEqual(['capture:o1:10']);
  });

  it('rejects invalid input with InputValidationError before executing anything', async () => {
    const workflow = checkout();
    const error = await runInline(workflow, { input: { orderId: 'o1', quantity: 0 } }).catch((e) => e);
    expect(error).toBeInstanceOf(InputValidationError);
    expect(error.errors[0].property).toBe('quantity');
    const extra = await runInline(workflow, { input: { orderId: 'o1', quantity: 1, admin: true } as { orderId: string; quantity: number } }).catch((e) => e);
    expect(extra).toBeInstanceOf(InputValidationError);
    expect(extra.message).toContain('admin');
    expect(workflow.log).toEqual([]);
  });

  it('honours the workflow validation options (whitelist without forbidNonWhitelisted strips)', async () => {
    @Workflow('lenient', { input: OrderInput, validation: { forbidNonWhitelisted: false } })
    class Lenient {
      async execute(ctx: WorkflowContext<OrderInput>) {
        return { isInstance: ctx.input instanceof OrderInput, keys: Object.keys(ctx.input).sort() };
      }
    }
    const result = await runInline(new Lenient(), { input: { orderId: 'o', quantity: 1, admin: true } as { orderId: string; quantity: number } });
    expect(result.output).toEqual({ isInstance: true, keys: ['orderId', 'quantity'] });
  });

  it('retries a step within its retries without waiting for its backoff', async () => {
    const workflow = checkout();
    workflow.payments.failuresLeft = 2;
    const started = Date.now();
    const result = await runInline(workflow, { input: { orderId: 'o2', quantity: 1 }, runId: 'r2', logger: silent });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(result.succeeded).toBe(true);
    // The capture-payment @Step ran inside the 'charge' step, so 'charge' is the durable step.
    expect(workflow.payments.calls).toEqual(['capture:o2:10', 'capture:o2:10', 'capture:o2:10']);
    expect((result.output as any).charge.attempt).toBe(3);
  });

  it('replays a retried run from recorded step results, then compensates in reverse order and calls @OnFailure', async () => {
    const workflow = checkout();
    workflow.failOnAttempts = [1, 2, 3];
    const result = await runInline(workflow, { input: { orderId: 'o3', quantity: 1 }, logger: silent });
    expect(result.succeeded).toBe(false);
    expect(result.attempts).toBe(3);
    expect(result.error?.message).toBe('boom on attempt 3');
    expect(workflow.payments.calls).toEqual(['capture:o3:10']); // replays returned the recorded charge
    expect(workflow.log).toEqual([
      'attempt 1: 1 x o3',
      'attempt 2: 1 x o3',
      'attempt 3: 1 x o3',
      'refund ch_o3',
      'release-stock',
      'onFailure boom on attempt 3 {"orderId":"o3","quantity":1} 1 x o3',
    ]);
    expect(result.steps.map((s) => [s.name, s.status])).toEqual([
      ['reserve-stock', 'compensated'],
      ['charge', 'compensated'],
      ['cool-down', 'succeeded'],
    ]);
  });

  it('tries a throwing compensation three times, marks the step compensated and keeps the run error', async () => {
    let tries = 0;
    @Workflow('bad-compensation', { maxAttempts: 1 })
    class BadCompensation {
      async execute(ctx: WorkflowContext) {
        await ctx.step.run('book', () => 'booked', {
          compensate: () => {
            tries += 1;
            throw new Error('cannot cancel booking');
          },
        });
        throw new Error('later step failed');
      }
    }
    const result = await runInline(new BadCompensation(), { input: {}, logger: silent });
    expect(tries).toBe(3);
    expect(result.error?.message).toBe('later step failed');
    expect(result.steps[0]).toMatchObject({ name: 'book', status: 'compensated' });
    expect(result.steps[0].compensationError?.message).toBe('cannot cancel booking');
  });

  it('succeeds on a later attempt and fails at once on NonRetriableError', async () => {
    const retried = checkout();
    retried.failOnAttempts = [1];
    const ok = await runInline(retried, { input: { orderId: 'o4', quantity: 1 }, logger: silent });
    expect(ok).toMatchObject({ succeeded: true, attempts: 2 });

    const fatal = checkout();
    fatal.fatal = true;
    const failed = await runInline(fatal, { input: { orderId: 'o5', quantity: 1 }, logger: silent });
    expect(failed.attempts).toBe(1);
    expect(failed.error).toBeInstanceOf(NonRetriableError);
    expect(fatal.log.at(-1)).toContain('onFailure order blocked');
  });

  it('replaces @Step methods and ctx.step.run by step name, with values or functions', async () => {
    @Workflow('overridden')
    class Overridden {
      constructor(private readonly payments: Payments) {}
      async execute(ctx: WorkflowContext) {
        const charge = await this.payments.capture('o6', 25);
        const quote = await this.payments.capture('o6', 30);
        const shipped = await ctx.step.run('ship', () => 'real shipping');
        return { charge, quote, shipped };
      }
    }
    const payments = new Payments();
    const result = await runInline(new Overridden(payments), {
      input: undefined,
      runId: 'r6',
      stepOverrides: {
        'capture-payment': (orderId: string, amount: number) => ({ id: `fake_${orderId}_${amount}`, key: currentStep()?.idempotencyKey }),
        ship: { trackingId: 'T1' },
      },
    });
    expect(result.output).toEqual({
      charge: { id: 'fake_o6_25', key: 'r6:0:capture-payment' },
      quote: { id: 'fake_o6_30', key: 'r6:1:capture-payment' },
      shipped: { trackingId: 'T1' },
    });
    expect(payments.calls).toEqual([]);
    expect(result.steps.map((s) => [s.name, s.occurrence, s.kind, s.overridden])).toEqual([
      ['capture-payment', 0, 'method', true],
      ['capture-payment', 1, 'method', true],
      ['ship', 0, 'step', true],
    ]);
  });

  it('applies retries to an override that throws, and fails the step with a timeout as the engine does', async () => {
    let calls = 0;
    const workflow = new CheckoutWorkflow(new Payments());
    const result = await runInline(workflow, {
      input: { orderId: 'o7', quantity: 1 },
      maxAttempts: 1,
      logger: silent,
      stepOverrides: {
        charge: () => {
          calls += 1;
          throw new Error('declined');
        },
      },
    });
    expect(calls).toBe(1); // ctx.step.run('charge') has no retries
    expect(result.steps[1]).toMatchObject({ name: 'charge', status: 'failed', attempts: 1, overridden: true });
    expect(result.steps[1].error?.message).toBe('declined');
    expect(workflow.log).toEqual(['attempt 1: 1 x o7', 'release-stock', 'onFailure declined {"orderId":"o7","quantity":1} 1 x o7']);

    @Workflow('slow')
    class Slow {
      async execute(ctx: WorkflowContext) {
        return ctx.step.run('hang', () => new Promise(() => undefined), { timeoutMs: 50, retries: 1 });
      }
    }
    const slow = await runInline(new Slow(), { input: {}, maxAttempts: 1, logger: silent });
    expect(slow.error).toBeInstanceOf(TimeoutError);
    expect(slow.steps[0]).toMatchObject({ name: 'hang', status: 'failed', attempts: 2 });
  });

  it('answers waitForEvent from eventOverrides, by event:key first, and with null when missing', async () => {
    @Workflow('events')
    class Events {
      async execute(ctx: WorkflowContext) {
        const approved = await ctx.step.waitForEvent('approval', { event: 'approved', key: 'o8', timeoutMs: 1_000 });
        const other = await ctx.step.waitForEvent('approval-other', { event: 'approved', key: 'zz' });
        const missing = await ctx.step.waitForEvent('shipped', { event: 'shipped', timeoutMs: 10 });
        return { approved, other, missing };
      }
    }
    const result = await runInline(new Events(), {
      input: {},
      eventOverrides: { 'approved:o8': { by: 'alice', at: new Date(0) }, approved: { by: 'anyone' } },
    });
    expect(result.output).toEqual({ approved: { by: 'alice', at: '1970-01-01T00:00:00.000Z' }, other: { by: 'anyone' }, missing: null });
    expect(result.steps.map((s) => [s.name, s.kind, s.overridden])).toEqual([
      ['approval', 'event', true],
      ['approval-other', 'event', true],
      ['shipped', 'event', false],
    ]);
  });

  describe('child workflows', () => {
    @Workflow('child-label')
    class LabelWorkflow {
      async execute(ctx: WorkflowContext<{ orderId: string; fail?: boolean }>) {
        const label = await ctx.step.run('print-label', () => `label-${ctx.input.orderId}`);
        if (ctx.input.fail) throw new NonRetriableError('printer on fire');
        return { label, parentId: ctx.run.parentId };
      }
    }

    @Workflow('child-with-deps')
    class NeedsDeps {
      constructor(private readonly payments: Payments) {}
      async execute(ctx: WorkflowContext<{ orderId: string }>) {
        return this.payments.capture(ctx.input.orderId, 1);
      }
    }

    @Workflow('parent')
    class Parent {
      async execute(ctx: WorkflowContext<{ fail?: boolean; byName?: boolean; deps?: boolean }>) {
        const label = await ctx.step.runWorkflow('label', LabelWorkflow, { orderId: 'o9', fail: ctx.input.fail });
        const emitted = await ctx.step.emitWorkflow('label-async', LabelWorkflow, { orderId: 'o10' });
        const named = ctx.input.byName ? await ctx.step.runWorkflow('by-name', 'child-label', { orderId: 'n' }) : undefined;
        const charged = ctx.input.deps ? await ctx.step.runWorkflow('charge-child', NeedsDeps, { orderId: 'd' }) : undefined;
        return { label, emitted, named, charged };
      }
    }

    it('runs a child class inline, records it as a step with its own result, and returns its output', async () => {
      const result = await runInline(new Parent(), { input: {}, runId: 'p1' });
      expect(result.succeeded).toBe(true);
      const output = result.output as any;
      expect(output.label).toEqual({ label: 'label-o9', parentId: 'p1' });
      expect(typeof output.emitted).toBe('string');
      expect(result.steps.map((s) => [s.name, s.kind, s.status])).toEqual([
        ['label', 'child', 'succeeded'],
        ['label-async', 'child-emit', 'succeeded'],
      ]);
      expect(result.steps[1].child).toMatchObject({ runId: output.emitted, succeeded: true, output: { label: 'label-o10', parentId: 'p1' } });
      expect(result.steps[0].child?.steps.map((s) => s.name)).toEqual(['print-label']);
    });

    it('rejects runWorkflow with ChildWorkflowError whose cause is the child error', async () => {
      const result = await runInline(new Parent(), { input: { fail: true }, maxAttempts: 1, logger: silent });
      expect(result.error).toBeInstanceOf(ChildWorkflowError);
      expect(result.error?.message).toContain('printer on fire');
      expect((result.error as ChildWorkflowError).cause).toBeInstanceOf(NonRetriableError);
    });

    it('takes a child from stepOverrides or options.workflows, and refuses a bare name it cannot resolve', async () => {
      const overridden = await runInline(new Parent(), {
        input: { byName: true },
        stepOverrides: { 'by-name': (input: { orderId: string }) => ({ label: `fake-${input.orderId}` }), 'label-async': 'child-run-1' },
      });
      expect(overridden.output).toMatchObject({ named: { label: 'fake-n' }, emitted: 'child-run-1' });

      const viaInstance = await runInline(new Parent(), { input: { byName: true, deps: true }, workflows: [new LabelWorkflow(), new NeedsDeps(new Payments())] });
      expect(viaInstance.output).toMatchObject({ named: { label: 'label-n' }, charged: { id: 'ch_d' } });

      const unresolved = await runInline(new Parent(), { input: { byName: true } }).catch((e) => e);
      expect(unresolved).toBeInstanceOf(WorkflowConfigurationError);
      expect(unresolved.message).toContain("override step 'by-name'");

      const needsDeps = await runInline(new Parent(), { input: { deps: true } }).catch((e) => e);
      expect(needsDeps).toBeInstanceOf(WorkflowConfigurationError);
      expect(needsDeps.message).toContain('options.workflows');
    });
  });

  it('fails with NonDeterminismError when a replay asks for a different step than was recorded', async () => {
    @Workflow('changing', { maxAttempts: 2 })
    class Changing {
      constructor(private readonly payments: Payments) {}
      async execute(ctx: WorkflowContext) {
        await this.payments.capture(ctx.run.attempt === 1 ? 'a' : 'b', 1);
        throw new Error('retry me');
      }
    }
    const result = await runInline(new Changing(new Payments()), { input: {}, logger: silent });
    expect(result.attempts).toBe(2);
    expect(result.error).toBeInstanceOf(NonDeterminismError);
    expect(result.error?.message).toContain('capture-payment');
  });

  it('refuses a step result that is not JSON, without retrying the run', async () => {
    @Workflow('bad-result')
    class BadResult {
      async execute(ctx: WorkflowContext) {
        return ctx.step.run('big', () => 10n);
      }
    }
    const result = await runInline(new BadResult(), { input: {}, logger: silent });
    expect(result).toMatchObject({ succeeded: false, attempts: 1 });
    expect(result.error?.message).toContain('BigInt');
  });
});
