/**
 * workflow_lease_expiries_total counts every lease that expired and housekeeping took back, including
 * those of a worker that died (which no process's lifecycle events report): a worker process SIGKILLed
 * in the middle of a run, another worker taking the run over, and the counter scraped over HTTP from an
 * API-only app (no worker of its own) with metrics on.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import request from 'supertest';
import { WorkflowClient, WorkflowModule } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, waitFor } from '../support/workflow-app.js';
import { compileFixtures, startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const registry = new Registry();

@Controller('metrics')
class MetricsController {
  @Get()
  metrics() {
    return registry.metrics();
  }
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('lease expiries in the metrics (real worker processes, SIGKILL, /metrics over HTTP)', () => {
  let redis: TestRedis;
  let direct: Redis;
  let app: INestApplication;
  const workers: WorkerProcess[] = [];
  const prefix = uniquePrefix('lx');
  const SERIES = 'workflow_lease_expiries_total{workflow="three-steps",queue="default"}';

  beforeAll(async () => {
    compileFixtures();
    redis = await redisUrlForTests();
    direct = redisFor(redis.url);
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url, prefix, worker: false, metrics: { registry } })],
      controllers: [MetricsController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  }, 120_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await app?.close();
    direct?.disconnect();
    await redis?.stop();
  });

  it('a worker killed in a step: its expired lease is counted once the run is taken over, in every instance\'s scrape', async () => {
    const env = { REDIS_URL: redis.url, PREFIX: prefix, LEASE_MS: '1000' };
    const doomed = await startWorkerProcess('foundation-worker', { ...env, WORKER_NAME: 'doomed', STALL_IN_STEP2: 'hang' });
    workers.push(doomed);
    const scrape = async () => (await request(app.getHttpServer()).get('/metrics').expect(200)).text;
    await waitFor(async () => sample(await scrape(), SERIES) === 0, 10_000, 200);

    const client = app.get(WorkflowClient);
    const handle = await client.emit('three-steps', { id: 'lx1', stall: true });
    await waitFor(async () => (await direct.hget(`${prefix}:obs`, 'lx1:doomed:enteredStep2')) !== null, 15_000);
    doomed.signal('SIGKILL');
    await doomed.exited;

    const rescuer = await startWorkerProcess('foundation-worker', { ...env, WORKER_NAME: 'rescuer' });
    workers.push(rescuer);
    await handle.result({ timeoutMs: 20_000 });
    expect((await client.getRunHistory(handle.id)).filter((e) => e.type === 'lease-expired')).toHaveLength(1);
    // Scrapes within a second share one read: wait for a fresh one.
    await waitFor(async () => sample(await scrape(), SERIES) === 1, 5_000, 200);
    expect((await client.getStats()).workflows.find((w) => w.name === 'three-steps')).toMatchObject({ leaseExpiries: 1 });
    const text = await scrape();
    expect(text).toContain('# TYPE workflow_lease_expiries_total counter');
    // No process saw this expiry as its own: the dead worker's counters died with it.
    expect(text).not.toContain('workflow_runs_lost_total{');
  }, 60_000);
});
