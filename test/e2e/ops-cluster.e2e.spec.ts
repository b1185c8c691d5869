/**
 * Operations on a 3-primary Redis Cluster, with a queue of 4 partitions spread over the nodes: a pause
 * holds every shard's runs, retryRuns reaches the failed runs of every shard, resume runs them all.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, type TestApp } from '../support/workflow-app.js';

let down = true;

@Workflow('opc-flaky', { queue: 'opc', maxAttempts: 1 })
@Injectable()
class FlakyWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('call', () => {
      if (down) throw new Error('down');
      return ctx.input.n;
    });
  }
}

describe('operations on a Redis Cluster (3 primaries, 4 partitions)', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await startApp(
      { connection: { nodes: cluster.nodes }, prefix: uniquePrefix('opc'), cron: false, queues: { opc: { partitions: 4 } }, worker: { concurrency: 20, reaperIntervalMs: 20 } } as never,
      [FlakyWorkflow],
    );
  }, 90_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('retryRuns and pause reach every shard; resume runs them', async () => {
    const client = app.client;
    const handles = await Promise.all(Array.from({ length: 24 }, (_, n) => client.emit(FlakyWorkflow, { n })));
    expect(new Set(handles.map((h) => h.id.split('.')[2])).size).toBe(4);
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 }).catch(() => undefined)));
    await client.pauseWorkflow('opc-flaky');
    expect(await client.retryRuns({ workflow: 'opc-flaky', status: 'failed' })).toBe(24);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const states = await Promise.all(handles.map((h) => h.getState()));
    expect(states.map((r) => `${r.status}/${r.delayedBy}`)).toEqual(handles.map(() => 'queued/paused'));
    expect((await client.getStats()).workflows.find((w) => w.name === 'opc-flaky')).toMatchObject({ paused: true, queueDepth: 24 });

    down = false;
    await client.resumeWorkflow('opc-flaky');
    expect(await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 })))).toEqual(handles.map((_, n) => n));
    expect(await client.retryRuns({ workflow: 'opc-flaky', status: 'failed' })).toBe(0);
  }, 90_000);
});
