import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';
import { uniquePrefix } from '../support/redis-server.js';

const executions = new Map<string, number>();
const count = (key: string): number => {
  executions.set(key, (executions.get(key) ?? 0) + 1);
  return executions.get(key)!;
};

@Workflow('ds-parked', { queue: 'ds' })
@Injectable()
class ParkedWorkflow {
  async execute(ctx: WorkflowContext<{ tag: string }>) {
    await ctx.step.run('first', () => count(`${ctx.input.tag}:first`));
    await ctx.step.sleep('pause', 1_500);
    await ctx.step.run('second', () => count(`${ctx.input.tag}:second`));
    return 'done';
  }
}

describe('faults: a damaged step record', () => {
  const suite = useSuiteRedis();

  it('fails the run with CorruptedRunError, recorded in its history, instead of running the step again', async () => {
    // executionCache off: the wake replays from the records (a warm worker would resume from memory and
    // never read the damaged record)
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('ds'), executionCache: false, worker: { reaperIntervalMs: 20 } }, [ParkedWorkflow]);
    suite.apps.push(app);
    const handle = await app.client.emit(ParkedWorkflow, { tag: 'damaged' });
    await waitFor(async () => ['waiting', 'scheduled'].includes((await handle.getState()).status), 10_000);
    const keys = app.moduleRef.get(WorkflowRedis).keys;
    const root = keys.shardRoot({ queue: 'ds', partition: 0 });
    await suite.direct.hset(keys.steps(root, handle.id), '0:first', 'this is not a step record {{');

    const error = (await handle.result({ timeoutMs: 10_000 }).catch((e: unknown) => e)) as Error;
    expect(error.name).toBe('CorruptedRunError');
    expect(error.message).toContain('0:first');
    expect(executions.get('damaged:first')).toBe(1);
    expect(executions.get('damaged:second')).toBeUndefined();
    const history = await app.client.getRunHistory(handle.id);
    expect(history.at(-1)).toMatchObject({ type: 'failed', error: { name: 'CorruptedRunError' } });
    expect((await app.client.getRun(handle.id))?.status).toBe('failed');

    // the worker goes on serving other runs
    expect(await app.client.run(ParkedWorkflow, { tag: 'healthy' }, { timeoutMs: 10_000 })).toBe('done');
  }, 30_000);
});
