/**
 * Pinned runs on a 3-primary Redis Cluster: a queue spread over partitions (so over primaries), runs of
 * two versions, each claimed only by the workers of its version; a held-back one moved by onVersion.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { startApp, type TestApp } from '../support/workflow-app.js';

@Workflow('vc-pinned', { queue: 'vc', versioning: 'pinned' })
@Injectable()
class PinnedWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    await ctx.step.sleep('nap', 50);
    return ctx.step.run('work', () => ctx.input.n);
  }
}

describe('pinned runs on Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  const apps: TestApp[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
  }, 60_000);
  afterAll(async () => {
    for (const app of apps) await app.close().catch(() => undefined);
    await cluster?.stop();
  });

  it('each version\'s workers claim only its runs, across partitions on every primary; a held-back run is moved', async () => {
    const prefix = uniquePrefix('vc');
    const start = async (version: string, worker = true) => {
      const app = await startApp(
        {
          connection: { nodes: cluster.nodes },
          prefix,
          version,
          queues: { vc: { partitions: 6 } },
          ...(worker ? { worker: { concurrency: 10, reaperIntervalMs: 20 } } : { worker: false }),
        } as never,
        [PinnedWorkflow],
      );
      apps.push(app);
      return app;
    };
    const v1 = await start('v1');
    const v2 = await start('v2');
    const runsV1 = await Promise.all(Array.from({ length: 12 }, (_, n) => v1.client.emit(PinnedWorkflow, { n })));
    const runsV2 = await Promise.all(Array.from({ length: 12 }, (_, n) => v2.client.emit(PinnedWorkflow, { n })));
    await Promise.all([...runsV1, ...runsV2].map((r) => r.result({ timeoutMs: 20_000 })));
    const workers = (await v1.client.getStats()).workers.list;
    const idOf = (version: string) => workers.find((w) => w.version === version)!.id;
    expect(new Set(runsV1.map((r) => r.id.split('.')[2])).size).toBeGreaterThan(1);
    for (const run of runsV1) expect(await run.getState()).toMatchObject({ version: 'v1', pinned: true, workerId: idOf('v1') });
    for (const run of runsV2) expect(await run.getState()).toMatchObject({ version: 'v2', pinned: true, workerId: idOf('v2') });

    const apiV3 = await start('v3', false);
    const held = await apiV3.client.emit(PinnedWorkflow, { n: 99 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await held.getState()).status).toBe('queued');
    const stats = await v2.client.getStats();
    expect(stats.workflows[0].versions?.find((v) => v.version === 'v3')).toMatchObject({ pinned: 1, heldBack: 1, workers: 0 });
    await v2.client.retryRun(held.id, { onVersion: 'current' });
    expect(await held.result({ timeoutMs: 10_000 })).toBe(99);
    expect(await held.getState()).toMatchObject({ version: 'v2', workerId: idOf('v2') });
  }, 60_000);
});
