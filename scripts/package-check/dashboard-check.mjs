// Run by scripts/check-package.sh inside the scratch app: the installed package serves the dashboard's
// page and assets, read from its own folder under node_modules (not from a repository checkout).
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WorkflowDashboardModule, WorkflowModule } from 'nestjs-redis-workflows';

class DashboardCheckModule {}
Module({ imports: [WorkflowModule.forRoot({ connection: process.env.REDIS_URL, worker: false }), WorkflowDashboardModule.forRoot({ path: '/workflows' })] })(
  DashboardCheckModule,
);
const app = await NestFactory.create(DashboardCheckModule, { logger: ['error'] });
await app.listen(0, '127.0.0.1');
const base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
try {
  for (const [path, expected] of [['/workflows', '<html'], ['/workflows/assets/dashboard.js', 'fetch'], ['/workflows/assets/dashboard.css', '{']]) {
    const response = await fetch(`${base}${path}`);
    const text = await response.text();
    if (response.status !== 200 || !text.includes(expected)) throw new Error(`GET ${path} answered ${response.status}: ${text.slice(0, 200)}`);
  }
} finally {
  await app.close();
}
