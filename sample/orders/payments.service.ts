import { Injectable } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';
import { NonRetriableError, Step, currentStep } from '../../lib/index.js';

export interface Charge {
  chargeId: string;
  amountCents: number;
}

/** Thrown when the card is refused: retrying cannot help, so the run fails at once. */
export class PaymentDeclinedError extends NonRetriableError {}

/** A simulated payment provider client. */
@Injectable()
export class PaymentsService {
  /** Charges made, by idempotency key: what a real provider deduplicates on. */
  readonly charges = new Map<string, Charge>();

  /** A durable step: inside a run its result is stored, and a replay returns it without charging again. */
  @Step({ name: 'charge-payment', retries: 2, backoff: { type: 'fixed', delayMs: 50 } })
  async charge(orderId: string, amountCents: number, paymentToken: string): Promise<Charge> {
    const idempotencyKey = currentStep()?.idempotencyKey ?? `direct:${orderId}`;
    await delay(30 + Math.random() * 40);
    if (paymentToken === 'tok_declined') {
      throw new PaymentDeclinedError(`Payment for order ${orderId} was declined by the card issuer.`);
    }
    const existing = this.charges.get(idempotencyKey);
    if (existing) return existing;
    const charge = { chargeId: `ch_${orderId}`, amountCents };
    this.charges.set(idempotencyKey, charge);
    return charge;
  }
}
