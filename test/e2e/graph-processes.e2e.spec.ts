import { afterAll, describe, expect, it } from '@jest/globals';
import { startRedis, uniquePrefix } from '../support/redis-server.js';
import { startWorkerProcess } from '../support/worker-process.js';
import { redisFor, startApp, waitFor } from '../support/workflow-app.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

describe('a graph of child runs survives a worker SIGKILLed mid-graph (real processes)', () => {
  it('every node runs once, after all its dependencies, and the graph completes on the surviving worker', async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const direct = redisFor(redis.url);
    cleanup.push(async () => direct.disconnect());
    const prefix = uniquePrefix('graph-kill');
    const effects = `${prefix}:effects`;
    const env = { REDIS_URL: redis.url, PREFIX: prefix, LEASE_MS: '1000', CONCURRENCY: '4' };
    const dying = await startWorkerProcess('graph-worker', { ...env, WORKER_NAME: 'dying' });
    cleanup.push(() => dying.stop(1000));
    const api = await startApp({ connection: redis.url, prefix, worker: false });
    cleanup.push(() => api.close());

    const levels = 6;
    const width = 5;
    const parent = await api.client.emit('graph-parent', { levels, width });
    // killed in the middle of the graph, with nodes in flight
    await waitFor(async () => Object.keys(await direct.hgetall(effects)).filter((f) => f.startsWith('work:')).length >= 12, 20_000, 5);
    dying.signal('SIGKILL');
    expect(await dying.exited).toBe('SIGKILL');
    const doneAtKill = Object.keys(await direct.hgetall(effects)).filter((f) => f.startsWith('work:')).length;
    expect(doneAtKill).toBeLessThan(levels * width);

    const healthy = await startWorkerProcess('graph-worker', { ...env, WORKER_NAME: 'healthy' });
    cleanup.push(() => healthy.stop(1000));
    expect(await parent.result({ timeoutMs: 30_000 })).toBe(levels * width);

    const counts = await direct.hgetall(effects);
    const nodes = (await api.client.listRuns({ parentId: parent.id, limit: 100 })).runs;
    // one run per node, each succeeded
    expect(nodes).toHaveLength(levels * width);
    expect(nodes.every((r) => r.status === 'succeeded')).toBe(true);
    for (let l = 0; l < levels; l += 1) {
      for (let w = 0; w < width; w += 1) {
        const work = Number(counts[`work:n${l}-${w}`]);
        // a node whose step was cut off by the kill runs it again (at most once more); all others once
        expect(work).toBeGreaterThanOrEqual(1);
        expect(work).toBeLessThanOrEqual(2);
        expect(counts[`missing:n${l}-${w}`]).toBeUndefined();
      }
    }
    const repeated = Object.entries(counts).filter(([f, n]) => f.startsWith('work:') && n !== '1');
    // only the nodes in flight at the kill (concurrency 4)
    expect(repeated.length).toBeLessThanOrEqual(4);
    // the parent executed once before the graph and once after (plus once if it was in flight at the kill: it was parked)
    expect(Number(counts[`parent:${parent.id}`])).toBe(2);
    // (the first worker of a run after lib/ changed compiles the fixtures: up to a minute on a busy machine)
  }, 180_000);

  it('a worker killed between the calls that write a large graph: the next attempt writes it again, every node runs once', async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const direct = redisFor(redis.url);
    cleanup.push(async () => direct.disconnect());
    const prefix = uniquePrefix('graph-stage-kill');
    const effects = `${prefix}:effects`;
    const env = { REDIS_URL: redis.url, PREFIX: prefix, LEASE_MS: '1000', CONCURRENCY: '8' };
    // 20 levels x 20 wide: 400 nodes, written in 7 calls; killed after the second
    const dying = await startWorkerProcess('graph-worker', { ...env, WORKER_NAME: 'dying', KILL_AT_STAGE: '2' });
    cleanup.push(() => dying.stop(1000));
    const api = await startApp({ connection: redis.url, prefix, worker: false });
    cleanup.push(() => api.close());
    const parent = await api.client.emit('graph-parent', { levels: 20, width: 20 });
    expect(await dying.exited).toBe('SIGKILL');
    // nothing started: the graph starts only with the park
    expect((await api.client.listRuns({ parentId: parent.id })).runs).toHaveLength(0);

    const healthy = await startWorkerProcess('graph-worker', { ...env, WORKER_NAME: 'healthy' });
    cleanup.push(() => healthy.stop(1000));
    expect(await parent.result({ timeoutMs: 60_000 })).toBe(400);
    const counts = await direct.hgetall(effects);
    const work = Object.entries(counts).filter(([f]) => f.startsWith('work:'));
    expect(work).toHaveLength(400);
    expect(work.filter(([, n]) => n !== '1')).toEqual([]);
    expect(Object.keys(counts).filter((f) => f.startsWith('missing:'))).toEqual([]);
    expect((await api.client.listRuns({ parentId: parent.id, limit: 500 })).runs).toHaveLength(400);
  }, 180_000);
});
