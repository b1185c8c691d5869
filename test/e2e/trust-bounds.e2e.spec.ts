/**
 * Sizes and values that are bounded or checked at the call (issue 24, item 6): each bad one gets a clear
 * error where it is passed and writes nothing.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import {
  InvalidArgumentError,
  PayloadError,
  Workflow,
  WorkflowConfigurationError,
  type RunInfo,
  type WorkflowContext,
} from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, type TestApp } from '../support/workflow-app.js';

const HUGE = 'x'.repeat(4 * 1024 * 1024);

class BigError extends Error {
  details = HUGE;
  other = HUGE;
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
  }
}

type Case =
  | 'huge-error'
  | 'long-name'
  | 'sleep-forever'
  | 'sleep-until-nan'
  | 'event-timeout-forever'
  | 'child-timeout-forever'
  | 'step-timeout-forever'
  | 'long-event'
  | 'long-key'
  | 'deep-result';

function nested(levels: number): unknown {
  let value: unknown = 'bottom';
  for (let i = 0; i < levels; i += 1) value = { a: value };
  return value;
}

@Workflow('bounds-child')
@Injectable()
class BoundsChild {
  async execute() {
    return 'child';
  }
}

@Workflow('bounds', { maxAttempts: 3 })
@Injectable()
class BoundsWorkflow {
  async execute(ctx: WorkflowContext<{ case: Case }>) {
    await ctx.step.run('before', () => 'ok');
    switch (ctx.input.case) {
      case 'huge-error':
        await ctx.step.run('throws', () => {
          throw new BigError(HUGE, new BigError(HUGE, new BigError(HUGE, new BigError(HUGE, new BigError(HUGE)))));
        });
        break;
      case 'long-name':
        await ctx.step.run('n'.repeat(5 * 1024 * 1024), () => 1);
        break;
      case 'sleep-forever':
        await ctx.step.sleep('nap', 1e300);
        break;
      case 'sleep-until-nan':
        await ctx.step.sleepUntil('nap', new Date(NaN));
        break;
      case 'event-timeout-forever':
        await ctx.step.waitForEvent('wait', { event: 'go', timeoutMs: 1e300 });
        break;
      case 'child-timeout-forever':
        await ctx.step.runWorkflow('child', BoundsChild, {}, { timeoutMs: 1e300 });
        break;
      case 'step-timeout-forever':
        await ctx.step.run('slow', () => 1, { timeoutMs: 1e300 });
        break;
      case 'long-event':
        await ctx.step.waitForEvent('wait', { event: 'e'.repeat(300) });
        break;
      case 'long-key':
        await ctx.step.waitForEvent('wait', { event: 'go', key: 'k'.repeat(600) });
        break;
      case 'deep-result':
        await ctx.step.run('deep', () => nested(5000));
        break;
    }
    return 'reached the end';
  }
}

@Workflow('bounds-forever', { timeoutMs: 1e300 })
@Injectable()
class ForeverWorkflow {
  async execute() {
    return 'x';
  }
}

describe('bounded sizes and checked values (e2e, private redis-server)', () => {
  const suite = useSuiteRedis();
  const prefix = uniquePrefix('bounds');
  let app: TestApp;

  async function keysOfPrefix(): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await suite.direct.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys.sort();
  }

  beforeAll(async () => {
    app = await startApp({ connection: suite.redis.url, prefix, maxPayloadBytes: 1000, worker: { reaperIntervalMs: 20 } }, [BoundsWorkflow, BoundsChild]);
    suite.apps.push(app);
  });

  async function runCase(which: Case): Promise<{ run: RunInfo; steps: string[]; history: string[] }> {
    const handle = await app.client.emit(BoundsWorkflow, { case: which });
    await handle.result({ timeoutMs: 20_000 }).catch(() => undefined);
    const run = (await app.client.getRun(handle.id))!;
    const steps = (await app.client.getRunSteps(handle.id)).map((s) => s.name);
    const history = (await app.client.getRunHistory(handle.id)).map((e) => e.type);
    return { run, steps, history };
  }

  it('caps an error’s own properties and causes (4 MB each) to a few KB', async () => {
    const { run } = await runCase('huge-error');
    expect(run.status).toBe('failed');
    const runError = JSON.stringify(run.error);
    expect(runError.length).toBeLessThan(32_000);
    const steps = await app.client.getRunSteps(run.id);
    expect(JSON.stringify(steps.find((s) => s.name === 'throws')?.error).length).toBeLessThan(32_000);
    expect((run.error as { data?: { details?: string } }).data?.details).toMatch(/^x{256}… \(\d+ more characters\)$/);
    const info = await suite.direct.info('memory');
    const used = Number(/used_memory:(\d+)/.exec(info)![1]);
    expect(used).toBeLessThan(20 * 1024 * 1024);
  }, 30_000);

  it.each([
    ['long-name', /A step needs a name of 1 to 256 characters, got 5242880 characters/],
    ['sleep-forever', /sleep\('nap'\) must be a number of milliseconds from 0 to 3153600000000 \(100 years\), got 1e\+300/],
    ['sleep-until-nan', /sleepUntil\('nap'\) must be a valid Date, got an invalid Date/],
    ['event-timeout-forever', /waitForEvent\('wait'\): timeoutMs must be a number of milliseconds from 0 to 3153600000000/],
    ['child-timeout-forever', /runWorkflow\('child'\): timeoutMs must be a number of milliseconds/],
    ['step-timeout-forever', /step.run\('slow'\): timeoutMs must be a number of milliseconds from 1 to 2147483647/],
    ['long-event', /waitForEvent\('wait'\) needs an event name of 1 to 200 characters, got 300 characters/],
    ['long-key', /waitForEvent\('wait'\): the event key must be a string of at most 512 characters, got 600 characters/],
    ['deep-result', /The result of step 'deep' is not JSON: .* nests objects or arrays more than 200 levels deep/],
  ] as const)('%s: fails the run at the call with a clear error, on its first attempt, and writes no record of it', async (which, message) => {
    const { run, steps, history } = await runCase(which);
    expect(run.status).toBe('failed');
    expect(run.error?.name).toBe(which === 'deep-result' ? 'PayloadError' : 'InvalidArgumentError');
    expect(run.error?.message).toMatch(message);
    expect(run.attempt).toBe(1);
    // the step before is there; the bad call left no record (a failed result is recorded as failed)
    expect(steps[0]).toBe('before');
    expect(steps.filter((name) => name !== 'before' && name !== 'deep')).toEqual([]);
    expect(history).not.toContain('parked');
    expect(history).not.toContain('succeeded');
  }, 30_000);

  it('refuses emits and events with bad values before writing anything', async () => {
    const runsBefore = (await app.client.listRuns({ limit: 1000 })).runs.length;
    const before = await keysOfPrefix();
    await expect(app.client.emit(BoundsWorkflow, { case: 'long-name' }, { delayMs: 1e300 })).rejects.toThrow(InvalidArgumentError);
    await expect(app.client.emit(BoundsWorkflow, { case: 'long-name' }, { delayMs: 1e300 })).rejects.toThrow(/delayMs must be a number of milliseconds from 0 to 3153600000000/);
    await expect(app.client.emit(BoundsWorkflow, { case: 'long-name' }, { runAt: new Date(NaN) })).rejects.toThrow(/runAt must be a valid Date/);
    await expect(app.client.emit(BoundsWorkflow, { case: 'long-name' }, { runAt: new Date(8e15) })).rejects.toThrow(/runAt must be at most 100 years from now/);
    await expect(app.client.emit(BoundsWorkflow, nested(5000) as never)).rejects.toThrow(PayloadError);
    await expect(app.client.emit(BoundsWorkflow, nested(5000) as never)).rejects.toThrow(/nests objects or arrays more than 200 levels deep/);
    await expect(app.client.emit(ForeverWorkflow, {})).rejects.toThrow(WorkflowConfigurationError);
    await expect(app.client.sendEvent('e'.repeat(300), 1)).rejects.toThrow(/sendEvent needs an event name of 1 to 200 characters/);
    await expect(app.client.sendEvent('go', 1, { key: 'k'.repeat(600) })).rejects.toThrow(/sendEvent: the event key must be a string of at most 512 characters/);
    expect(await keysOfPrefix()).toEqual(before);
    expect((await app.client.listRuns({ limit: 1000 })).runs.length).toBe(runsBefore);
  }, 30_000);

  it('refuses a result() wait longer than a timer can be', async () => {
    const handle = await app.client.emit(BoundsChild, {});
    await expect(handle.result({ timeoutMs: 1e300 })).rejects.toThrow(/result\(\): timeoutMs must be a number of milliseconds from 0 to 2147483647/);
    await expect(handle.result({ timeoutMs: 10_000 })).resolves.toBe('child');
  }, 30_000);
});
