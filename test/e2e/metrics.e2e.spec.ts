import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Header, Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import { register, Registry } from 'prom-client';
import request from 'supertest';
import { NonRetriableError, Workflow, WorkflowClient, WorkflowModule, type WorkflowContext, type WorkflowModuleOptions } from '../../lib/index.js';
import { SNAPSHOT_TTL_MS } from '../../lib/observability/metrics/redis-gauges.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, waitFor } from '../support/workflow-app.js';

@Workflow('metrics-ok', { queue: 'metrics' })
@Injectable()
class OkWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const a = await ctx.step.run('first', () => ctx.input.n + 1);
    return ctx.step.run('second', () => a * 2);
  }
}

@Workflow('metrics-flaky', { queue: 'metrics', maxAttempts: 2, backoff: { type: 'fixed', delayMs: 10 } })
@Injectable()
class FlakyWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    await ctx.step.run('prepare', () => 'ready');
    if (ctx.run.attempt === 1) throw new Error('the partner API is down');
    return 'done';
  }
}

@Workflow('metrics-bad', { queue: 'metrics', maxAttempts: 1 })
@Injectable()
class BadWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('charge', () => {
      throw new NonRetriableError('card declined');
    });
  }
}

@Workflow('metrics-slow', { queue: 'metrics', maxAttempts: 1, timeoutMs: 300 })
@Injectable()
class SlowWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('wait', () => new Promise((resolve) => setTimeout(resolve, 2_000)));
  }
}

@Workflow('metrics-cancel', { queue: 'metrics' })
@Injectable()
class CancelWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('wait-for-cancel', (s) => new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, 10_000);
      s.signal.addEventListener('abort', () => (clearTimeout(timer), reject(s.signal.reason)));
    }));
  }
}

/** Only an API-only app has it: its runs stay queued (queue depth, oldest age, held back). */
@Workflow('metrics-idle', { queue: 'idle' })
@Injectable()
class IdleWorkflow {
  async execute() {
    return 'never';
  }
}

const WORKFLOWS = [OkWorkflow, FlakyWorkflow, BadWorkflow, SlowWorkflow, CancelWorkflow];

/** What a user writes without @willsoto/nestjs-prometheus (which jest cannot load next to Nest 12's ES
 *  modules; test/e2e/metrics-loading.e2e.spec.ts serves /metrics with it in a real process). */
@Controller('metrics')
class MetricsController {
  @Get()
  @Header('Content-Type', register.contentType)
  metrics() {
    return register.metrics();
  }
}

/** The value of one series in an exposition text, or undefined when it is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? '').split(',').filter(Boolean);
    if (wanted.every((w) => have.includes(w)) && have.length === wanted.length) return Number(match[3]);
  }
  return undefined;
}

/**
 * Metrics through the interface a user has: a Nest HTTP app serving prom-client's global registry on
 * /metrics, scraped with supertest after runs succeed, fail, retry and time out, against a private
 * redis-server.
 */
describe('Prometheus metrics (e2e, /metrics over HTTP)', () => {
  let redis: TestRedis;
  let admin: Redis;
  let app: INestApplication;
  let emitter: INestApplication;
  let client: WorkflowClient;
  const prefix = uniquePrefix('metrics');
  const runIds: string[] = [];

  const start = async (options: WorkflowModuleOptions, providers = WORKFLOWS) => {
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url, prefix, ...options })],
      controllers: [MetricsController],
      providers,
    }).compile();
    const nest = moduleRef.createNestApplication({ logger: false });
    await nest.init();
    return nest;
  };
  const scrape = async () => {
    const response = await request(app.getHttpServer()).get('/metrics').expect(200);
    expect(response.headers['content-type']).toContain('text/plain');
    return response.text;
  };

  beforeAll(async () => {
    redis = await redisUrlForTests();
    admin = redisFor(redis.url);
    app = await start({ metrics: true, worker: { reaperIntervalMs: 20 } });
    client = app.get(WorkflowClient);
    emitter = await start({ worker: false }, [IdleWorkflow]);
  });

  afterAll(async () => {
    admin?.disconnect();
    await app?.close();
    await emitter?.close();
    await redis?.stop();
  });

  it('counts runs started, succeeded, retried, failed, canceled and lost by workflow, and step durations, with no run id in any label', async () => {
    for (let n = 0; n < 3; n += 1) {
      const handle = await client.emit(OkWorkflow, { n });
      runIds.push(handle.id);
      await handle.result({ timeoutMs: 10_000 });
    }
    const flaky = await client.emit(FlakyWorkflow, { n: 1 });
    const bad = await client.emit(BadWorkflow, { n: 1 });
    const slow = await client.emit(SlowWorkflow, { n: 1 });
    const emitIdle = () => emitter.get(WorkflowClient).emit(IdleWorkflow, {});
    const idle = [await emitIdle(), await emitIdle()];
    runIds.push(flaky.id, bad.id, slow.id, ...idle.map((h) => h.id));
    await expect(flaky.result({ timeoutMs: 10_000 })).resolves.toBe('done');
    await expect(bad.result({ timeoutMs: 10_000 })).rejects.toThrow('card declined');
    await expect(slow.result({ timeoutMs: 10_000 })).rejects.toThrow();
    const canceled = await client.emit(CancelWorkflow, { n: 1 });
    runIds.push(canceled.id);
    await waitFor(async () => (await canceled.getState())?.status === 'running');
    await canceled.cancel();
    await expect(canceled.result({ timeoutMs: 10_000 })).rejects.toThrow('canceled');

    const labels = (workflow: string, extra: Record<string, string> = {}) => ({ workflow, queue: 'metrics', ...extra });
    let text = '';
    await waitFor(async () => {
      text = await scrape();
      return sample(text, 'workflow_runs_lost_total', labels('metrics-slow', { reason: 'timeout' })) === 1;
    }, 10_000, 200);

    await waitFor(async () => {
      text = await scrape();
      return sample(text, 'workflow_runs_canceled_total', labels('metrics-cancel')) === 1;
    }, 10_000, 200);
    expect(sample(text, 'workflow_runs_lost_total', labels('metrics-cancel', { reason: 'lease_lost' }))).toBeUndefined();
    expect(sample(text, 'workflow_runs', labels('metrics-cancel', { status: 'canceled' }))).toBe(1);
    expect(sample(text, 'workflow_runs_started_total', labels('metrics-ok'))).toBe(3);
    expect(sample(text, 'workflow_runs_succeeded_total', labels('metrics-ok'))).toBe(3);
    // the retry's second execution is not a new start
    expect(sample(text, 'workflow_runs_started_total', labels('metrics-flaky'))).toBe(1);
    expect(sample(text, 'workflow_runs_retried_total', labels('metrics-flaky'))).toBe(1);
    expect(sample(text, 'workflow_runs_succeeded_total', labels('metrics-flaky'))).toBe(1);
    expect(sample(text, 'workflow_runs_failed_total', labels('metrics-bad'))).toBe(1);
    // the run that passed its deadline: one start (its finalizing execution is no new start), failed once
    expect(sample(text, 'workflow_runs_started_total', labels('metrics-slow'))).toBe(1);
    expect(sample(text, 'workflow_runs_failed_total', labels('metrics-slow'))).toBe(1);
    expect(sample(text, 'workflow_runs_failed_total', labels('metrics-ok'))).toBeUndefined();
    // steps: 2 per ok run; flaky's 'prepare' once (replayed, not executed, on the retry); bad's 'charge' failed
    expect(sample(text, 'workflow_step_duration_seconds_count', labels('metrics-ok', { status: 'succeeded' }))).toBe(6);
    expect(sample(text, 'workflow_step_duration_seconds_count', labels('metrics-flaky', { status: 'succeeded' }))).toBe(1);
    expect(sample(text, 'workflow_step_duration_seconds_count', labels('metrics-bad', { status: 'failed' }))).toBe(1);
    expect(sample(text, 'workflow_step_duration_seconds_bucket', labels('metrics-ok', { status: 'succeeded', le: '+Inf' }))).toBe(6);

    // gauges read from Redis at scrape time
    expect(sample(text, 'workflow_runs', labels('metrics-ok', { status: 'succeeded' }))).toBe(3);
    expect(sample(text, 'workflow_runs', labels('metrics-flaky', { status: 'succeeded' }))).toBe(1);
    expect(sample(text, 'workflow_runs', labels('metrics-bad', { status: 'failed' }))).toBe(1);
    expect(sample(text, 'workflow_runs', labels('metrics-slow', { status: 'failed' }))).toBe(1);
    expect(sample(text, 'workflow_runs', { workflow: 'metrics-idle', queue: 'idle', status: 'queued' })).toBe(2);
    expect(sample(text, 'workflow_queue_depth', { workflow: 'metrics-idle', queue: 'idle' })).toBe(2);
    expect(sample(text, 'workflow_queue_depth', labels('metrics-ok'))).toBe(0);
    expect(sample(text, 'workflow_oldest_queued_age_seconds', { workflow: 'metrics-idle', queue: 'idle' })).toBeGreaterThan(0);
    expect(sample(text, 'workflow_oldest_queued_age_seconds', labels('metrics-ok'))).toBe(0);
    expect(sample(text, 'workflow_workers', labels('metrics-ok'))).toBe(1);
    expect(sample(text, 'workflow_workers', { workflow: 'metrics-idle', queue: 'idle' })).toBe(0);
    expect(sample(text, 'workflow_runs_held_back', { workflow: 'metrics-idle', queue: 'idle', reason: 'no_worker' })).toBe(2);
    expect(sample(text, 'workflow_runs_held_back', labels('metrics-ok', { reason: 'no_worker' }))).toBe(0);
    for (const check of ['redis', 'library', 'worker', 'memory']) expect(sample(text, 'workflow_health_up', { check })).toBe(1);
    const node = `127.0.0.1:${new URL(redis.url).port}`;
    expect(sample(text, 'workflow_redis_memory_used_bytes', { node })).toBeGreaterThan(100_000);
    expect(sample(text, 'workflow_redis_memory_max_bytes', { node })).toBe(0);

    for (const id of runIds) {
      expect(text).not.toContain(id);
      expect(text).not.toContain(id.slice(0, 26));
    }
    // every label name is one of a closed set
    const labelNames = new Set([...text.matchAll(/[{,]([a-z_]+)="/g)].map((m) => m[1]));
    expect([...labelNames].sort()).toEqual(['check', 'le', 'node', 'queue', 'reason', 'status', 'workflow']);
    if (process.env.PRINT_SCRAPE) console.log(text);
  }, 60_000);

  it('a burst of scrapes reads Redis once (the gauges share a snapshot for a second)', async () => {
    const infoCalls = async () => Number(/cmdstat_info:calls=(\d+)/.exec(String(await admin.info('commandstats')))?.[1] ?? 0);
    await new Promise((resolve) => setTimeout(resolve, SNAPSHOT_TTL_MS + 50));
    let before = await infoCalls();
    await scrape();
    const one = (await infoCalls()) - before;
    await new Promise((resolve) => setTimeout(resolve, SNAPSHOT_TTL_MS + 50));
    before = await infoCalls();
    await Promise.all(Array.from({ length: 10 }, () => scrape()));
    const ten = (await infoCalls()) - before;
    expect(one).toBeGreaterThan(0);
    expect(ten).toBe(one);
  });

  it('takes its metrics out of the registry on shutdown; another registry and a prefix work the same', async () => {
    await app.close();
    expect(await register.metrics()).not.toContain('workflow_runs');
    const own = new Registry();
    app = await start({ metrics: { registry: own, prefix: 'shop_' }, worker: false });
    const text = await own.metrics();
    expect(sample(text, 'shop_workflow_runs', { workflow: 'metrics-ok', queue: 'metrics', status: 'succeeded' })).toBe(3);
    expect(await register.metrics()).not.toContain('workflow_runs');
  });

  it('refuses a metrics option it cannot use, with what to write instead', async () => {
    await expect(start({ metrics: { prefix: '1shop' }, worker: false })).rejects.toThrow("metrics.prefix \"1shop\" is not a valid start of a Prometheus metric name");
    await expect(start({ metrics: { registry: {} as Registry }, worker: false })).rejects.toThrow('metrics.registry must be a prom-client Registry');
  });
});
