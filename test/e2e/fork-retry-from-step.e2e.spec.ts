/**
 * Recovering a run failed by a bug (issue 28 item 4): a run fails at step 3 on the old code; the app is
 * replaced by one with the fix (the provider swapped), and retryRun({ fromStep }) or forkRun finishes the
 * run with steps 1-2 not executed again (counted side effects) and step 3 under a new idempotency key.
 * A fork keeps the copied steps' compensations, so its saga unwinds them.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { InvalidArgumentError, NonRetriableError, Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

const effects: Record<string, number> = {};
const bump = (name: string) => (effects[name] = (effects[name] ?? 0) + 1);
const shipKeys: string[] = [];

type Order = { id: string; refuse?: boolean; saga?: boolean };

abstract class Shipping {
  abstract ship(order: Order, idempotencyKey: string): { tracking: string };
}

/** The deployed code: step 3 has a bug. */
class BuggyShipping extends Shipping {
  ship(order: Order, idempotencyKey: string): { tracking: string } {
    shipKeys.push(idempotencyKey);
    bump(`ship-attempt:${order.id}`);
    throw new Error('bug: address.line1 of undefined');
  }
}

/** The fix. */
class FixedShipping extends Shipping {
  ship(order: Order, idempotencyKey: string): { tracking: string } {
    shipKeys.push(idempotencyKey);
    bump(`ship-attempt:${order.id}`);
    if (order.refuse) throw new NonRetriableError('carrier refuses the parcel');
    return { tracking: `T-${order.id}` };
  }
}

@Workflow('fr-order', { maxAttempts: 1 })
@Injectable()
class OrderWorkflow {
  constructor(private readonly shipping: Shipping) {}

  async execute(ctx: WorkflowContext<Order>) {
    const order = ctx.input;
    // (a step that the failed run's saga compensated is executed again by a retry or a fork: the runs that
    // fail here have no compensation, the saga is tested on a fork of a succeeded run)
    const reservation = await ctx.step.run('reserve', () => (bump(`reserve:${order.id}`), { sku: 'A', order: order.id }), {
      compensate: order.saga ? (r) => bump(`release:${r.order}`) : undefined,
    });
    await ctx.step.sleep('cool-off', 1);
    const charge = await ctx.step.run('charge', () => (bump(`charge:${order.id}`), { amount: 42 }));
    const shipment = await ctx.step.run('ship', (s) => this.shipping.ship(order, s.idempotencyKey));
    return { reservation, charge, shipment };
  }
}

@Workflow('fr-waiting')
@Injectable()
class WaitingWorkflow {
  async execute(ctx: WorkflowContext<unknown>) {
    return ctx.step.waitForEvent('never', { event: 'fr.never' });
  }
}

const app = (url: string, prefix: string, shipping: new () => Shipping): Promise<TestApp> =>
  startApp({ connection: url, prefix }, [OrderWorkflow, WaitingWorkflow, { provide: Shipping, useClass: shipping }]);

describe('forkRun and retryRun({ fromStep }) recover a run failed by a bug (e2e)', () => {
  const suite = useSuiteRedis();
  const prefix = uniquePrefix('fr');
  let fixed: TestApp;
  let failedA: string;
  let failedB: string;

  it('runs fail at step 3 on the buggy code', async () => {
    const old = await app(suite.redis.url, prefix, BuggyShipping);
    suite.apps.push(old);
    const [a, b] = await Promise.all([old.client.emit(OrderWorkflow, { id: 'a' }), old.client.emit(OrderWorkflow, { id: 'b' })]);
    await expect(a.result({ timeoutMs: 10_000 })).rejects.toThrow('bug: address.line1');
    await expect(b.result({ timeoutMs: 10_000 })).rejects.toThrow('bug: address.line1');
    failedA = a.id;
    failedB = b.id;
    expect(effects).toMatchObject({ 'reserve:a': 1, 'charge:a': 1, 'ship-attempt:a': 1 });
    await old.close();
    fixed = await app(suite.redis.url, prefix, FixedShipping);
    suite.apps.push(fixed);
  }, 30_000);

  it('retryRun({ fromStep: "ship" }) on the fixed code: steps 1-2 not executed again, step 3 under a new idempotency key', async () => {
    const before = shipKeys.length;
    const handle = await fixed.client.retryRun(failedA, { fromStep: 'ship' });
    expect(handle.id).toBe(failedA);
    const output = await handle.result({ timeoutMs: 10_000 });
    expect(output).toEqual({ reservation: { sku: 'A', order: 'a' }, charge: { amount: 42 }, shipment: { tracking: 'T-a' } });
    expect(effects['reserve:a']).toBe(1);
    expect(effects['charge:a']).toBe(1);
    expect(effects['ship-attempt:a']).toBe(2);
    const [oldKey, newKey] = [shipKeys[0], shipKeys[before]];
    expect(oldKey.startsWith(`${failedA}:`)).toBe(true);
    expect(newKey.startsWith(`${failedA}:`)).toBe(true);
    expect(newKey).not.toBe(oldKey);
    // the generation record is not a step
    expect((await fixed.client.getRunSteps(failedA)).map((s) => s.name)).toEqual(['reserve', 'cool-off', 'charge', 'ship']);
  }, 30_000);

  it('forkRun({ fromStep: "ship" }): a new run with the records before it, step 3 with the fork\'s own key', async () => {
    const handle = await fixed.client.forkRun(failedB, { fromStep: 'ship' });
    expect(handle.id).not.toBe(failedB);
    expect(await handle.result({ timeoutMs: 10_000 })).toMatchObject({ shipment: { tracking: 'T-b' } });
    expect(effects['reserve:b']).toBe(1);
    expect(effects['charge:b']).toBe(1);
    expect(effects['ship-attempt:b']).toBe(2);
    expect(shipKeys[shipKeys.length - 1].startsWith(`${handle.id}:`)).toBe(true);
    const info = (await fixed.client.getRun(handle.id))!;
    expect(info.forkedFrom).toBe(failedB);
    expect((await fixed.client.getRun(failedB))!.status).toBe('failed');
  }, 30_000);

  it('a fork keeps the copied steps\' compensations: its saga releases the copied reservation', async () => {
    const done = await fixed.client.emit(OrderWorkflow, { id: 'c', saga: true });
    await done.result({ timeoutMs: 10_000 });
    const handle = await fixed.client.forkRun(done.id, { fromStep: 'ship', input: { id: 'c', saga: true, refuse: true } });
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('carrier refuses');
    expect(effects['reserve:c']).toBe(1);
    expect(effects['charge:c']).toBe(1);
    expect(effects['release:c']).toBe(1);
    expect((await fixed.client.getRunSteps(handle.id)).find((s) => s.name === 'reserve')?.status).toBe('compensated');
  }, 30_000);

  it('without fromStep, a fork goes on from the first step that did not succeed', async () => {
    const handle = await fixed.client.forkRun(failedB);
    expect(await handle.result({ timeoutMs: 10_000 })).toMatchObject({ shipment: { tracking: 'T-b' } });
    expect(effects['charge:b']).toBe(1);
    expect(effects['ship-attempt:b']).toBe(3);
  }, 30_000);

  it('clear errors: an unknown step, a run still running, a succeeded run retried', async () => {
    await expect(fixed.client.retryRun(failedA, { fromStep: 'nope' })).rejects.toThrow(InvalidArgumentError);
    await expect(fixed.client.forkRun(failedB, { fromStep: 'nope' })).rejects.toThrow(/has no step named "nope"; its steps are "reserve", "cool-off", "charge", "ship"/);
    await expect(fixed.client.retryRun(failedA, { fromStep: 'ship' })).rejects.toThrow(/succeeded; only failed or canceled runs can be retried/);
    const waiting = await fixed.client.emit(WaitingWorkflow, {});
    await waitFor(async () => (await fixed.client.getRun(waiting.id))!.status === 'waiting');
    await expect(fixed.client.forkRun(waiting.id)).rejects.toThrow(/is waiting; fork a run once it has finished/);
    await expect(fixed.client.retryRun(waiting.id, { fromStep: 'never' })).rejects.toThrow(InvalidArgumentError);
    await fixed.close();
  }, 30_000);
});
