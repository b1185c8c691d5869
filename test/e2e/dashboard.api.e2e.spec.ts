import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { Workflow, WorkflowClient, WorkflowDashboardModule, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/workflow-app.js';

@Workflow('await-approval')
@Injectable()
class AwaitApprovalWorkflow {
  async execute(ctx: WorkflowContext<{ requestId: string }>) {
    const approval = await ctx.step.waitForEvent<{ by: string }>('approval', { event: 'approved', key: ctx.input.requestId });
    return { approvedBy: approval?.by };
  }
}

@Workflow('slow-report')
@Injectable()
class SlowReportWorkflow {
  async execute(ctx: WorkflowContext<{ month: string }>) {
    await ctx.step.sleep('wait-for-month-end', 60_000);
    return { month: ctx.input.month };
  }
}

/** The dashboard's JSON API: the actions a waiting or sleeping run offers, and what the API refuses. */
describe('dashboard JSON API (e2e, real Redis)', () => {
  let redis: TestRedis;
  let app: INestApplication;
  let client: WorkflowClient;
  const action = { 'x-workflow-dashboard': '1' };

  beforeAll(async () => {
    redis = await redisUrlForTests();
    const moduleRef = await Test.createTestingModule({
      imports: [
        WorkflowModule.forRoot({ connection: redis.url, prefix: uniquePrefix('dash-api'), worker: { reaperIntervalMs: 20 } }),
        WorkflowDashboardModule.forRoot({ path: 'ops/wf/' }),
      ],
      providers: [AwaitApprovalWorkflow, SlowReportWorkflow],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    client = app.get(WorkflowClient);
  });

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });

  it('shows what a waiting run waits for, and sends it its event', async () => {
    const handle = await client.emit(AwaitApprovalWorkflow, { requestId: 'req-<1>' }, { idempotencyKey: 'approval-req-1' });
    await waitFor(async () => (await client.getRun(handle.id))?.status === 'waiting', 10_000);

    const { body } = await request(app.getHttpServer()).get(`/ops/wf/api/runs/${handle.id}`).expect(200);
    expect(body.run).toMatchObject({ status: 'waiting', waitingFor: { events: [{ event: 'approved', key: 'req-<1>' }] } });
    expect(body.steps).toEqual([expect.objectContaining({ name: 'approval', status: 'waiting', event: { name: 'approved', key: 'req-<1>' } })]);
    expect(body.children).toEqual([]);

    const search = await request(app.getHttpServer()).get('/ops/wf/api/search').query({ q: 'approval-req-1' }).expect(200);
    expect(search.body.runs.map((r: { id: string }) => r.id)).toEqual([handle.id]);
    const byId = await request(app.getHttpServer()).get('/ops/wf/api/search').query({ q: handle.id }).expect(200);
    expect(byId.body.runs).toHaveLength(1);

    await request(app.getHttpServer()).post('/ops/wf/api/events').send({ event: 'approved', key: 'req-<1>', payload: { by: 'ana' } }).expect(403);
    const sent = await request(app.getHttpServer()).post('/ops/wf/api/events').set(action).send({ event: 'approved', key: 'req-<1>', payload: { by: 'ana' } }).expect(200);
    expect(sent.body).toEqual({ woken: 1 });
    await expect(handle.result({ timeoutMs: 10_000 })).resolves.toEqual({ approvedBy: 'ana' });
  });

  it('cancels a sleeping run, and refuses to cancel or retry what cannot be', async () => {
    const handle = await client.emit(SlowReportWorkflow, { month: '2026-01' });
    await waitFor(async () => (await client.getRun(handle.id))?.status === 'waiting', 10_000);
    await request(app.getHttpServer()).post(`/ops/wf/api/runs/${handle.id}/retry`).set(action).expect(409);
    await request(app.getHttpServer()).post(`/ops/wf/api/runs/${handle.id}/cancel`).set(action).send({ reason: 'not needed' }).expect(200, { canceled: true });
    await expect(client.getRun(handle.id)).resolves.toMatchObject({ status: 'canceled', error: { message: expect.stringContaining('not needed') } });
    await request(app.getHttpServer()).post(`/ops/wf/api/runs/${handle.id}/cancel`).set(action).expect(409);

    const list = await request(app.getHttpServer()).get('/ops/wf/api/runs').query({ workflow: 'slow-report', status: 'canceled' }).expect(200);
    expect(list.body.runs.map((r: { id: string }) => r.id)).toEqual([handle.id]);
    expect(list.body.runs[0]).not.toHaveProperty('input');
  });

  it('answers 400 for a bad filter and 404 for an unknown run', async () => {
    await request(app.getHttpServer()).get('/ops/wf/api/runs').query({ status: 'done' }).expect(400);
    await request(app.getHttpServer()).get('/ops/wf/api/runs').query({ limit: '0' }).expect(400);
    await request(app.getHttpServer()).get('/ops/wf/api/runs/01M7Z8A2WVN7Y6RGA643PXHA42.default.0').expect(404);
    await request(app.getHttpServer()).get('/ops/wf/api/runs/not-a-run').expect(404);
  });

  it('serves the page under its path with a strict CSP, and refuses an unusable path', async () => {
    const page = await request(app.getHttpServer()).get('/ops/wf').expect(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.text).toContain('src="/ops/wf/assets/dashboard.js"');
    await request(app.getHttpServer()).get('/ops/wf/assets/dashboard.js').expect('content-type', /javascript/).expect(200);
    expect(() => WorkflowDashboardModule.forRoot({ path: '/"><script>' })).toThrow(/not usable/);
  });
});
