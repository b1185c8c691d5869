/**
 * runInline's `faults`: a crash after a step, a duplicate delivery and a lost lease make a step run
 * again, so a non-idempotent step shows its duplicate effect and an idempotent one does not.
 */
import { describe, expect, it } from '@jest/globals';
import type { LoggerService } from '@nestjs/common';
import { Step, Workflow, WorkflowConfigurationError, currentStep, runInline, type WorkflowContext } from '../../lib/index.js';

const silent: LoggerService = { log() {}, error() {}, warn() {}, debug() {}, verbose() {} };

/** A payment provider: `charge` books every call; `chargeOnce` books each idempotency key once. */
class Ledger {
  entries: string[] = [];
  seen = new Set<string>();
  aborted: string[] = [];

  @Step({ name: 'charge' })
  async charge(order: string) {
    this.entries.push(order);
    return { charged: order };
  }

  @Step({ name: 'charge-once' })
  async chargeOnce(order: string) {
    const key = currentStep()!.idempotencyKey;
    if (!this.seen.has(key)) {
      this.seen.add(key);
      this.entries.push(order);
    }
    return { charged: order };
  }
}

@Workflow('fault-target', { maxAttempts: 1 })
class ChargeWorkflow {
  constructor(readonly ledger: Ledger) {}

  async execute(ctx: WorkflowContext<{ idempotent: boolean }>) {
    const before = await ctx.step.run('prepare', () => 'ready');
    const receipt = ctx.input.idempotent ? await this.ledger.chargeOnce('o-1') : await this.ledger.charge('o-1');
    const after = await ctx.step.run('notify', async () => {
      const signal = currentStep()!.signal;
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (signal.aborted) this.ledger.aborted.push('notify');
      return 'sent';
    });
    return { before, receipt, after };
  }
}

describe('runInline faults', () => {
  for (const fault of ['crashAfterStep', 'repeatStep'] as const) {
    it(`${fault} shows the duplicate effect of a non-idempotent step`, async () => {
      const ledger = new Ledger();
      const faults = fault === 'crashAfterStep' ? { crashAfterStep: ['charge'] } : { repeatStep: ['charge'] };
      const result = await runInline(new ChargeWorkflow(ledger), { input: { idempotent: false }, faults, logger: silent });
      expect(result.succeeded).toBe(true);
      expect(result.output).toEqual({ before: 'ready', receipt: { charged: 'o-1' }, after: 'sent' });
      expect(ledger.entries).toEqual(['o-1', 'o-1']); // the bug the fault is there to reveal
      expect(result.injectedFaults).toEqual([{ runId: result.runId, step: 'charge', fault }]);
      expect(result.steps.find((s) => s.name === 'charge')!.attempts).toBe(2);
      expect(result.attempts).toBe(1); // a crash is not a failed attempt: the run is executed again
    });

    it(`${fault} leaves one effect of an idempotent step`, async () => {
      const ledger = new Ledger();
      const faults = fault === 'crashAfterStep' ? { crashAfterStep: ['charge-once'] } : { repeatStep: ['charge-once'] };
      const result = await runInline(new ChargeWorkflow(ledger), { input: { idempotent: true }, faults, logger: silent });
      expect(result.succeeded).toBe(true);
      expect(ledger.entries).toEqual(['o-1']);
      expect(result.injectedFaults).toEqual([{ runId: result.runId, step: 'charge-once', fault }]);
    });
  }

  it('loseLeaseAt aborts the step signal, records nothing and runs the step again', async () => {
    const ledger = new Ledger();
    const result = await runInline(new ChargeWorkflow(ledger), { input: { idempotent: false }, faults: { loseLeaseAt: 'notify' }, logger: silent });
    expect(result.succeeded).toBe(true);
    expect(ledger.aborted).toEqual(['notify']);
    expect(ledger.entries).toEqual(['o-1']); // 'charge' was recorded before the lease was lost: replayed, not re-run
    expect(result.steps.find((s) => s.name === 'notify')!.attempts).toBe(2);
  });

  it('a crash after a step that the handler catches still stops the execution', async () => {
    const ledger = new Ledger();
    @Workflow('fault-catching')
    class Catching {
      async execute(ctx: WorkflowContext) {
        try {
          await ledger.charge('o-2');
        } catch {
          return 'swallowed';
        }
        return ctx.step.run('after', () => 'went on');
      }
    }
    const result = await runInline(new Catching(), { input: {}, faults: { crashAfterStep: ['charge'] }, logger: silent });
    expect(result.output).toBe('went on');
    expect(ledger.entries).toEqual(['o-2', 'o-2']);
  });

  it('names a misspelt step in a warning', async () => {
    const warnings: string[] = [];
    const logger: LoggerService = { ...silent, warn: (message: unknown) => void warnings.push(String(message)) };
    await runInline(new ChargeWorkflow(new Ledger()), { input: { idempotent: false }, faults: { crashAfterStep: ['chrage'] }, logger });
    expect(warnings.some((w) => w.includes(`'chrage'`) && w.includes('never executed'))).toBe(true);
  });

  it('refuses a malformed faults option', async () => {
    const workflow = new ChargeWorkflow(new Ledger());
    await expect(runInline(workflow, { input: { idempotent: false }, faults: { crashAfter: ['charge'] } as never })).rejects.toThrow(WorkflowConfigurationError);
    await expect(runInline(workflow, { input: { idempotent: false }, faults: { crashAfterStep: 'charge' } as never })).rejects.toThrow(/array of step names/);
  });
});
