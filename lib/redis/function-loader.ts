import { Logger } from '@nestjs/common';
import { Cluster, type Redis } from 'ioredis';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import { loadLuaLibrary, type LuaLibrary } from './lua-library.js';
import type { RedisClient } from './redis-connections.js';

const VERSION_FUNCTION = 'wf1_version';

/**
 * Loads the Function library into Redis when the loaded build is older than this package's (never
 * downgrades), on every primary of a cluster, and again whenever a node answers 'Function not found'
 * (a flushed or restarted server).
 */
export class FunctionLoader {
  private readonly logger = new Logger('WorkflowFunctions');
  readonly library: LuaLibrary = loadLuaLibrary();
  private reloading?: Promise<void>;

  constructor(private readonly client: RedisClient) {}

  async ensureLoaded(): Promise<void> {
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [this.client as Redis];
    await Promise.all(nodes.map((node) => this.ensureLoadedOn(node)));
  }

  /** Called when a call answered 'Function not found': loads again, once for concurrent callers. */
  reload(): Promise<void> {
    this.reloading ??= this.ensureLoaded().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  /** The build loaded on each node (each primary of a cluster); undefined where none is loaded. */
  async loadedBuilds(): Promise<(number | undefined)[]> {
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [this.client as Redis];
    return Promise.all(nodes.map((node) => loadedBuild(node)));
  }

  private async ensureLoadedOn(node: Redis): Promise<void> {
    await assertRedisVersion(node);
    const loaded = await loadedBuild(node);
    if (loaded !== undefined && loaded >= this.library.build) return;
    await node.call('FUNCTION', 'LOAD', 'REPLACE', this.library.code);
    this.logger.log(
      `Loaded Redis Function library ${this.library.name} build ${this.library.build}` +
        (loaded === undefined ? '' : ` (replacing build ${loaded})`),
    );
  }
}

async function loadedBuild(node: Redis): Promise<number | undefined> {
  try {
    return Number(await node.call('FCALL_RO', VERSION_FUNCTION, 0));
  } catch (error) {
    if (isFunctionNotFound(error)) return undefined;
    throw error;
  }
}

export function isFunctionNotFound(error: unknown): boolean {
  return error instanceof Error && /Function not found|No matching script/i.test(error.message);
}

async function assertRedisVersion(node: Redis): Promise<void> {
  const info = String(await node.call('INFO', 'server'));
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0';
  const [major] = version.split('.').map(Number);
  if (major < 7) {
    throw new WorkflowConfigurationError(
      `Redis ${version} at ${node.options.host}:${node.options.port} is too old: nestjs-redis-workflows needs Redis 7.0 or newer (Redis Functions). Upgrade the server.`,
    );
  }
}
