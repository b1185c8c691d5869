import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  Body,
  Controller,
  Delete,
  ForbiddenException,
  Get,
  Injectable,
  Param,
  Post,
  Query,
  ValidationPipe,
  type INestApplication,
} from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { Type } from 'class-transformer';
import { IsInt, IsString, Min, ValidateNested } from 'class-validator';
import request from 'supertest';
import {
  NonRetriableError,
  Workflow,
  WorkflowClient,
  WorkflowHttpExceptionFilter,
  WorkflowModule,
  type WorkflowContext,
} from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';

class LineDto {
  @IsString()
  sku!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}

class OrderDto {
  @IsString()
  orderId!: string;

  @ValidateNested({ each: true })
  @Type(() => LineDto)
  lines!: LineDto[];
}

@Workflow('http-order', { input: OrderDto })
@Injectable()
class OrderWorkflow {
  async execute(ctx: WorkflowContext<OrderDto>): Promise<{ lines: number }> {
    return { lines: ctx.input.lines.length };
  }
}

class PaymentDeclinedError extends NonRetriableError {}

@Workflow('http-declined')
@Injectable()
class DeclinedWorkflow {
  async execute(): Promise<never> {
    throw new PaymentDeclinedError('The card was declined.');
  }
}

@Workflow('http-approval')
@Injectable()
class ApprovalWorkflow {
  async execute(ctx: WorkflowContext<{ id: string }>): Promise<unknown> {
    return ctx.step.waitForEvent('approval', { event: 'approved', key: ctx.input.id });
  }
}

/** A controller as a user writes it with the filter: no try/catch, the library's errors answer themselves. */
@Controller('wf')
class WorkflowsController {
  constructor(private readonly client: WorkflowClient) {}

  @Post(':workflow')
  async start(@Param('workflow') workflow: string, @Body() input: object): Promise<{ runId: string }> {
    const handle = await this.client.emit(workflow, input);
    return { runId: handle.id };
  }

  @Get('runs/:id')
  state(@Param('id') id: string) {
    return this.client.handle(id).getState();
  }

  @Get('runs/:id/result')
  result(@Param('id') id: string, @Query('timeoutMs') timeoutMs?: string) {
    return this.client.handle(id).result({ timeoutMs: timeoutMs === undefined ? 10_000 : Number(timeoutMs) });
  }

  @Delete('runs/:id')
  async cancel(@Param('id') id: string): Promise<{ canceled: boolean }> {
    return { canceled: await this.client.handle(id).cancel() };
  }

  /** The same DTO through Nest's ValidationPipe, set as emit() validates (whitelist, forbidNonWhitelisted). */
  @Post('pipe/order')
  pipe(@Body(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true })) order: OrderDto): OrderDto {
    return order;
  }

  @Get('forbidden')
  forbidden(): never {
    throw new ForbiddenException('Not yours.');
  }

  /** A misuse of the client (a priority out of range): a WorkflowError with no HTTP meaning of its own. */
  @Get('misuse')
  async misuse(): Promise<unknown> {
    return this.client.emit('http-declined', {}, { priority: 9999 });
  }

  @Get('bug')
  bug(): never {
    throw new TypeError('a bug in the controller');
  }
}

const registrations = [
  ['app.useGlobalFilters(new WorkflowHttpExceptionFilter())', 'global'],
  ['{ provide: APP_FILTER, useClass: WorkflowHttpExceptionFilter }', 'provider'],
] as const;

describe.each(registrations)('WorkflowHttpExceptionFilter registered with %s (e2e: HTTP app, real Redis)', (_title, style) => {
  let redis: TestRedis;
  let app: INestApplication;
  const http = () => request(app.getHttpServer());
  const unknownRunId = '01M7Z8A2WVN7Y6RGA643PXHA42.default.0';

  beforeAll(async () => {
    redis = await redisUrlForTests();
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: redis.url, prefix: uniquePrefix(`http-${style}`) })],
      controllers: [WorkflowsController],
      providers: [
        OrderWorkflow,
        DeclinedWorkflow,
        ApprovalWorkflow,
        ...(style === 'provider' ? [{ provide: APP_FILTER, useClass: WorkflowHttpExceptionFilter }] : []),
      ],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    if (style === 'global') app.useGlobalFilters(new WorkflowHttpExceptionFilter());
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });

  it('answers a valid emit and its result as usual', async () => {
    const { body } = await http().post('/wf/http-order').send({ orderId: 'o1', lines: [{ sku: 'mug', quantity: 2 }] }).expect(201);
    await http().get(`/wf/runs/${body.runId}/result`).expect(200, { lines: 1 });
  });

  it('InputValidationError: 400 with the body ValidationPipe gives for the same DTO, nested messages included', async () => {
    const invalid = { orderId: 7, lines: [{ sku: 'mug', quantity: 0 }], coupon: 'FREE' };
    const viaPipe = await http().post('/wf/pipe/order').send(invalid).expect(400);
    const viaEmit = await http().post('/wf/http-order').send(invalid).expect(400);
    expect(viaEmit.body).toEqual(viaPipe.body);
    expect(viaEmit.body).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      message: expect.arrayContaining(['property coupon should not exist', 'orderId must be a string', 'lines.0.quantity must not be less than 1']),
    });
    const notAnObject = await http().post('/wf/http-order').set('content-type', 'application/json').send('[1]').expect(400);
    expect(notAnObject.body).toEqual({ statusCode: 400, error: 'Bad Request', message: [expect.stringContaining('must be an object')] });
  });

  it('UnknownWorkflowError: 404', async () => {
    const { body } = await http().post('/wf/no-such-workflow').send({}).expect(404);
    expect(body).toEqual({ statusCode: 404, error: 'Not Found', name: 'UnknownWorkflowError', message: expect.stringContaining("Unknown workflow 'no-such-workflow'") });
  });

  it('an unknown run id, well-formed or not: 404 from getState() and result()', async () => {
    for (const id of [unknownRunId, 'not-a-run-id']) {
      for (const path of [`/wf/runs/${id}`, `/wf/runs/${id}/result`]) {
        const { body } = await http().get(path).expect(404);
        expect(body).toEqual({ statusCode: 404, error: 'Not Found', name: 'RunNotFoundError', runId: id, message: expect.stringContaining('does not exist') });
      }
    }
    await http().delete(`/wf/runs/${unknownRunId}`).expect(200, { canceled: false });
  });

  it('WaitTimeoutError: 504 carrying the run id; the run goes on, and once canceled its result is 409', async () => {
    const { body: started } = await http().post('/wf/http-approval').send({ id: 'a1' }).expect(201);
    const { body } = await http().get(`/wf/runs/${started.runId}/result?timeoutMs=200`).expect(504);
    expect(body).toEqual({ statusCode: 504, error: 'Gateway Timeout', name: 'WaitTimeoutError', runId: started.runId, message: expect.stringContaining('did not finish within 200 ms') });
    await http().get(`/wf/runs/${started.runId}`).expect(200);

    await http().delete(`/wf/runs/${started.runId}`).expect(200, { canceled: true });
    const canceled = await http().get(`/wf/runs/${started.runId}/result`).expect(409);
    expect(canceled.body).toEqual({ statusCode: 409, error: 'Conflict', name: 'CanceledError', runId: started.runId, message: 'The run was canceled.' });
  });

  it("a failed run's result: 500 with the run id and the error's name and message, no stack", async () => {
    const { body: started } = await http().post('/wf/http-declined').send({}).expect(201);
    const { body } = await http().get(`/wf/runs/${started.runId}/result`).expect(500);
    expect(body).toEqual({ statusCode: 500, error: 'Internal Server Error', name: 'PaymentDeclinedError', runId: started.runId, message: 'The card was declined.' });
  });

  it("leaves other exceptions, and the library's errors without an HTTP meaning, to Nest's default answer", async () => {
    await http().get('/wf/forbidden').expect(403, { statusCode: 403, message: 'Not yours.', error: 'Forbidden' });
    await http().get('/wf/misuse').expect(500, { statusCode: 500, message: 'Internal server error' });
    await http().get('/wf/bug').expect(500, { statusCode: 500, message: 'Internal server error' });
  });
});
