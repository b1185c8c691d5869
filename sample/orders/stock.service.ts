import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Redis } from 'ioredis';
import type { RedisTx } from '../../lib/index.js';

/** The Redis URL the sample's own data (the stock) lives at: the one the workflows use. */
export const SHOP_REDIS_URL = Symbol('SHOP_REDIS_URL');

/** Units of each SKU a fresh shop starts with. */
const INITIAL_STOCK = 1_000;

/**
 * The inventory, in the same Redis as the workflows: a stock level per SKU and the reservations of
 * orders. Reservations are queued on a Redis step (ctx.step.redis): the stock level and the order's
 * reservation change inside the call that commits the step, so a crash, a retry or a replay reserves
 * nothing twice, and a compensation puts the stock back exactly once (Redis' inventory example: DECRBY
 * and the order status in one atomic call). Reads go through a connection of the app's own.
 */
@Injectable()
export class StockService implements OnModuleDestroy {
  private connection?: Redis;

  constructor(@Inject(SHOP_REDIS_URL) private readonly redisUrl: string) {}

  /** Queues a reservation: the SKU's stock goes down and the order's reservation is recorded. */
  reserve(tx: RedisTx, orderId: string, sku: string, quantity: number): void {
    tx.decrby(stockKey(sku), quantity).hset(RESERVATIONS, orderId, `${sku}x${quantity}`);
  }

  /** Queues the release of an order's reservation (its compensation). */
  release(tx: RedisTx, orderId: string, sku: string, quantity: number): void {
    tx.incrby(stockKey(sku), quantity).hdel(RESERVATIONS, orderId).rpush(RELEASED, orderId);
  }

  /** Gives each SKU its initial stock, unless the shop has it already. */
  async stockUp(skus: string[]): Promise<void> {
    await Promise.all(skus.map((sku) => this.redis.set(stockKey(sku), INITIAL_STOCK, 'NX')));
  }

  async level(sku: string): Promise<number> {
    return Number(await this.redis.get(stockKey(sku)));
  }

  /** Orders whose reservation was released (by a compensation), oldest first. */
  async released(): Promise<string[]> {
    return this.redis.lrange(RELEASED, 0, -1);
  }

  async onModuleDestroy(): Promise<void> {
    await this.connection?.quit();
  }

  private get redis(): Redis {
    return (this.connection ??= new Redis(this.redisUrl, { maxRetriesPerRequest: 3 }));
  }
}

// Outside the workflows' prefix ('sample'): those keys belong to the engine, and a Redis step may not write them.
const stockKey = (sku: string) => `shop:stock:${sku}`;
const RESERVATIONS = 'shop:reservations';
const RELEASED = 'shop:released';
