import { Module } from '@nestjs/common';
import { WorkflowModule } from '../lib/index.js';
import { CheckoutWorkflow } from './orders/checkout.workflow.js';
import { OrdersController } from './orders/orders.controller.js';
import { PaymentsService } from './orders/payments.service.js';
import { StockService } from './orders/stock.service.js';

export interface SampleOptions {
  /** Redis URL; default REDIS_URL or redis://127.0.0.1:6379. */
  redisUrl?: string;
  /** Key namespace; the sample keeps its keys apart from other apps on the same Redis. */
  prefix?: string;
}

@Module({})
export class AppModule {
  static register(options: SampleOptions = {}) {
    return {
      module: AppModule,
      imports: [
        WorkflowModule.forRoot({
          connection: options.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
          prefix: options.prefix ?? 'sample',
          worker: { concurrency: 10 },
          // Sample runs are throw-away: later sample runs sweep them after an hour.
          retention: { succeededMs: 3_600_000, failedMs: 3_600_000, canceledMs: 3_600_000 },
          shutdownGraceMs: 2_000,
        }),
      ],
      controllers: [OrdersController],
      providers: [StockService, PaymentsService, CheckoutWorkflow],
    };
  }
}
