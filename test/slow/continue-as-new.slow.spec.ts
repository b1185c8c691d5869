/**
 * A workflow that loops forever with ctx.continueAsNew every 1,000 steps keeps Redis memory flat over 100
 * iterations (issue 27): each execution starts with an empty history, and the executions that ended by
 * continuing are succeeded runs that expire by the normal retention (retention.succeededMs, 200 ms here;
 * the default keeps each for 24 h, so memory is flat at the level of a day's executions). The first run
 * is kept as a stub (its run hash and history, without its records) while the chain lives, so that its
 * handle still follows the chain. Neither the continue call nor the sweep that deletes an execution of
 * 1,000 records takes over 5 ms of Redis time.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

const STEPS = Number(process.env.CAN_STEPS ?? 1_000);
const ITERATIONS = Number(process.env.CAN_ITERATIONS ?? 100);
let iteration = 0;

@Workflow('forever')
@Injectable()
class Forever {
  async execute(ctx: WorkflowContext<{ iteration: number; total: number }>) {
    let total = ctx.input.total;
    for (let i = 0; i < STEPS; i += 1) total = await ctx.step.run('add', () => total + 1);
    iteration = ctx.input.iteration + 1;
    return ctx.continueAsNew({ iteration: ctx.input.iteration + 1, total });
  }
}

describe('continueAsNew keeps a run that loops forever at flat Redis memory (slow)', () => {
  const suite = useSuiteRedis();

  it(`${ITERATIONS} iterations of ${STEPS} steps`, async () => {
    if (suite.redis.server) prioritize(suite.redis.server.pid);
    const prefix = uniquePrefix('forever');
    const app = await startApp(
      { connection: suite.redis.url, prefix, retention: { succeededMs: 200 }, worker: { concurrency: 4, reaperIntervalMs: 50 } },
      [Forever],
    );
    suite.apps.push(app);
    const direct = suite.direct;
    const used = async () => Number(/^used_memory:(\d+)/m.exec(await direct.info('memory'))?.[1]);
    await startSlowlog(direct, 5_000);
    const handle = await app.client.emit(Forever, { iteration: 0, total: 0 });

    const samples: { iteration: number; usedMemory: number; keys: number }[] = [];
    const sampleAt = [10, 25, 50, 75, ITERATIONS];
    for (const at of sampleAt) {
      await waitFor(() => iteration >= at, 600_000, 50);
      // the executions that ended wait out their retention (200 ms) and the sweep; the chain goes on
      // meanwhile, and on a busy machine a sweep can lag by an execution or two: the level is the least
      // of three readings 300 ms apart (a key count that grew with the iterations would show in all three)
      const readings: { usedMemory: number; keys: number }[] = [];
      for (let reading = 0; reading < 3; reading += 1) {
        await new Promise((resolve) => setTimeout(resolve, reading === 0 ? 600 : 300));
        readings.push({ usedMemory: await used(), keys: await direct.dbsize() });
      }
      const level = readings.reduce((least, r) => (r.keys < least.keys ? r : least));
      samples.push({ iteration: at, ...level });
    }
    console.log(JSON.stringify(samples));
    const first = await app.client.handle(handle.id).getState();
    expect(first.status).toBe('succeeded');
    expect(first.continuedAs).toBeDefined();
    expect(await app.client.getRunSteps(handle.id)).toEqual([]);

    const base = samples[0];
    for (const s of samples) {
      // flat: within 512 KiB of the level at iteration 10 (one execution of 1,000 records is ~100 KB)
      expect(s.usedMemory - base.usedMemory).toBeLessThan(512 * 1024);
      expect(s.keys).toBeLessThanOrEqual(base.keys + 4);
    }
    expect(await unexplainedSlowFcalls(direct)).toEqual([]);
    expect(await app.client.cancelRun(handle.id)).toBe(true);
    await app.close();
  }, 900_000);
});
