/**
 * forkRun and retryRun({ fromStep }) at the size users reach: a run of 10,000 step records is forked
 * (9,999 records copied) and retried from its 11th step (9,990 records forgotten) in chunks, without a
 * Redis call over 5 ms (SLOWLOG), and the steps before the chosen one are not executed again.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

const N = Number(process.env.FORK_N ?? 10_000);
const executed = new Map<string, number>();
let fixed = false;

@Workflow('long-run', { maxAttempts: 1 })
@Injectable()
class LongRun {
  async execute(ctx: WorkflowContext<{ tag: string }>) {
    let sum = 0;
    for (let i = 0; i < N - 1; i += 1) {
      sum += await ctx.step.run(`s-${i}`, () => {
        executed.set(ctx.input.tag, (executed.get(ctx.input.tag) ?? 0) + 1);
        return i;
      });
    }
    return ctx.step.run('last', () => {
      if (!fixed) throw new Error('bug in the last step');
      return sum;
    });
  }
}

describe('forkRun / retryRun({ fromStep }) over 10,000 records (slow)', () => {
  const suite = useSuiteRedis();

  it('copies and forgets in bounded calls; the steps before fromStep are not executed again', async () => {
    if (suite.redis.server) prioritize(suite.redis.server.pid);
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('forkbig') }, [LongRun]);
    suite.apps.push(app);
    const handle = await app.client.emit(LongRun, { tag: 'x' });
    await expect(handle.result({ timeoutMs: 600_000 })).rejects.toThrow('bug in the last step');
    expect(executed.get('x')).toBe(N - 1);
    fixed = true;
    await startSlowlog(suite.direct, 5_000);

    const fork = await app.client.forkRun(handle.id, { fromStep: 'last' });
    const expected = ((N - 1) * (N - 2)) / 2;
    expect(await fork.result({ timeoutMs: 600_000 })).toBe(expected);
    expect(executed.get('x')).toBe(N - 1);
    expect((await app.client.getRunSteps(fork.id)).length).toBe(N);

    const retried = await app.client.retryRun(handle.id, { fromStep: 's-10' });
    expect(await retried.result({ timeoutMs: 600_000 })).toBe(expected);
    expect(executed.get('x')).toBe(N - 1 + (N - 1 - 10));
    expect(await unexplainedSlowFcalls(suite.direct)).toEqual([]);
    await app.close();
  }, 900_000);
});
