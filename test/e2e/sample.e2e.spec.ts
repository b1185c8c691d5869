import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { WorkflowClient } from '../../lib/index.js';
import { AppModule } from '../../sample/app.module.js';
import { checkReport, runDemo } from '../../sample/demo.js';
import { PaymentsService } from '../../sample/orders/payments.service.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/workflow-app.js';

/** Keeps the sample app (sample/) working: the same module and demo that `npm run sample` runs. */
describe('sample app (e2e, real Redis)', () => {
  let redis: TestRedis;
  let app: INestApplication;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    const moduleRef = await Test.createTestingModule({
      imports: [AppModule.register({ redisUrl: redis.url, prefix: uniquePrefix('sample') })],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });

  it('script mode: four checkouts succeed, the declined one fails, is compensated and runs @OnFailure', async () => {
    const lines: string[] = [];
    const report = await runDemo(app, (line) => lines.push(line));

    expect(checkReport(report)).toEqual([]);
    const byStatus = (status: string) => report.outcomes.filter((o) => o.status === status);
    expect(byStatus('succeeded')).toHaveLength(4);
    expect(byStatus('failed')).toHaveLength(1);

    const declined = byStatus('failed')[0];
    expect(declined.orderId).toMatch(/^C-/);
    expect(declined.error).toContain('declined');
    expect(declined.steps).toEqual([
      { name: 'reserve-stock', status: expect.any(String) },
      { name: 'charge-payment', status: 'failed' },
    ]);
    expect(report.failureHooks[declined.orderId]).toContain('declined');
    expect(report.released).toHaveLength(1);

    for (const ok of byStatus('succeeded')) {
      expect(ok.output).toMatchObject({ orderId: ok.orderId, chargeId: `ch_${ok.orderId}` });
      expect(ok.steps.map((s) => [s.name, s.status])).toEqual([
        ['reserve-stock', 'succeeded'],
        ['charge-payment', 'succeeded'],
        ['confirm-order', 'succeeded'],
      ]);
    }
    // Each step was printed as it completed, and each result.
    expect(lines.filter((l) => l.includes('step charge-payment'))).toHaveLength(5);
    expect(lines.filter((l) => /^\[[A-E]-.* succeeded: \{/.test(l))).toHaveLength(4);
    // The declined checkout's reservation was compensated (released), its steps say so.
    expect(declined.steps[0]).toEqual({ name: 'reserve-stock', status: 'compensated' });

    // Two imports fanned out over child runs (a row each, plus the XML feed); the one hit by the
    // supplier outage failed with its failed row, and succeeded after retryRun.
    expect(report.imports).toHaveLength(2);
    const [spring, summer] = report.imports;
    expect(spring).toMatchObject({ firstStatus: 'succeeded', output: { rows: 6, created: 6, xmlProducts: 2 } });
    expect(spring.children).toHaveLength(7);
    expect(summer).toMatchObject({ firstStatus: 'failed', retriedStatus: 'succeeded', output: { rows: 4, created: 4, xmlProducts: 2 } });
    expect(summer.firstError).toContain('supplier API did not answer');
    // The retry started a new child run for the failed row; the failed one stays, for the record.
    expect(summer.children.map((child) => child.status).sort()).toEqual(['failed', ...Array(5).fill('succeeded')]);
    expect(lines.filter((l) => l.startsWith('[import '))).toEqual(expect.arrayContaining([expect.stringContaining('succeeded after the retry')]));

    // Four successful charges: the declined card charged nothing.
    expect([...app.get(PaymentsService).charges.values()].filter((c) => report.outcomes.some((o) => c.chargeId === `ch_${o.orderId}`))).toHaveLength(4);
  });

  it('POST /orders starts a run and returns its id and status; GET /orders/:runId returns the run', async () => {
    const order = { orderId: `http-${Date.now()}`, sku: 'mug', quantity: 3, amountCents: 2_700, paymentToken: 'tok_visa' };
    const started = await request(app.getHttpServer()).post('/orders').send(order).expect(202);
    expect(started.body).toEqual({ runId: expect.stringMatching(/^[0-9A-Z]{26}\.default\.0$/), status: expect.any(String) });
    expect(['queued', 'running', 'succeeded']).toContain(started.body.status);

    const { runId } = started.body as { runId: string };
    const output = await app.get(WorkflowClient).handle(runId).result({ timeoutMs: 10_000 });
    expect(output).toMatchObject({ orderId: order.orderId, chargeId: `ch_${order.orderId}` });

    const fetched = await request(app.getHttpServer()).get(`/orders/${runId}`).expect(200);
    expect(fetched.body).toMatchObject({ id: runId, workflow: 'checkout', status: 'succeeded', input: order, output });

    // The order id is the idempotency key: the same POST again returns the same run.
    const again = await request(app.getHttpServer()).post('/orders').send(order).expect(202);
    expect(again.body).toEqual({ runId, status: 'succeeded' });
  });

  it('POST /orders refuses an invalid order with 400 and starts nothing', async () => {
    const orderId = `bad-${Date.now()}`;
    const refused = await request(app.getHttpServer())
      .post('/orders')
      .send({ orderId, sku: 'mug', quantity: 0, amountCents: 100, paymentToken: 'tok_visa' })
      .expect(400);
    expect(refused.body).toEqual({ statusCode: 400, error: 'Bad Request', message: ['quantity must not be less than 1'] });
    expect(await app.get(WorkflowClient).findRun('checkout', orderId)).toBeNull();
  });

  it('GET /orders/:runId answers 404 for an unknown run', async () => {
    await request(app.getHttpServer()).get('/orders/01M7Z8A2WVN7Y6RGA643PXHA42.default.0').expect(404);
    await request(app.getHttpServer()).get('/orders/not-a-run-id').expect(404);
    await request(app.getHttpServer()).get('/orders/not-a-run-id/result').expect(404);
  });

  it('a declined order started over HTTP ends failed, visible through GET', async () => {
    const order = { orderId: `declined-${Date.now()}`, sku: 'desk', quantity: 1, amountCents: 24_900, paymentToken: 'tok_declined' };
    const { body } = await request(app.getHttpServer()).post('/orders').send(order).expect(202);
    let run: { status: string; error?: { name: string; message: string } } = { status: '' };
    await waitFor(async () => {
      run = (await request(app.getHttpServer()).get(`/orders/${body.runId}`).expect(200)).body;
      return run.status === 'failed';
    }, 10_000);
    expect(run.error).toMatchObject({ name: 'PaymentDeclinedError', message: expect.stringContaining('declined') });
    const result = await request(app.getHttpServer()).get(`/orders/${body.runId}/result`).expect(500);
    expect(result.body).toEqual({
      statusCode: 500,
      error: 'Internal Server Error',
      name: 'PaymentDeclinedError',
      runId: body.runId,
      message: `Payment for order ${order.orderId} was declined by the card issuer.`,
    });
  });
});
