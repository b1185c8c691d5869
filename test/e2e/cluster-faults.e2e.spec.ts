import { afterAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const executions = new Map<string, number>();

@Workflow('cf-steps', { queue: 'cf', maxAttempts: 5, backoff: { type: 'fixed', delayMs: 100 } })
@Injectable()
class StepsWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    for (const step of ['one', 'two', 'three']) {
      await ctx.step.run(step, async () => {
        const key = `${ctx.input.i}:${step}`;
        executions.set(key, (executions.get(key) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20));
      });
    }
    return ctx.input.i;
  }
}

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

async function clusterApp(cluster: RedisClusterHandle, prefix: string): Promise<TestApp> {
  const app = await startApp(
    {
      connection: { nodes: cluster.nodes.slice(0, 3) },
      prefix,
      queues: { cf: { partitions: 6 } },
      worker: { concurrency: 30, leaseMs: 3000, reaperIntervalMs: 20 },
    } as never,
    [StepsWorkflow],
  );
  cleanup.push(() => app.close());
  return app;
}

describe('Redis Cluster faults', () => {
  it('a primary that lost the Function library (flushed, or restarted without persistence) gets it again on first use', async () => {
    const cluster = await startCluster({ primaries: 3 });
    cleanup.push(() => cluster.stop());
    const app = await clusterApp(cluster, uniquePrefix('cfl'));
    const direct = new Cluster(cluster.nodes);
    cleanup.push(async () => direct.disconnect());
    await new Promise((resolve) => direct.once('ready', resolve));
    const primaries = direct.nodes('master');
    await primaries[1].call('FUNCTION', 'FLUSH');
    await expect(primaries[1].call('FCALL_RO', 'wf1_version', 0)).rejects.toThrow('Function not found');
    const handles = await Promise.all(Array.from({ length: 30 }, (_, i) => app.client.emit(StepsWorkflow, { i: 1000 + i })));
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
    expect(outputs).toEqual(handles.map((_, i) => 1000 + i));
    expect(Number(await primaries[1].call('FCALL_RO', 'wf1_version', 0))).toBeGreaterThan(0);
  }, 60_000);

  it('a primary killed under load fails over to its replica; the engine carries on and every run completes once', async () => {
    const cluster = await startCluster({ primaries: 3, replicasPerPrimary: 1 });
    cleanup.push(() => cluster.stop());
    const app = await clusterApp(cluster, uniquePrefix('cff'));
    const total = 300;
    const handles: Awaited<ReturnType<TestApp['client']['emit']>>[] = [];
    for (let i = 0; i < total; i += 1) handles.push(await app.client.emit(StepsWorkflow, { i }, { idempotencyKey: `f${i}` }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = await cluster.primaries();
    const victim = before[0];
    await cluster.kill(victim.port);
    await waitFor(async () => {
      const now = await cluster.primaries().catch(() => []);
      return now.length === 3 && !now.some((p) => p.port === victim.port);
    }, 30_000, 200);
    await waitFor(async () => {
      const runs = await Promise.all(handles.map((h) => app.client.getRun(h.id).catch(() => null)));
      return runs.every((r) => r?.status === 'succeeded');
    }, 60_000, 250);
    let repeated = 0;
    for (let i = 0; i < total; i += 1) {
      for (const step of ['one', 'two', 'three']) {
        const n = executions.get(`${i}:${step}`) ?? 0;
        expect(n).toBeGreaterThanOrEqual(1);
        repeated += n - 1;
      }
    }
    for (const h of handles) {
      expect((await app.client.getRunHistory(h.id)).filter((e) => e.type === 'succeeded')).toHaveLength(1);
    }
    process.stdout.write(`failover: primary ${victim.port} killed, ${total} runs succeeded once, ${repeated} step executions repeated\n`);
  }, 120_000);
});
