import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { errorMessage } from '../errors/error-codec.js';
import type { WorkflowModuleOptions } from '../interfaces/module-options.interface.js';
import { WORKFLOW_MODULE_OPTIONS } from '../workflow.constants.js';
import { resolveSettings, type WorkflowSettings } from '../workflow-settings.js';
import { DEFAULTS } from '../workflow.constants.js';
import { ChannelSubscriber } from './channel-subscriber.js';
import { describeConnection } from './connection-description.js';
import { FunctionLoader } from './function-loader.js';
import { KeySpace } from './keys.js';
import { RedisConnections } from './redis-connections.js';
import { WorkflowStore } from './workflow-store.js';

/**
 * Owns the module's Redis side: connections, the Function library, the typed store and pub/sub.
 * `ready` resolves once Redis is reachable and the library is loaded (WorkflowClient waits for it).
 */
@Injectable()
export class WorkflowRedis implements OnApplicationShutdown {
  readonly settings: WorkflowSettings;
  readonly keys: KeySpace;
  readonly connections: RedisConnections;
  readonly loader: FunctionLoader;
  readonly store: WorkflowStore;
  /** The store the worker's transitions go through: on a connection of their own (see RedisConnections). */
  readonly workerStore: WorkflowStore;
  readonly subscriber: ChannelSubscriber;
  private readiness?: Promise<void>;
  /** Set once ready() has resolved: callers on hot paths skip the wait. */
  isReady = false;
  /** The server, password masked, for log lines and errors. */
  readonly where: string;
  private readonly logger = new Logger('WorkflowRedis');

  constructor(@Inject(WORKFLOW_MODULE_OPTIONS) options: WorkflowModuleOptions) {
    this.settings = resolveSettings(options);
    this.where = describeConnection(options.connection, DEFAULTS.connection);
    this.keys = new KeySpace(this.settings.prefix);
    this.connections = new RedisConnections(options.connection, this.settings.worker !== false);
    this.loader = new FunctionLoader(this.connections.command, this.keys, { trustedHashes: this.settings.trustedLibraryHashes });
    this.store = new WorkflowStore(this.connections.command, this.keys, this.loader);
    this.workerStore =
      this.connections.worker === this.connections.command ? this.store : new WorkflowStore(this.connections.worker, this.keys, this.loader);
    this.subscriber = new ChannelSubscriber(this.connections.subscriber);
  }

  /** Connects and loads the library; on failure closes what it opened and rethrows. */
  ready(): Promise<void> {
    this.readiness ??= (async () => {
      try {
        const timeoutMs = this.settings.connectTimeoutMs;
        this.logger.log(`Connecting to Redis at ${this.where} (waiting up to ${timeoutMs} ms, option connectTimeoutMs)`);
        await this.connections.connect(timeoutMs, this.where, (error) =>
          this.logger.warn(`Redis at ${this.where} is not reachable yet (${errorMessage(error)}); retrying for up to ${timeoutMs} ms. Start Redis or fix the connection option.`),
        );
        await this.loader.ensureLoaded();
        this.isReady = true;
      } catch (error) {
        await this.connections.close();
        throw error;
      }
    })();
    return this.readiness;
  }

  private readonly shutdownListeners = new Set<() => void>();

  /** Called once when the app shuts down, before the connections close. */
  onShutdown(listener: () => void): void {
    this.shutdownListeners.add(listener);
  }

  async onApplicationShutdown(): Promise<void> {
    this.store.close();
    this.workerStore.close();
    for (const listener of this.shutdownListeners) listener();
    await this.connections.close();
  }
}
