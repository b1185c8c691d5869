import { Injectable, Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { installPayloadCodec } from './codecs/payload-codec.js';
import { WorkflowExplorer } from './discovery/workflow-explorer.js';
import { WorkflowRegistry } from './discovery/workflow-registry.js';
import { WorkflowRedis } from './redis/workflow-redis.js';
import { CronTriggerService } from './scheduler/cron-trigger.service.js';
import { WorkflowWorker } from './worker/workflow-worker.js';
import { registryEntry } from './discovery/registry-entry.js';

/**
 * The module's lifecycle, in Nest's order: discover and load the library on init, start the worker on
 * bootstrap, drain it before shutdown; WorkflowRedis closes the owned connections on shutdown.
 */
@Injectable()
export class WorkflowLifecycle implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('WorkflowModule');
  private uninstallCodec?: () => void;

  constructor(
    private readonly explorer: WorkflowExplorer,
    private readonly registry: WorkflowRegistry,
    private readonly redis: WorkflowRedis,
    private readonly worker: WorkflowWorker,
    private readonly cron: CronTriggerService,
  ) {}

  async onModuleInit(): Promise<void> {
    const codec = this.redis.settings.codec;
    if (codec) this.uninstallCodec = installPayloadCodec(codec);
    try {
      this.explorer.explore();
      await this.cron.prepare();
    } catch (error) {
      await this.redis.connections.close();
      throw error;
    }
    await this.redis.ready();
    if (this.redis.settings.worker) await this.registerWorkflows();
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.worker.start();
    this.cron.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.cron.stop();
    await this.worker.stop(this.redis.settings.shutdownGraceMs);
  }

  onApplicationShutdown(): void {
    this.uninstallCodec?.();
  }

  /** Lets API-only apps emit these workflows by name, and operators list them. */
  private async registerWorkflows(): Promise<void> {
    const entries = this.registry.all().map((w) => ({ name: w.name, meta: registryEntry(w.name, w.options, !!w.onFailure, 'worker') }));
    try {
      await this.redis.store.register(entries);
    } catch (error) {
      await this.redis.connections.close();
      throw error;
    }
  }
}
