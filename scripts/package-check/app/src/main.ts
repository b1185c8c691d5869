import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { WorkflowHttpExceptionFilter } from 'nestjs-redis-workflows';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
app.useGlobalFilters(new WorkflowHttpExceptionFilter());
app.enableShutdownHooks();
await app.listen(process.env.PORT ?? 3000);
