import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import type { WorkflowModuleOptions } from '../interfaces/module-options.interface.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import { WorkflowClient } from './workflow.client.js';

export interface StandaloneClient {
  client: WorkflowClient;
  redis: WorkflowRedis;
  /** Closes the connections it opened (a Redis or Cluster instance passed in is left open). */
  close(): Promise<void>;
}

/**
 * A WorkflowClient without a Nest app or workflow classes, for the CLI and scripts: what an API-only app
 * (`worker: false`) has, reading workflows from the registry in Redis that workers write.
 */
export function createStandaloneClient(options: Pick<WorkflowModuleOptions, 'connection' | 'prefix' | 'connectTimeoutMs' | 'version'>): StandaloneClient {
  const redis = new WorkflowRedis({ ...options, worker: false, cron: false });
  const client = new WorkflowClient(redis, new WorkflowRegistry());
  return { client, redis, close: () => redis.onApplicationShutdown() };
}
