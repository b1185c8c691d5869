import { Injectable } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';

export interface Reservation {
  reservationId: string;
  sku: string;
  quantity: number;
}

/**
 * A simulated inventory. Keyed by the step's idempotency key, so a reservation repeated after a crash
 * (steps are at-least-once) reserves nothing twice.
 */
@Injectable()
export class StockService {
  private readonly reservations = new Map<string, Reservation>();
  readonly released: string[] = [];

  async reserve(sku: string, quantity: number, idempotencyKey: string): Promise<Reservation> {
    await delay(20 + Math.random() * 30);
    const existing = this.reservations.get(idempotencyKey);
    if (existing) return existing;
    const reservation = { reservationId: `res_${this.reservations.size + 1}_${sku}`, sku, quantity };
    this.reservations.set(idempotencyKey, reservation);
    return reservation;
  }

  async release(reservation: Reservation): Promise<void> {
    await delay(10);
    this.released.push(reservation.reservationId);
  }
}
