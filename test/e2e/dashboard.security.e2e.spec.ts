import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type CanActivate, type INestApplication, type LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { Workflow, WorkflowClient, WorkflowDashboardModule, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { monitorCommands } from '../support/redis-monitor.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/workflow-app.js';

@Workflow('ds-sleeper')
@Injectable()
class SleeperWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    await ctx.step.sleep('nap', 60_000);
    return ctx.input.n;
  }
}

@Workflow('ds-child')
@Injectable()
class ChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; blob: string }>) {
    return ctx.input.n;
  }
}

@Workflow('ds-parent')
@Injectable()
class ParentWorkflow {
  async execute(ctx: WorkflowContext<{ children: number }>) {
    const blob = 'x'.repeat(10_000);
    return Promise.all(Array.from({ length: ctx.input.children }, (_, n) => ctx.step.runWorkflow(`child-${n}`, ChildWorkflow, { n, blob })));
  }
}

const allowAll: CanActivate = { canActivate: () => true };

/** The dashboard as an app mounts it, with what the app's own bootstrap may add. */
async function dashboardApp(
  url: string,
  setup: { guard?: CanActivate; globalPrefix?: string; cors?: boolean } = {},
): Promise<{ app: INestApplication; client: WorkflowClient; warnings: string[] }> {
  const warnings: string[] = [];
  const logger: LoggerService = { log: () => undefined, error: () => undefined, warn: (message: unknown) => void warnings.push(String(message)) };
  const moduleRef = await Test.createTestingModule({
    imports: [
      WorkflowModule.forRoot({ connection: url, prefix: uniquePrefix('dash-sec'), worker: { reaperIntervalMs: 20 } }),
      WorkflowDashboardModule.forRoot({ path: 'ops/wf', ...(setup.guard ? { guard: setup.guard } : {}) }),
    ],
    providers: [SleeperWorkflow, ChildWorkflow, ParentWorkflow],
  }).compile();
  const app = moduleRef.createNestApplication({ logger });
  if (setup.globalPrefix) app.setGlobalPrefix(setup.globalPrefix);
  if (setup.cors) app.enableCors({ origin: true, credentials: true });
  await app.init();
  return { app, client: app.get(WorkflowClient), warnings };
}

describe('dashboard security and reads (e2e, real Redis)', () => {
  let redis: TestRedis;
  const apps: INestApplication[] = [];
  const action = { 'x-workflow-dashboard': '1' };

  beforeAll(async () => {
    redis = await redisUrlForTests();
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await redis?.stop();
  });

  it('warns once at start-up when mounted without a guard, saying how to set one; not when it has one', async () => {
    const open = await dashboardApp(redis.url);
    apps.push(open.app);
    const warned = open.warnings.filter((w) => w.includes('dashboard'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain('/ops/wf has no guard');
    expect(warned[0]).toContain('forRoot({ guard:');

    const guarded = await dashboardApp(redis.url, { guard: allowAll });
    apps.push(guarded.app);
    expect(guarded.warnings.filter((w) => w.includes('dashboard'))).toEqual([]);
  });

  it('refuses actions from another site even when CORS lets the browser send them, and takes them from its own page', async () => {
    const { app, client } = await dashboardApp(redis.url, { guard: allowAll, cors: true });
    apps.push(app);
    const server = app.getHttpServer();
    const handle = await client.emit(SleeperWorkflow, { n: 1 });
    await waitFor(async () => (await client.getRun(handle.id))?.status === 'waiting', 10_000);

    // what a page on another site sends with fetch(..., { credentials: 'include', headers }) once CORS allows it
    const preflight = await request(server).options(`/ops/wf/api/runs/${handle.id}/cancel`).set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'POST');
    expect(preflight.headers['access-control-allow-origin']).toBe('https://evil.example');
    const crossSite = await request(server).post(`/ops/wf/api/runs/${handle.id}/cancel`).set(action).set('Origin', 'https://evil.example').send({}).expect(403);
    expect(crossSite.body.message).toContain('refused from another site: the request came from https://evil.example');
    const fetchSite = await request(server).post(`/ops/wf/api/runs/${handle.id}/cancel`).set(action).set('Sec-Fetch-Site', 'cross-site').send({}).expect(403);
    expect(fetchSite.body.message).toContain('Sec-Fetch-Site: cross-site');
    await request(server).post('/ops/wf/api/events').set(action).set('Origin', 'null').send({ event: 'e' }).expect(403);
    await request(server).post(`/ops/wf/api/runs/${handle.id}/retry`).set(action).set('Sec-Fetch-Site', 'same-site').expect(403);
    expect((await client.getRun(handle.id))?.status).toBe('waiting');

    // the dashboard's own page: same origin, directly or behind a proxy that forwards the host
    await request(server)
      .post(`/ops/wf/api/runs/${handle.id}/retry`)
      .set(action)
      .set('Host', 'internal:3000')
      .set('X-Forwarded-Host', 'ops.example.com')
      .set('Origin', 'https://ops.example.com')
      .expect(409);
    await request(server)
      .post(`/ops/wf/api/runs/${handle.id}/cancel`)
      .set(action)
      .set('Host', 'ops.example.com')
      .set('Origin', 'https://ops.example.com')
      .set('Sec-Fetch-Site', 'same-origin')
      .send({})
      .expect(200, { canceled: true });
  });

  it('answers 400, not 500, for a cursor or parent id that is not one', async () => {
    const { app } = await dashboardApp(redis.url, { guard: allowAll });
    apps.push(app);
    const bad = await request(app.getHttpServer()).get('/ops/wf/api/runs').query({ cursor: '*' }).expect(400);
    expect(bad.body.message).toContain('cursor');
  });

  it('serves its page, assets and API under the app global prefix', async () => {
    const { app } = await dashboardApp(redis.url, { guard: allowAll, globalPrefix: 'api' });
    apps.push(app);
    const server = app.getHttpServer();
    const page = await request(server).get('/api/ops/wf').expect(200);
    expect(page.text).toContain('src="/api/ops/wf/assets/dashboard.js"');
    expect(page.text).toContain('href="/api/ops/wf/assets/dashboard.css"');
    expect(page.text).toContain('data-base="/api/ops/wf"');
    await request(server).get('/api/ops/wf/assets/dashboard.js').expect('content-type', /javascript/).expect(200);
    await request(server).get('/api/ops/wf/assets/dashboard.css').expect(200);
    await request(server).get('/api/ops/wf/api/stats').expect(200);
  });

  it("a parent's page reads a page of its children, as summaries (no child's payload), and the rest are paged", async () => {
    const { app, client } = await dashboardApp(redis.url, { guard: allowAll });
    apps.push(app);
    const server = app.getHttpServer();
    const total = 70;
    const parent = await client.emit(ParentWorkflow, { children: total });
    await parent.result({ timeoutMs: 30_000 });

    let detail: { children: { id: string }[]; childrenCursor?: string } | undefined;
    const seen = await monitorCommands(redis.url, async () => {
      detail = (await request(server).get(`/ops/wf/api/runs/${parent.id}`).expect(200)).body;
    });
    const childReads = seen.filter((c) => /^(hgetall|hmget|hget)$/i.test(c.args[0]) && c.args[1].includes(':r:') && !c.args[1].includes(parent.id));
    expect(childReads.filter((c) => c.args[0].toLowerCase() === 'hgetall')).toEqual([]);
    expect(childReads.length).toBeLessThanOrEqual(51);
    expect(childReads.every((c) => !c.args.includes('in') && !c.args.includes('out'))).toBe(true);
    expect(detail!.children).toHaveLength(50);
    expect(detail!.childrenCursor).toBeDefined();

    const rest = await request(server).get('/ops/wf/api/runs').query({ parentId: parent.id, cursor: detail!.childrenCursor, limit: '50' }).expect(200);
    expect(rest.body.runs).toHaveLength(total - 50);
    expect(rest.body.cursor).toBeUndefined();
    const ids = new Set([...detail!.children, ...rest.body.runs].map((r: { id: string }) => r.id));
    expect(ids.size).toBe(total);
  });
});
