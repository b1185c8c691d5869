import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext, type WorkflowHandler } from 'nestjs-redis-workflows';
import { CheckoutInput } from './checkout.input.js';
import { PaymentsService } from './payments.service.js';

export interface CheckoutResult {
  orderId: string;
  chargeId: string;
}

@Workflow('checkout', { input: CheckoutInput })
@Injectable()
export class CheckoutWorkflow implements WorkflowHandler<CheckoutInput, CheckoutResult> {
  constructor(private readonly payments: PaymentsService) {}

  async execute(ctx: WorkflowContext<CheckoutInput>): Promise<CheckoutResult> {
    const charge = await this.payments.charge(ctx.input.orderId, ctx.input.amountCents);
    await ctx.step.sleep('cool-down', 100); // durable: the run is parked, no worker slot is held
    return { orderId: ctx.input.orderId, chargeId: charge.chargeId };
  }
}
