import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { WorkflowClient } from 'nestjs-redis-workflows';
import { CheckoutInput } from './checkout.input.js';
import { CheckoutWorkflow, type CheckoutResult } from './checkout.workflow.js';

@Controller('orders')
export class OrdersController {
  constructor(private readonly workflows: WorkflowClient) {}

  @Post()
  @HttpCode(202)
  async checkout(@Body() order: CheckoutInput): Promise<{ runId: string }> {
    const run = await this.workflows.emit(CheckoutWorkflow, order);
    return { runId: run.id };
  }

  @Get(':runId')
  status(@Param('runId') runId: string) {
    return this.workflows.handle(runId).getState();
  }

  @Get(':runId/result')
  result(@Param('runId') runId: string): Promise<CheckoutResult> {
    return this.workflows.handle<CheckoutResult>(runId).result({ timeoutMs: 10_000 });
  }
}
