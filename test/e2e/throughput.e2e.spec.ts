/**
 * Runs started, succeeded, failed and canceled per minute (getThroughput), counted by the transition calls
 * in Redis: the same numbers from any app, in bounded per-minute hashes.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { InvalidArgumentError, NonRetriableError, Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

@Workflow('tp-ok')
@Injectable()
class OkWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('double', () => ctx.input.n * 2);
  }
}

@Workflow('tp-bad', { maxAttempts: 1 })
@Injectable()
class BadWorkflow {
  async execute() {
    throw new NonRetriableError('declined');
  }
}

@Workflow('tp-sleepy')
@Injectable()
class SleepyWorkflow {
  async execute(ctx: WorkflowContext) {
    await ctx.step.sleep('nap', 3_600_000);
  }
}

describe('throughput per minute (e2e, real Redis)', () => {
  const suite = useSuiteRedis();

  it('counts first claims and final states per workflow and minute; another app reads the same; bad arguments are refused', async () => {
    const prefix = uniquePrefix('tp');
    const worker = await startApp({ connection: suite.redis.url, prefix }, [OkWorkflow, BadWorkflow, SleepyWorkflow]);
    suite.apps.push(worker);
    const api = await startApp({ connection: suite.redis.url, prefix, worker: false });
    suite.apps.push(api);
    const { client } = worker;

    const ok = await Promise.all([1, 2, 3, 4, 5].map((n) => client.emit(OkWorkflow, { n })));
    await Promise.all(ok.map((h) => h.result({ timeoutMs: 10_000 })));
    const bad = await Promise.all([1, 2].map(() => client.emit(BadWorkflow, {})));
    await Promise.all(bad.map((h) => h.result({ timeoutMs: 10_000 }).catch(() => undefined)));
    const sleepy = await client.emit(SleepyWorkflow, {});
    await waitFor(async () => (await sleepy.getState()).status === 'waiting');
    await client.cancelRun(sleepy.id);
    // A retried run is not started again (its first claim was counted), but its new outcome is.
    await client.retryRun(bad[0].id);
    await bad[0].result({ timeoutMs: 10_000 }).catch(() => undefined);

    const totals = (t: Awaited<ReturnType<typeof client.getThroughput>>, name: string) => {
      const row = t.workflows.find((w) => w.name === name)!;
      return row.minutes.reduce(
        (sum, m) => ({ started: sum.started + m.started, succeeded: sum.succeeded + m.succeeded, failed: sum.failed + m.failed, canceled: sum.canceled + m.canceled }),
        { started: 0, succeeded: 0, failed: 0, canceled: 0 },
      );
    };
    const seen = await api.client.getThroughput({ minutes: 5 });
    expect(seen.workflows.map((w) => w.name)).toEqual(['tp-bad', 'tp-ok', 'tp-sleepy']);
    expect(seen.workflows[0].minutes).toHaveLength(5);
    expect(Date.parse(seen.to) - Date.parse(seen.from)).toBe(5 * 60_000);
    expect(totals(seen, 'tp-ok')).toEqual({ started: 5, succeeded: 5, failed: 0, canceled: 0 });
    expect(totals(seen, 'tp-bad')).toEqual({ started: 2, succeeded: 0, failed: 3, canceled: 0 });
    expect(totals(seen, 'tp-sleepy')).toEqual({ started: 1, succeeded: 0, failed: 0, canceled: 1 });
    // The current minute holds them (or the one before, when the minute turned during the test).
    const last = seen.workflows.find((w) => w.name === 'tp-ok')!.minutes.slice(-2);
    expect(last[0].succeeded + last[1].succeeded).toBe(5);
    expect(await worker.client.getThroughput({ workflow: 'tp-ok', minutes: 60 })).toMatchObject({ workflows: [{ name: 'tp-ok', minutes: expect.any(Array) }] });

    // Bounded: per workflow and kind, one small hash per hour of the Redis clock, expiring after the next hour.
    const keys = await suite.direct.keys(`{${prefix}:default:0}:tp:*`);
    expect(keys.length).toBeGreaterThanOrEqual(6); // ok: b s; bad: b f; sleepy: b c (twice that when the hour turned)
    expect(keys.length).toBeLessThanOrEqual(12);
    for (const key of keys) {
      expect(key).toMatch(/:tp:tp-(ok|bad|sleepy):[bsfc]:\d+$/);
      const ttl = await suite.direct.pttl(key);
      expect(ttl).toBeGreaterThan(3_600_000);
      expect(ttl).toBeLessThanOrEqual(7_200_000);
      expect(await suite.direct.object('ENCODING', key)).toBe('listpack');
      expect(await suite.direct.hlen(key)).toBeLessThanOrEqual(60);
    }

    await expect(client.getThroughput({ minutes: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(client.getThroughput({ minutes: 61 })).rejects.toThrow('minutes must be a whole number from 1 to 60');
  }, 30_000);
});
