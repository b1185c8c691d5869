/**
 * A worker killed (SIGKILL) between the chunks of a 10,000-child park: the next worker takes the parent over
 * after its lease, stages every wait again, and the parent completes with every child's output; every child
 * run exists once, in its indexes, and none is left behind.
 */
import { describe, expect, it } from '@jest/globals';
import { uniquePrefix } from '../support/redis-server.js';
import { startWorkerProcess } from '../support/worker-process.js';
import { runsInShard, startApp, statusIndexSize, useSuiteRedis } from '../support/workflow-app.js';

const N = Number(process.env.BOUNDED_N ?? 10_000);
const suite = useSuiteRedis();

describe('a worker killed in the middle of a large fan-out', () => {
  it(`leaves no orphan and creates none of ${N} children twice`, async () => {
    const prefix = uniquePrefix('fan-crash');
    const root = `{${prefix}:default:0}`;
    const env = { REDIS_URL: suite.redis.url, PREFIX: prefix, LEASE_MS: '10000', CONCURRENCY: '20' };
    const first = await startWorkerProcess('fan-out-worker', env, 60_000);
    const api = await startApp({ connection: suite.redis.url, prefix, worker: false });
    suite.apps.push(api);
    const parent = await api.client.emit('crash-fan', { n: N });
    // Killed as soon as the first chunk of children exists: the park's later chunks and its final call never ran.
    const until = Date.now() + 60_000;
    while ((await runsInShard(suite.direct, root, 'crash-kid')) === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 1));
    first.signal('SIGKILL');
    await first.exited;
    const createdBeforeTheKill = await runsInShard(suite.direct, root, 'crash-kid');
    expect(createdBeforeTheKill).toBeGreaterThan(0);
    expect(createdBeforeTheKill).toBeLessThan(N);
    expect((await api.client.getRun(parent.id))?.status).toBe('running');

    const second = await startWorkerProcess('fan-out-worker', env, 60_000);
    try {
      expect(await parent.result({ timeoutMs: 240_000 })).toEqual({ count: N, sum: (N * (N - 1)) / 2 });
    } finally {
      await second.stop();
    }
    expect(await runsInShard(suite.direct, root, 'crash-kid')).toBe(N);
    expect(await statusIndexSize(suite.direct, root, 'crash-kid', 'succeeded')).toBe(N);
    let runHashes = 0;
    for (let cursor = '0'; ; ) {
      const [next, found] = await suite.direct.scan(cursor, 'MATCH', `${root}:r:*`, 'COUNT', 1000);
      runHashes += found.length;
      if ((cursor = next) === '0') break;
    }
    expect(runHashes).toBe(N + 1);
    // every child ran (at least once: a child the killed worker was executing runs again, as any step would)
    expect(await suite.direct.hlen(`${prefix}:kid-runs`)).toBe(N);
    console.log(`killed after ${createdBeforeTheKill} of ${N} children existed`);
  }, 400_000);
});
