import { Body, Controller, Get, HttpCode, NotFoundException, Param, Post, Query } from '@nestjs/common';
import { WorkflowClient, type RunInfo, type RunStatus } from '../../lib/index.js';
import { CheckoutWorkflow } from './checkout.workflow.js';
import type { CheckoutDto, CheckoutResult } from './checkout.dto.js';

/**
 * No try/catch: WorkflowHttpExceptionFilter (registered in AppModule) answers the library's errors, e.g.
 * an invalid order 400 with the validation messages, an unknown run id 404, a declined order's result 500.
 */
@Controller('orders')
export class OrdersController {
  constructor(private readonly workflows: WorkflowClient) {}

  /** Starts a checkout and answers at once; the order id is the idempotency key, so a resent POST starts nothing new. */
  @Post()
  @HttpCode(202)
  async checkout(@Body() order: CheckoutDto): Promise<{ runId: string; status: RunStatus }> {
    // An order without an id is refused by the input's validation, which needs no idempotency key.
    const orderId = typeof order?.orderId === 'string' && order.orderId !== '' ? order.orderId : undefined;
    const handle = await this.workflows.emit(CheckoutWorkflow, order, { idempotencyKey: orderId });
    const run = await handle.getState();
    return { runId: handle.id, status: run.status };
  }

  @Get(':runId')
  async getRun(@Param('runId') runId: string): Promise<RunInfo> {
    const run = await this.workflows.handle(runId).getState();
    if (run.workflow !== 'checkout') throw new NotFoundException(`No checkout run ${runId}.`);
    return run;
  }

  /** Waits for the checkout's outcome: 504 with the run id when it takes longer than `timeoutMs` (default 5 s). */
  @Get(':runId/result')
  result(@Param('runId') runId: string, @Query('timeoutMs') timeoutMs?: string): Promise<CheckoutResult> {
    return this.workflows.handle<CheckoutResult>(runId).result({ timeoutMs: timeoutMs === undefined ? 5_000 : Number(timeoutMs) });
  }
}
