import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { startApp, type TestApp } from '../support/workflow-app.js';

@Workflow('hist-steps', { queue: 'hist', maxAttempts: 1 })
@Injectable()
class StepsWorkflow {
  async execute(ctx: WorkflowContext<{ fail?: boolean }>) {
    await ctx.step.run('reserve', () => 'r', { compensate: () => undefined });
    await ctx.step.run('charge', () => 'c', { compensate: () => undefined });
    if (ctx.input.fail) await ctx.step.run('ship', () => Promise.reject(new Error('no courier')));
    return 'done';
  }
}

@Workflow('hist-many', { queue: 'hist', maxAttempts: 1 })
@Injectable()
class ManyStepsWorkflow {
  async execute(ctx: WorkflowContext<{ steps: number; swallow?: boolean }>) {
    for (let i = 0; i < ctx.input.steps; i += 1) {
      try {
        await ctx.step.run(`item-${i}`, () => i);
      } catch (error) {
        if (!ctx.input.swallow) throw error;
      }
    }
    return ctx.input.steps;
  }
}

@Workflow('hist-loop', { queue: 'hist' })
@Injectable()
class LoopWorkflow {
  async execute(ctx: WorkflowContext<{ sleeps: number }>) {
    // every zero sleep costs the run two history entries (resumed, claimed): enough to pass the cap
    for (let i = 0; i < ctx.input.sleeps; i += 1) await ctx.step.sleep(`tick-${i}`, 0);
    return 'looped';
  }
}

describe('run history with step outcomes, and the limits on steps and history (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    app = await startApp(
      { connection: redis.url, prefix: uniquePrefix('hist'), maxStepsPerRun: 600, worker: { concurrency: 5, reaperIntervalMs: 20 } },
      [StepsWorkflow, ManyStepsWorkflow, LoopWorkflow],
    );
  });

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });

  it('merges step commits into the history, in server-time order between the transitions', async () => {
    const handle = await app.client.emit(StepsWorkflow, {});
    expect(await handle.result({ timeoutMs: 10_000 })).toBe('done');
    const history = await app.client.getRunHistory(handle.id);
    expect(history.map((e) => (e.step ? `${e.type}:${e.step}` : e.type))).toEqual([
      'created',
      'claimed',
      'step-succeeded:reserve',
      'step-succeeded:charge',
      'succeeded',
    ]);
    expect(history[2]).toMatchObject({ attempt: 1, data: { occurrence: 0, kind: 'step' } });
    const times = history.map((e) => Date.parse(e.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it('shows a failed step with its error and the compensations after the run began failing', async () => {
    const handle = await app.client.emit(StepsWorkflow, { fail: true });
    await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('no courier');
    const history = await app.client.getRunHistory(handle.id);
    const types = history.map((e) => (e.step ? `${e.type}:${e.step}` : e.type));
    // a compensated step shows both its success and its compensation
    expect(types.slice(0, 5)).toEqual(['created', 'claimed', 'step-succeeded:reserve', 'step-succeeded:charge', 'step-failed:ship']);
    expect(history[4].error).toMatchObject({ message: 'no courier' });
    // compensations (reverse order) come after the run started compensating, and before it failed
    const compensating = types.indexOf('compensating');
    expect(compensating).toBeGreaterThan(4);
    // both compensations may commit in the same millisecond; their order then falls back to occurrence
    expect(types.slice(compensating + 1, compensating + 3).sort()).toEqual(['step-compensated:charge', 'step-compensated:reserve']);
    expect(types[types.length - 1]).toBe('failed');
  });

  it('fails a run that passes maxStepsPerRun, with the limit in the error, even when the handler catches it', async () => {
    const ok = await app.client.emit(ManyStepsWorkflow, { steps: 600 });
    expect(await ok.result({ timeoutMs: 20_000 })).toBe(600);

    for (const swallow of [false, true]) {
      const handle = await app.client.emit(ManyStepsWorkflow, { steps: 700, swallow });
      await expect(handle.result({ timeoutMs: 20_000 })).rejects.toThrow(/limit of 600 steps per run \(maxStepsPerRun\) at step 'item-600'/);
      const run = await app.client.getRun(handle.id);
      expect(run).toMatchObject({ status: 'failed', attempt: 1, error: { name: 'NonRetriableError' } });
      expect(await app.client.getRunSteps(handle.id)).toHaveLength(600);
    }
  }, 60_000);

  it('caps the history at 1000 entries with a truncation marker, and still records the outcome', async () => {
    const handle = await app.client.emit(LoopWorkflow, { sleeps: 520 });
    expect(await handle.result({ timeoutMs: 60_000 })).toBe('looped');
    const history = (await app.client.getRunHistory(handle.id)).filter((e) => !e.type.startsWith('step-'));
    expect(history).toHaveLength(1002);
    expect(history[1000]).toMatchObject({ type: 'history-truncated', data: { limit: 1000 } });
    expect(history.filter((e) => e.type === 'history-truncated')).toHaveLength(1);
    expect(history[1001].type).toBe('succeeded');
  }, 90_000);
});
