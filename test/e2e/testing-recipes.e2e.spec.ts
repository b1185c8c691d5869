/**
 * The recipes of docs/testing.md, run as tests. Each `#region recipe:<name>` below is shown verbatim in
 * docs/testing.md (with '../../lib/index.js' spelled 'nestjs-redis-workflows'); the last test fails when
 * the guide and this file disagree, so the recipes cannot rot.
 */
import { readFile } from 'node:fs/promises';
// #region recipe:imports
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { BadRequestException, Body, Controller, Get, Injectable, Param, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { IsInt, IsString, Min } from 'class-validator';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import request from 'supertest';
import {
  InputValidationError,
  NonRetriableError,
  Step,
  Workflow,
  WorkflowClient,
  WorkflowModule,
  runInline,
  type WorkflowContext,
} from '../../lib/index.js';
// #endregion

// #region recipe:app
export class CheckoutInput {
  @IsString() orderId!: string;
  @IsInt() @Min(1) amount!: number;
}

@Injectable()
export class PaymentsService {
  async capture(orderId: string, amount: number, idempotencyKey: string) {
    return { chargeId: `ch_${orderId}`, amount, idempotencyKey }; // a real one calls the payment provider
  }
  async refund(chargeId: string) {
    return { refunded: chargeId };
  }
}

@Injectable()
export class StockService {
  @Step({ name: 'reserve-stock', retries: 2 })
  async reserve(orderId: string) {
    return { reservationId: `res_${orderId}` };
  }
}

@Workflow('checkout', { input: CheckoutInput })
@Injectable()
export class CheckoutWorkflow {
  constructor(
    private readonly payments: PaymentsService,
    private readonly stock: StockService,
  ) {}

  async execute(ctx: WorkflowContext<CheckoutInput>) {
    const charge = await ctx.step.run('charge', (s) => this.payments.capture(ctx.input.orderId, ctx.input.amount, s.idempotencyKey), {
      compensate: (c) => this.payments.refund(c.chargeId),
    });
    const reservation = await this.stock.reserve(ctx.input.orderId);
    await ctx.step.sleep('settle', 20);
    return { chargeId: charge.chargeId, reservationId: reservation.reservationId };
  }
}

@Controller('orders')
export class OrdersController {
  constructor(private readonly workflows: WorkflowClient) {}

  @Post()
  async create(@Body() body: CheckoutInput) {
    try {
      const run = await this.workflows.emit(CheckoutWorkflow, body);
      return { runId: run.id };
    } catch (error) {
      if (error instanceof InputValidationError) throw new BadRequestException(error.message);
      throw error;
    }
  }

  @Get(':runId')
  async status(@Param('runId') runId: string) {
    const run = await this.workflows.getRun(runId);
    return { status: run?.status, output: run?.output };
  }
}
// #endregion

// #region recipe:unit
describe('CheckoutWorkflow (unit, runInline: no Redis)', () => {
  it('charges and reserves', async () => {
    const moduleRef = await Test.createTestingModule({ providers: [CheckoutWorkflow, PaymentsService, StockService] }).compile();

    const result = await runInline(moduleRef.get(CheckoutWorkflow), {
      input: { orderId: 'o1', amount: 20 },
      runId: 'run-1',
    });

    expect(result.succeeded).toBe(true);
    expect(result.output).toEqual({ chargeId: 'ch_o1', reservationId: 'res_o1' });
    expect(result.steps.map((s) => `${s.name}:${s.status}`)).toEqual(['charge:succeeded', 'reserve-stock:succeeded', 'settle:succeeded']);
  });

  it('refunds the charge when stock cannot be reserved', async () => {
    const moduleRef = await Test.createTestingModule({ providers: [CheckoutWorkflow, PaymentsService, StockService] }).compile();
    const refund = jest.spyOn(moduleRef.get(PaymentsService), 'refund');

    const result = await runInline(moduleRef.get(CheckoutWorkflow), {
      input: { orderId: 'o2', amount: 20 },
      stepOverrides: {
        charge: { chargeId: 'ch_fake' },
        'reserve-stock': () => {
          throw new NonRetriableError('out of stock');
        },
      },
    });

    expect(result.succeeded).toBe(false);
    expect(result.error?.message).toBe('out of stock');
    expect(refund).toHaveBeenCalledWith('ch_fake');
    expect(result.steps.map((s) => `${s.name}:${s.status}`)).toEqual(['charge:compensated', 'reserve-stock:failed']);
  });
});
// #endregion

// #region recipe:redis
/** A throw-away redis-server on a free port, for one test file. */
async function startPrivateRedis() {
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (chunk) => String(chunk).includes('Ready to accept connections') && resolve());
    server.once('error', reject);
    server.once('exit', () => reject(new Error('redis-server exited; is it installed?')));
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      server.kill();
      await once(server, 'exit');
    },
  };
}
// #endregion

// #region recipe:integration
describe('CheckoutWorkflow (integration: real module, real Redis)', () => {
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  beforeAll(async () => {
    redis = await startPrivateRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('runs through the worker with a fake payment provider', async () => {
    const payments = { capture: jest.fn(async () => ({ chargeId: 'ch_fake' })), refund: jest.fn() };
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url })],
      providers: [CheckoutWorkflow, StockService, { provide: PaymentsService, useValue: payments }],
    }).compile();
    await moduleRef.init();
    try {
      const client = moduleRef.get(WorkflowClient);
      const output = await client.run(CheckoutWorkflow, { orderId: 'o3', amount: 5 }, { timeoutMs: 10_000 });

      expect(output).toEqual({ chargeId: 'ch_fake', reservationId: 'res_o3' });
      expect(payments.capture).toHaveBeenCalledTimes(1);
      expect(payments.capture.mock.calls[0]).toEqual(['o3', 5, expect.stringMatching(/:0:charge$/)]);
    } finally {
      await moduleRef.close(); // the real shutdown path: drains the worker, closes connections
    }
  });
});
// #endregion

// #region recipe:e2e
describe('POST /orders (e2e: HTTP app, real Redis)', () => {
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  let app: INestApplication;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url })],
      controllers: [OrdersController],
      providers: [CheckoutWorkflow, PaymentsService, StockService],
    }).compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });
  afterAll(async () => {
    await app.close();
    await redis.stop();
  });

  it('starts a checkout and reports its result', async () => {
    const created = await request(app.getHttpServer()).post('/orders').send({ orderId: 'o4', amount: 12 }).expect(201);
    const runId: string = created.body.runId;

    let status: { status?: string; output?: unknown } = {};
    for (let i = 0; i < 200 && status.status !== 'succeeded'; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = (await request(app.getHttpServer()).get(`/orders/${runId}`).expect(200)).body;
    }
    expect(status).toEqual({ status: 'succeeded', output: { chargeId: 'ch_o4', reservationId: 'res_o4' } });
  });

  it('answers 400 for an invalid order', async () => {
    await request(app.getHttpServer()).post('/orders').send({ orderId: 'o5', amount: 0 }).expect(400);
  });
});
// #endregion

// #region recipe:faults
describe('CheckoutWorkflow under injected faults', () => {
  it('charges once although the worker crashes after the charge (runInline)', async () => {
    const moduleRef = await Test.createTestingModule({ providers: [CheckoutWorkflow, PaymentsService, StockService] }).compile();
    const keys = new Set<string>();
    const capture = jest.spyOn(moduleRef.get(PaymentsService), 'capture').mockImplementation(async (orderId, amount, idempotencyKey) => {
      keys.add(idempotencyKey); // the provider books one charge per idempotency key
      return { chargeId: `ch_${orderId}`, amount, idempotencyKey };
    });

    const result = await runInline(moduleRef.get(CheckoutWorkflow), {
      input: { orderId: 'o6', amount: 20 },
      faults: { crashAfterStep: ['charge'], repeatStep: ['reserve-stock'] },
    });

    expect(result.succeeded).toBe(true);
    expect(result.injectedFaults?.map((f) => `${f.fault}:${f.step}`)).toEqual(['crashAfterStep:charge', 'repeatStep:reserve-stock']);
    expect(capture).toHaveBeenCalledTimes(2); // the crash made the step run again...
    expect(keys.size).toBe(1); // ...with the same idempotency key: one charge
  });

  it('charges once although the worker crashes after the charge (real module, real Redis)', async () => {
    const redis = await startPrivateRedis();
    const keys = new Set<string>();
    const payments = {
      capture: jest.fn(async (orderId: string, _amount: number, idempotencyKey: string) => {
        keys.add(idempotencyKey);
        return { chargeId: `ch_${orderId}` };
      }),
      refund: jest.fn(),
    };
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url, faults: { crashAfterStep: ['charge'] } })],
      providers: [CheckoutWorkflow, StockService, { provide: PaymentsService, useValue: payments }],
    }).compile();
    await moduleRef.init();
    try {
      const output = await moduleRef.get(WorkflowClient).run(CheckoutWorkflow, { orderId: 'o7', amount: 5 }, { timeoutMs: 10_000 });

      expect(output).toEqual({ chargeId: 'ch_o7', reservationId: 'res_o7' });
      expect(payments.capture).toHaveBeenCalledTimes(2);
      expect(keys.size).toBe(1);
    } finally {
      await moduleRef.close();
      await redis.stop();
    }
  });
});
// #endregion

describe('docs/testing.md', () => {
  it('shows each recipe of this file verbatim', async () => {
    const guide = await readFile(new URL('../../docs/testing.md', import.meta.url), 'utf8');
    const source = await readFile(new URL(import.meta.url), 'utf8');
    const regions = [...source.matchAll(/^\/\/ #region recipe:(\S+)\n([\s\S]*?)^\/\/ #endregion$/gm)];
    expect(regions.map((r) => r[1])).toEqual(['imports', 'app', 'unit', 'redis', 'integration', 'e2e', 'faults']);
    for (const [, name, code] of regions) {
      const shown = code.replace("'../../lib/index.js'", "'nestjs-redis-workflows'");
      if (!guide.includes(shown)) throw new Error(`docs/testing.md does not show recipe '${name}' as it is in ${new URL(import.meta.url).pathname}`);
    }
  });
});
