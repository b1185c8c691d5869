import { Module } from '@nestjs/common';
import { WorkflowModule } from 'nestjs-redis-workflows';
import { CheckoutWorkflow } from './orders/checkout.workflow.js';
import { OrdersController } from './orders/orders.controller.js';
import { PaymentsService } from './orders/payments.service.js';

@Module({
  imports: [WorkflowModule.forRoot({ connection: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' })],
  controllers: [OrdersController],
  providers: [CheckoutWorkflow, PaymentsService],
})
export class AppModule {}
