/** runInline and ctx.step.redis: commands checked as the engine checks them, replies from stepOverrides. */
import { describe, expect, it } from '@jest/globals';
import type { LoggerService } from '@nestjs/common';
import { InvalidArgumentError, NonRetriableError, Workflow, WorkflowConfigurationError, runInline, type WorkflowContext } from '../../lib/index.js';

const silent: LoggerService = { log() {}, error() {}, warn() {}, debug() {}, verbose() {} };

@Workflow('inline-redis', { maxAttempts: 1 })
class ReserveWorkflow {
  async execute(ctx: WorkflowContext<{ qty: number | string; fail?: boolean }>) {
    const [left] = await ctx.step.redis('reserve', (tx) => tx.decrby('stock:book', ctx.input.qty as number).hset('orders', 'o-1', 'reserved'), {
      compensate: (tx) => tx.incrby('stock:book', ctx.input.qty as number),
    });
    if (ctx.input.fail) throw new NonRetriableError('declined');
    return left;
  }
}

describe('runInline and Redis steps', () => {
  it('answers the step from stepOverrides, a function getting the queued commands', async () => {
    let seen: unknown;
    const result = await runInline(new ReserveWorkflow(), {
      input: { qty: 2 },
      stepOverrides: { reserve: (queued: unknown) => ((seen = queued), [8, 1]) },
      logger: silent,
    });
    expect(result.output).toBe(8);
    expect(seen).toEqual([['decrby', 'stock:book', '2'], ['hset', 'orders', 'o-1', 'reserved']]);
    expect(result.steps[0]).toMatchObject({ name: 'reserve', kind: 'redis', status: 'succeeded' });
  });

  it('marks the step compensated when the run fails for good', async () => {
    const result = await runInline(new ReserveWorkflow(), { input: { qty: 2, fail: true }, stepOverrides: { reserve: [8, 1] }, logger: silent });
    expect(result.succeeded).toBe(false);
    expect(result.steps[0].status).toBe('compensated');
  });

  it('says how to give the replies when no override is given', async () => {
    const result = await runInline(new ReserveWorkflow(), { input: { qty: 2 }, logger: silent }).catch((e: Error) => e);
    expect(result).toBeInstanceOf(WorkflowConfigurationError);
    expect((result as Error).message).toContain(`stepOverrides (e.g. { 'reserve': [41] }`);
  });

  it('refuses a bad command argument as the engine does', async () => {
    const result = await runInline(new ReserveWorkflow(), { input: { qty: 'two' }, stepOverrides: { reserve: [8, 1] }, logger: silent });
    expect(result.error).toBeInstanceOf(InvalidArgumentError);
    expect(result.error?.message).toContain('whole number');
  });
});
