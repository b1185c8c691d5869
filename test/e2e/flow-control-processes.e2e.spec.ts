/**
 * queues.<name>.concurrency (docs/flow-control.md) across real worker processes: three processes serve the
 * three workflows of queue 'partner' (limit 5, test/fixtures/queue-limit-worker.ts); 300 runs emitted from
 * an API app; the runs executing at once across the processes, counted in Redis by their steps, peak at
 * exactly 5 and never more.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { uniquePrefix } from '../support/redis-server.js';
import { compileFixtures, startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

const suite = useSuiteRedis();
const workers: WorkerProcess[] = [];

beforeAll(() => {
  compileFixtures();
}, 180_000);

afterAll(async () => {
  for (const worker of workers) await worker.stop(2_000);
});

describe('queue concurrency across worker processes', () => {
  it('a queue limit of 5 shared by three workflows is never exceeded across 3 worker processes: 300 runs peak at exactly 5', async () => {
    const prefix = uniquePrefix('qlimit');
    for (const name of ['w1', 'w2', 'w3']) {
      workers.push(await startWorkerProcess('queue-limit-worker', { REDIS_URL: suite.redis.url, PREFIX: prefix, WORKER_NAME: name, STEP_MS: '20' }));
    }
    const api = await startApp({ connection: suite.redis.url, prefix, worker: false, cron: false });
    suite.apps.push(api);
    const names = ['partner-a', 'partner-b', 'partner-c'];
    const handles = await Promise.all(Array.from({ length: 300 }, (_, i) => api.client.emit(names[i % 3], { i })));
    await Promise.all(handles.map((handle) => handle.result({ timeoutMs: 60_000 })));

    expect(Number(await suite.direct.get(`${prefix}:peak`))).toBe(5);
    expect(Number(await suite.direct.get(`${prefix}:active`))).toBe(0);
    // every process took part: the limit held across processes, not within one
    const by = await suite.direct.hgetall(`${prefix}:by`);
    expect(Object.keys(by).sort()).toEqual(['w1', 'w2', 'w3']);
    expect(Object.values(by).reduce((sum, n) => sum + Number(n), 0)).toBe(300);
  }, 120_000);
});
