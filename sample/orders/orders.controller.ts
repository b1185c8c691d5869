import { BadRequestException, Body, Controller, Get, HttpCode, NotFoundException, Param, Post } from '@nestjs/common';
import { InputValidationError, WorkflowClient, type RunInfo, type RunStatus } from '../../lib/index.js';
import { CheckoutWorkflow } from './checkout.workflow.js';
import type { CheckoutDto } from './checkout.dto.js';

@Controller('orders')
export class OrdersController {
  constructor(private readonly workflows: WorkflowClient) {}

  /** Starts a checkout and answers at once; the order id is the idempotency key, so a resent POST starts nothing new. */
  @Post()
  @HttpCode(202)
  async checkout(@Body() order: CheckoutDto): Promise<{ runId: string; status: RunStatus }> {
    try {
      const orderId = typeof order?.orderId === 'string' && order.orderId !== '' ? order.orderId : undefined;
      const handle = await this.workflows.emit(CheckoutWorkflow, order, { idempotencyKey: orderId });
      const run = await handle.getState();
      return { runId: handle.id, status: run.status };
    } catch (error) {
      if (error instanceof InputValidationError) throw new BadRequestException(error.message);
      throw error;
    }
  }

  @Get(':runId')
  async getRun(@Param('runId') runId: string): Promise<RunInfo> {
    const run = await this.workflows.getRun(runId);
    if (!run || run.workflow !== 'checkout') throw new NotFoundException(`No checkout run ${runId}.`);
    return run;
  }
}
