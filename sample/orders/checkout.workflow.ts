import { Injectable } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';
import { OnFailure, Workflow, type OnFailureContext, type WorkflowContext, type WorkflowHandler } from '../../lib/index.js';
import { CheckoutDto, type CheckoutResult } from './checkout.dto.js';
import { PaymentsService } from './payments.service.js';
import { StockService } from './stock.service.js';

@Workflow('checkout', { input: CheckoutDto, maxAttempts: 3, backoff: { type: 'fixed', delayMs: 100 } })
@Injectable()
export class CheckoutWorkflow implements WorkflowHandler<CheckoutDto, CheckoutResult> {
  /** Orders whose @OnFailure hook ran, with the reason: the sample reports them. */
  readonly failedOrders = new Map<string, string>();

  constructor(
    private readonly stock: StockService,
    private readonly payments: PaymentsService,
  ) {}

  async execute(ctx: WorkflowContext<CheckoutDto>): Promise<CheckoutResult> {
    const { orderId, sku, quantity, amountCents, paymentToken } = ctx.input;

    // A Redis step: the stock level and the reservation change in the call that commits the step, exactly
    // once. If a later step fails for good, the compensation puts the stock back, also in one call.
    await ctx.step.redis('reserve-stock', (tx) => this.stock.reserve(tx, orderId, sku, quantity), {
      compensate: (tx) => this.stock.release(tx, orderId, sku, quantity),
    });

    const charge = await this.payments.charge(orderId, amountCents, paymentToken);

    const confirmedAt = await ctx.step.run('confirm-order', async () => {
      await delay(10);
      return new Date().toISOString();
    });

    return { orderId, reservationId: `res_${orderId}`, chargeId: charge.chargeId, confirmedAt };
  }

  @OnFailure()
  async onFailure(ctx: OnFailureContext<CheckoutDto>): Promise<void> {
    this.failedOrders.set(ctx.input.orderId, ctx.error.message);
    ctx.logger.warn(`Order ${ctx.input.orderId} failed (${ctx.error.message}); notifying the customer.`);
  }
}
