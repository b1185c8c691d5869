import { Module, type DynamicModule, type Provider, type Type } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { WorkflowClient } from './client/workflow.client.js';
import { WorkflowExplorer } from './discovery/workflow-explorer.js';
import { WorkflowRegistry } from './discovery/workflow-registry.js';
import { WorkflowConfigurationError } from './errors/workflow.errors.js';
import type { WorkflowModuleAsyncOptions, WorkflowModuleOptions, WorkflowOptionsFactory } from './interfaces/module-options.interface.js';
import { WorkflowRedis } from './redis/workflow-redis.js';
import { CronTriggerService } from './scheduler/cron-trigger.service.js';
import { WorkflowWorker } from './worker/workflow-worker.js';
import { WORKFLOW_MODULE_OPTIONS } from './workflow.constants.js';
import { WorkflowLifecycle } from './workflow.lifecycle.js';
import { WorkflowHealthIndicator } from './health/workflow-health.indicator.js';
import { WorkflowEvents } from './observability/workflow-events.js';
import { WorkflowEventsExplorer } from './observability/workflow-events.explorer.js';
import { WorkflowObserver } from './observability/workflow-observer.js';
import { WorkflowMetrics } from './observability/metrics/workflow-metrics.js';

const OPS_PROVIDERS: Provider[] = [WorkflowEvents, WorkflowEventsExplorer, WorkflowObserver, WorkflowHealthIndicator, WorkflowMetrics];
const CORE_PROVIDERS: Provider[] = [WorkflowRedis, WorkflowRegistry, WorkflowExplorer, WorkflowClient, WorkflowWorker, CronTriggerService, WorkflowLifecycle, ...OPS_PROVIDERS];
const EXPORTS = [WorkflowClient, WorkflowRegistry, WorkflowRedis, WorkflowWorker, WorkflowEvents, WorkflowHealthIndicator];

/** Durable workflows on Redis. Import once (it is global) with forRoot or forRootAsync. */
@Module({})
export class WorkflowModule {
  static forRoot(options: WorkflowModuleOptions = {}): DynamicModule {
    return {
      global: true,
      module: WorkflowModule,
      imports: [DiscoveryModule],
      providers: [{ provide: WORKFLOW_MODULE_OPTIONS, useValue: options }, ...CORE_PROVIDERS],
      exports: EXPORTS,
    };
  }

  static forRootAsync(options: WorkflowModuleAsyncOptions): DynamicModule {
    return {
      global: true,
      module: WorkflowModule,
      imports: [DiscoveryModule, ...(options.imports ?? [])],
      providers: [...this.createAsyncProviders(options), ...(options.extraProviders ?? []), ...CORE_PROVIDERS],
      exports: EXPORTS,
    };
  }

  private static createAsyncProviders(options: WorkflowModuleAsyncOptions): Provider[] {
    if (options.useFactory) {
      return [{ provide: WORKFLOW_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] }];
    }
    const factoryClass: Type<WorkflowOptionsFactory> | undefined = options.useExisting ?? options.useClass;
    if (!factoryClass) {
      throw new WorkflowConfigurationError('WorkflowModule.forRootAsync() needs useFactory, useClass or useExisting.');
    }
    const providers: Provider[] = [
      {
        provide: WORKFLOW_MODULE_OPTIONS,
        useFactory: (factory: WorkflowOptionsFactory) => factory.createWorkflowOptions(),
        inject: [factoryClass],
      },
    ];
    if (options.useClass) providers.push({ provide: options.useClass, useClass: options.useClass });
    return providers;
  }
}
