/**
 * StepContext.fencingToken: the counter part of the run's fencing token, handed to steps so a store can
 * refuse a stale writer. It grows with every claim of the run: a retried attempt, a wake after a durable
 * sleep and a worker that takes the run over after the first one's lease expired each see a greater one.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, currentStep, runInline, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

const seen: Record<string, string[]> = {};
let failFirst = true;
let stallOnce = false;

/** A store in the style of Kleppmann's fenced storage: a write with a token older than the newest it has seen is refused. */
class FencedStore {
  private newest = 0n;
  readonly values: string[] = [];
  write(token: string, value: string): void {
    const t = BigInt(token);
    if (t < this.newest) throw new Error(`stale token ${token} (newest ${this.newest})`);
    this.newest = t;
    this.values.push(value);
  }
}
const store = new FencedStore();
const takeoverStore = new FencedStore();

@Workflow('ft-tokens', { maxAttempts: 3, backoff: { type: 'fixed', delayMs: 1 } })
@Injectable()
class TokenWorkflow {
  async execute(ctx: WorkflowContext<{ tag: string }>) {
    const list = (seen[ctx.input.tag] ??= []);
    await ctx.step.run('before-retry', (s) => {
      list.push(s.fencingToken);
      if (failFirst) {
        failFirst = false;
        throw new Error('first attempt fails');
      }
    });
    await ctx.step.sleep('nap', 5);
    await ctx.step.run('after-sleep', (s) => {
      list.push(s.fencingToken);
      expect(currentStep()?.fencingToken).toBe(s.fencingToken);
      store.write(s.fencingToken, 'after-sleep');
    });
    return list;
  }
}

let refused: string | undefined;

/** Its step stalls once, past its app's shutdown: the run is handed to another app while the first still executes it. */
@Workflow('ft-takeover', { maxAttempts: 3 })
@Injectable()
class TakeoverWorkflow {
  async execute(ctx: WorkflowContext<{ tag: string }>) {
    const list = (seen[ctx.input.tag] ??= []);
    await ctx.step.run('write', async (s) => {
      list.push(s.fencingToken);
      if (stallOnce) {
        stallOnce = false;
        await new Promise((resolve) => setTimeout(resolve, 3000));
        try {
          takeoverStore.write(s.fencingToken, 'stale');
        } catch (error) {
          refused = (error as Error).message;
        }
        return;
      }
      takeoverStore.write(s.fencingToken, 'owner');
    });
    return list;
  }
}

describe('StepContext.fencingToken (e2e)', () => {
  const suite = useSuiteRedis();

  it('grows with every claim: a retried attempt, a wake after a sleep', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('ft') }, [TokenWorkflow]);
    suite.apps.push(app);
    const tokens = (await app.client.run(TokenWorkflow, { tag: 'a' }, { timeoutMs: 20_000 })) as string[];
    // attempt 1 (claim 1) failed; attempt 2 (claim 2) ran it; the wake after the sleep is claim 3
    expect(tokens).toEqual(['1', '2', '3']);
    expect(store.values).toEqual(['after-sleep']);
    await app.close();
  }, 30_000);

  it('grows across a takeover, and a fenced store refuses the stale worker', async () => {
    const prefix = uniquePrefix('ft2');
    const url = suite.redis.url;
    const stalled = await startApp({ connection: url, prefix, shutdownGraceMs: 50 }, [TakeoverWorkflow]);
    suite.apps.push(stalled);
    stallOnce = true;
    const handle = await stalled.client.emit(TakeoverWorkflow, { tag: 'b' });
    await waitFor(() => (seen.b?.length ?? 0) === 1, 10_000);
    // its step goes on after the app released the run (a stalled worker, as far as Redis knows)
    await stalled.close();
    const owner = await startApp({ connection: url, prefix }, [TakeoverWorkflow]);
    suite.apps.push(owner);
    await owner.client.handle(handle.id).result({ timeoutMs: 20_000 });
    expect(seen.b.map(Number)).toEqual([1, 2]);
    await waitFor(() => refused !== undefined, 10_000);
    expect(refused).toBe('stale token 1 (newest 2)');
    expect(takeoverStore.values).toEqual(['owner']);
    await owner.close();
  }, 40_000);

  it('is "1" in runInline', async () => {
    const got: string[] = [];
    const result = await runInline(
      { execute: async (ctx: WorkflowContext<unknown>) => ctx.step.run('s', (s) => got.push(s.fencingToken)) } as never,
      { input: {} } as never,
    );
    expect(result.succeeded).toBe(true);
    expect(got).toEqual(['1']);
  });
});
