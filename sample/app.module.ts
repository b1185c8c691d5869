import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { WorkflowDashboardModule, WorkflowHttpExceptionFilter, WorkflowModule, type WorkflowDashboardOptions } from '../lib/index.js';
import { CatalogService } from './imports/catalog.service.js';
import { ImportCatalogWorkflow } from './imports/import-catalog.workflow.js';
import { ImportRowWorkflow } from './imports/import-row.workflow.js';
import { ImportXmlWorkflow } from './imports/import-xml.workflow.js';
import { CheckoutWorkflow } from './orders/checkout.workflow.js';
import { OrdersController } from './orders/orders.controller.js';
import { PaymentsService } from './orders/payments.service.js';
import { SHOP_REDIS_URL, StockService } from './orders/stock.service.js';

export interface SampleOptions {
  /** Redis URL; default REDIS_URL or redis://127.0.0.1:6379. */
  redisUrl?: string;
  /** Key namespace; the sample keeps its keys apart from other apps on the same Redis. */
  prefix?: string;
  /** Mounts the workflow dashboard (`npm run sample:serve` does). */
  dashboard?: WorkflowDashboardOptions;
}

@Module({})
export class AppModule {
  static register(options: SampleOptions = {}) {
    const redisUrl = options.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    return {
      module: AppModule,
      imports: [
        WorkflowModule.forRoot({
          connection: redisUrl,
          prefix: options.prefix ?? 'sample',
          worker: { concurrency: 10 },
          // Sample runs are throw-away: later sample runs sweep them after an hour.
          retention: { succeededMs: 3_600_000, failedMs: 3_600_000, canceledMs: 3_600_000 },
          shutdownGraceMs: 2_000,
        }),
        ...(options.dashboard ? [WorkflowDashboardModule.forRoot(options.dashboard)] : []),
      ],
      controllers: [OrdersController],
      providers: [
        // Answers the library's errors over HTTP (400, 404, 409, 504, 500 for a failed run) for every controller.
        { provide: APP_FILTER, useClass: WorkflowHttpExceptionFilter },
        // The shop's stock lives in the same Redis (see StockService).
        { provide: SHOP_REDIS_URL, useValue: redisUrl },
        ...[StockService, PaymentsService, CheckoutWorkflow, CatalogService, ImportCatalogWorkflow, ImportRowWorkflow, ImportXmlWorkflow],
      ],
    };
  }
}
