import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { WorkflowHttpExceptionFilter } from 'nestjs-redis-workflows';
import request from 'supertest';
import { AppModule } from '../src/app.module.js';

describe('POST /orders', () => {
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication();
    app.useGlobalFilters(new WorkflowHttpExceptionFilter());
    await app.init();
  });

  afterAll(async () => {
    await app.close();
  });

  it('runs a checkout to its end', async () => {
    const started = await request(app.getHttpServer()).post('/orders').send({ orderId: 'o-1', amountCents: 1200 }).expect(202);
    const result = await request(app.getHttpServer()).get(`/orders/${started.body.runId}/result`).expect(200);
    expect(result.body).toEqual({ orderId: 'o-1', chargeId: 'ch_o-1' });
  });

  it('refuses an invalid order with 400, and answers 404 for an unknown run', async () => {
    const refused = await request(app.getHttpServer()).post('/orders').send({ orderId: 'o-2', amountCents: 0 }).expect(400);
    expect(refused.body).toEqual({ statusCode: 400, message: ['amountCents must not be less than 1'], error: 'Bad Request' });
    await request(app.getHttpServer()).get('/orders/no-such-run').expect(404);
  });
});
