/**
 * Graceful shutdown: app.close() stops claiming, lets executing runs finish within shutdownGraceMs,
 * releases the leases of the rest so that another worker takes them at once (long before the lease
 * would expire), and closes the connections it owns.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const APP_NAME = 'APP_NAME';
const LEASE_MS = 30_000;
const GRACE_MS = 600;

@Workflow('shutdown-wf')
@Injectable()
class ShutdownWorkflow {
  constructor(@Inject(APP_NAME) private readonly appName: string) {}

  async execute(ctx: WorkflowContext<{ id: string; workMs?: number; hangInApp?: string }>) {
    await ctx.step.run('work', async (s) => {
      if (ctx.input.hangInApp === this.appName) {
        await new Promise((resolve) => s.signal.addEventListener('abort', resolve, { once: true }));
      } else {
        await new Promise((resolve) => setTimeout(resolve, ctx.input.workMs ?? 0));
      }
    });
    return { completedBy: this.appName };
  }
}

async function clientCount(redis: Redis): Promise<number> {
  return String(await redis.call('CLIENT', 'LIST')).trim().split('\n').length;
}

describe('graceful shutdown (e2e, real Redis)', () => {
  let redis: TestRedis;
  let direct: Redis;
  let api: TestApp;
  const prefix = uniquePrefix('shutdown');
  const apps: TestApp[] = [];
  const worker = (name: string) =>
    startApp({ connection: redis.url, prefix, shutdownGraceMs: GRACE_MS, worker: { leaseMs: LEASE_MS, reaperIntervalMs: 20 } }, [
      ShutdownWorkflow,
      { provide: APP_NAME, useValue: name },
    ]).then((app) => (apps.push(app), app));

  beforeAll(async () => {
    redis = await redisUrlForTests();
    direct = redisFor(redis.url);
    api = await startApp({ connection: redis.url, prefix, worker: false }, [ShutdownWorkflow, { provide: APP_NAME, useValue: 'api' }]);
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await api?.close();
    direct?.disconnect();
    await redis?.stop();
  });

  it('finishes runs within the grace period, releases the rest to another worker at once, stops claiming and closes its connections', async () => {
    const baseline = await clientCount(direct);
    const a = await worker('A');
    expect(await clientCount(direct)).toBe(baseline + 3); // commands, pub/sub, the worker's transitions

    const quick = await api.client.emit(ShutdownWorkflow, { id: 'quick', workMs: 300 });
    const stuck = await api.client.emit(ShutdownWorkflow, { id: 'stuck', hangInApp: 'A' });
    await waitFor(async () => (await api.client.getRun(quick.id))?.status === 'running' && (await api.client.getRun(stuck.id))?.status === 'running');

    const closeStarted = Date.now();
    const closing = a.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const late = await api.client.emit(ShutdownWorkflow, { id: 'late' });
    await closing;
    const closeMs = Date.now() - closeStarted;

    // The run that could finish within the grace period finished on A.
    expect(await quick.result({ timeoutMs: 1000 })).toEqual({ completedBy: 'A' });
    // The one that could not was released, not left to its 30 s lease; the late one was never claimed.
    expect((await api.client.getRunHistory(stuck.id)).map((e) => e.type)).toEqual(['created', 'claimed', 'released']);
    expect(await api.client.getRun(stuck.id)).toMatchObject({ status: 'queued', attempt: 1 });
    expect((await api.client.getRunHistory(late.id)).map((e) => e.type)).toEqual(['created']);
    expect(closeMs).toBeGreaterThanOrEqual(GRACE_MS - 20);
    expect(closeMs).toBeLessThan(GRACE_MS + 3_000);
    // A closed the three connections it owned.
    await waitFor(async () => (await clientCount(direct)) === baseline, 2_000);

    const takenOverAt = Date.now();
    await worker('B');
    expect(await stuck.result({ timeoutMs: 5_000 })).toEqual({ completedBy: 'B' });
    expect(await late.result({ timeoutMs: 5_000 })).toEqual({ completedBy: 'B' });
    const takeoverMs = Date.now() - takenOverAt;
    expect(takeoverMs).toBeLessThan(LEASE_MS / 6);
    const history = await api.client.getRunHistory(stuck.id);
    expect(history.map((e) => e.type)).toEqual(['created', 'claimed', 'released', 'claimed', 'step-succeeded', 'succeeded']);
    expect(await api.client.getRun(stuck.id)).toMatchObject({ status: 'succeeded', attempt: 1 });
    process.stdout.write(`shutdown: close took ${closeMs} ms (grace ${GRACE_MS}); released run done ${takeoverMs} ms after B started (lease ${LEASE_MS})\n`);
  });
});
