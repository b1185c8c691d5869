/**
 * The module's `faults` option: the worker meets a crash after a step, a duplicate delivery and a lost
 * lease through the real engine and a real Redis (the run is released and executed again), so a team's
 * integration test shows a non-idempotent step's duplicate effect, and none for an idempotent one.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import {
  Step,
  Workflow,
  WorkflowConfigurationError,
  WorkflowModule,
  currentStep,
  type FaultInjection,
  type RunEvent,
  type WorkflowContext,
} from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';
import { Test } from '@nestjs/testing';

const suite = useSuiteRedis();
const ledgerKey = uniquePrefix('ledger');

/** Books charges in Redis: `charge` on every call, `charge-once` once per idempotency key. */
@Injectable()
class Payments {
  @Step({ name: 'charge' })
  async charge(order: string) {
    await suite.direct.rpush(`${ledgerKey}:${order}`, 'charged');
    return { charged: order };
  }

  @Step({ name: 'charge-once' })
  async chargeOnce(order: string) {
    const first = await suite.direct.set(`${ledgerKey}:key:${currentStep()!.idempotencyKey}`, '1', 'NX');
    if (first) await suite.direct.rpush(`${ledgerKey}:${order}`, 'charged');
    return { charged: order };
  }
}

@Workflow('faulty-checkout')
@Injectable()
class Checkout {
  constructor(private readonly payments: Payments) {}

  async execute(ctx: WorkflowContext<{ order: string; idempotent: boolean }>) {
    await ctx.step.run('prepare', () => suite.direct.rpush(`${ledgerKey}:${ctx.input.order}`, 'prepared'));
    const receipt = ctx.input.idempotent ? await this.payments.chargeOnce(ctx.input.order) : await this.payments.charge(ctx.input.order);
    const note = await ctx.step.run('notify', async () => {
      const signal = currentStep()!.signal;
      await new Promise((resolve) => setTimeout(resolve, 20));
      await suite.direct.rpush(`${ledgerKey}:${ctx.input.order}`, signal.aborted ? 'notify-aborted' : 'notified');
      return 'sent';
    });
    return { receipt, note };
  }
}

async function runWith(faults: FaultInjection, order: string, idempotent: boolean): Promise<{ ledger: string[]; history: RunEvent[] }> {
  const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('faults'), faults }, [Payments, Checkout]);
  suite.apps.push(app);
  const handle = await app.client.emit(Checkout, { order, idempotent });
  await expect(handle.result({ timeoutMs: 15_000 })).resolves.toEqual({ receipt: { charged: order }, note: 'sent' });
  const ledger = await suite.direct.lrange(`${ledgerKey}:${order}`, 0, -1);
  const history = await app.client.getRunHistory(handle.id);
  await app.close();
  return { ledger, history };
}

describe('fault injection against a real Redis', () => {
  it('a crash after a non-idempotent step books it twice; the history says why the run was executed again', async () => {
    const { ledger, history } = await runWith({ crashAfterStep: ['charge'] }, 'crash-plain', false);
    expect(ledger).toEqual(['prepared', 'charged', 'charged', 'notified']);
    const released = history.filter((e) => e.type === 'released');
    expect(released).toHaveLength(1);
    expect(String(released[0].data?.reason)).toContain(`crash after step 'charge'`);
  });

  it('a crash after an idempotent step books it once', async () => {
    const { ledger } = await runWith({ crashAfterStep: ['charge-once'] }, 'crash-once', true);
    expect(ledger).toEqual(['prepared', 'charged', 'notified']);
  });

  it('a duplicate delivery books a non-idempotent step twice and an idempotent one once', async () => {
    expect((await runWith({ repeatStep: ['charge'] }, 'repeat-plain', false)).ledger).toEqual(['prepared', 'charged', 'charged', 'notified']);
    expect((await runWith({ repeatStep: ['charge-once'] }, 'repeat-once', true)).ledger).toEqual(['prepared', 'charged', 'notified']);
  });

  it('a lease lost at a step aborts its signal and the next execution runs it again; steps recorded before are not', async () => {
    const { ledger } = await runWith({ loseLeaseAt: 'notify' }, 'lease', false);
    expect(ledger).toEqual(['prepared', 'charged', 'notify-aborted', 'notified']);
  });

  it('refuses a malformed faults option at start', async () => {
    const compile = (faults: unknown) =>
      Test.createTestingModule({ imports: [WorkflowModule.forRoot({ connection: suite.redis.url, faults: faults as FaultInjection })] })
        .compile()
        .then((m) => m.init());
    await expect(compile({ loseLeaseAt: 3 })).rejects.toThrow(WorkflowConfigurationError);
  });
});
