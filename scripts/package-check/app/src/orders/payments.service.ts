import { Injectable } from '@nestjs/common';
import { Step, currentStep } from 'nestjs-redis-workflows';

@Injectable()
export class PaymentsService {
  // A durable step: inside a run its result is stored, and a replay returns it without charging again.
  @Step({ retries: 2 })
  async charge(orderId: string, amountCents: number): Promise<{ chargeId: string; amountCents: number }> {
    const idempotencyKey = currentStep()?.idempotencyKey; // pass it to your payment provider
    console.log(`charging ${amountCents} for ${orderId} (idempotency key ${idempotencyKey})`);
    return { chargeId: `ch_${orderId}`, amountCents };
  }
}
