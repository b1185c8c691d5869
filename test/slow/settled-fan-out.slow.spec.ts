/**
 * runWorkflow's onFailure 'continue' at a user's size (issue 31 item 4): a Promise.all of 10,000 children,
 * every third failing, resolves with every outcome, wakes the parent once after the last child (two
 * executions of its handler in all), and no FCALL runs longer than 5 ms meanwhile (SLOWLOG is the judge).
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { NonRetriableError, Workflow, type ChildOutcome, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, useSuiteRedis, type TestApp } from '../support/workflow-app.js';

const N = Number(process.env.BOUNDED_N ?? 10_000);
const executions = new Map<string, number>();

@Workflow('settled-kid')
@Injectable()
class SettledKidWorkflow {
  execute(ctx: WorkflowContext<{ n: number }>) {
    if (ctx.input.n % 3 === 0) throw new NonRetriableError(`kid ${ctx.input.n} fails`);
    return ctx.input.n;
  }
}

@Workflow('settled-fan')
@Injectable()
class SettledFanWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    executions.set(ctx.run.id, (executions.get(ctx.run.id) ?? 0) + 1);
    const outcomes: ChildOutcome<number>[] = await Promise.all(
      Array.from({ length: ctx.input.n }, (_, n) => ctx.step.runWorkflow(`kid:${n}`, SettledKidWorkflow, { n }, { onFailure: 'continue' })),
    );
    return { succeeded: outcomes.filter((o) => o.status === 'succeeded').length, failed: outcomes.filter((o) => o.status === 'failed').length };
  }
}

const suite = useSuiteRedis();
let app: TestApp;

beforeAll(async () => {
  if (suite.redis.server) prioritize(suite.redis.server.pid);
  app = await startApp(
    { connection: suite.redis.url, prefix: uniquePrefix('settled'), worker: { concurrency: 50, reaperIntervalMs: 50 }, executionCache: false },
    [SettledKidWorkflow, SettledFanWorkflow],
  );
  suite.apps.push(app);
}, 60_000);

describe(`onFailure 'continue' at ${N} children`, () => {
  it('collects every outcome, the parent woken once after the last child, no FCALL over 5 ms', async () => {
    await startSlowlog(suite.direct, 5_000);
    const handle = await app.client.emit(SettledFanWorkflow, { n: N });
    const failed = Math.floor((N - 1) / 3) + 1;
    expect(await handle.result({ timeoutMs: 240_000 })).toEqual({ succeeded: N - failed, failed });
    expect(executions.get(handle.id)).toBe(2);
    const slow = await unexplainedSlowFcalls(suite.direct);
    expect(slow.map((entry) => `${entry.args[1]} ${entry.micros} µs`)).toEqual([]);
  }, 300_000);
});
