import { errorMessage } from '../errors/error-codec.js';
import { Injectable } from '@nestjs/common';
import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import { WorkflowWorker } from '../worker/workflow-worker.js';
import { judgeMemory, memoryThreshold, readRedisMemory } from './redis-memory.check.js';

/** The shape @nestjs/terminus expects from a health indicator: `{ [key]: { status, ...details } }`. */
export type WorkflowHealthResult<Key extends string = string> = Record<Key, { status: 'up' | 'down'; [detail: string]: unknown }>;

export interface WorkflowHealthOptions {
  /** How long Redis may take to answer before it counts as down. Default 1 000 ms. */
  timeoutMs?: number;
  /** The worker's loop counts as stalled when its last housekeeping tick is older than this. A live worker
   *  ticks at least once a second per shard. Default 10 000 ms. */
  loopStalledAfterMs?: number;
  /** Share of Redis's maxmemory past which memory counts as down, so that health turns down before Redis
   *  refuses writes (at 100 % with noeviction). Checked on every primary of a cluster. Default 0.9. */
  memoryThreshold?: number;
}

/**
 * Thrown by `assertHealthy` when something is down. Carries `causes` (the health result) and
 * `isHealthCheckError`, which is how @nestjs/terminus's HealthCheckError is recognized, so terminus 10
 * and later report it as a failed indicator.
 */
export class WorkflowHealthCheckError extends Error {
  readonly isHealthCheckError = true;
  constructor(
    message: string,
    readonly causes: WorkflowHealthResult,
  ) {
    super(message);
    this.name = 'WorkflowHealthCheckError';
  }
}

type Check = { status: 'up' | 'down'; message?: string; [detail: string]: unknown };

/**
 * Health of this app's workflow module: Redis reachable, the Function library loaded (this package's
 * code, or a newer release's that this app can verify: see FunctionLoader), Redis memory below
 * `memoryThreshold` of maxmemory with an eviction policy that keeps workflow keys, and, when the app runs a
 * worker, its loop alive. It does not import @nestjs/terminus (an optional peer): its result has
 * terminus's HealthIndicatorResult shape, so it plugs into a terminus health check as it is:
 *
 *   @Get('health') @HealthCheck()
 *   check() { return this.health.check([() => this.workflows.isHealthy('workflows')]); }
 */
@Injectable()
export class WorkflowHealthIndicator {
  constructor(
    private readonly redis: WorkflowRedis,
    private readonly worker: WorkflowWorker,
    private readonly registry: WorkflowRegistry,
  ) {}

  /**
   * Returns `{ [key]: { status: 'up' | 'down', redis, library, worker, memory } }`; never throws (except for
   * an invalid `memoryThreshold`). Terminus 11 and
   * later treat a returned 'down' as a failed indicator (as its HealthIndicatorService's `down()` does);
   * use `assertHealthy` for code that expects a throw.
   */
  async isHealthy<Key extends string = 'workflows'>(key: Key = 'workflows' as Key, options: WorkflowHealthOptions = {}): Promise<WorkflowHealthResult<Key>> {
    const timeoutMs = options.timeoutMs ?? 1_000;
    const threshold = memoryThreshold(options.memoryThreshold);
    const [redis, library, memory] = await Promise.all([this.checkRedis(timeoutMs), this.checkLibrary(timeoutMs), this.checkMemory(timeoutMs, threshold)]);
    const worker = this.checkWorker(options.loopStalledAfterMs ?? 10_000);
    const down = [redis, library, worker, memory].filter((c) => c.status === 'down');
    const result = {
      status: down.length === 0 ? 'up' : 'down',
      ...(down.length > 0 ? { message: down.map((c) => c.message).join('; ') } : {}),
      redis,
      library,
      worker,
      memory,
    } as const;
    return { [key]: result } as unknown as WorkflowHealthResult<Key>;
  }

  /** Like isHealthy, but throws a WorkflowHealthCheckError (with `causes`) when something is down. */
  async assertHealthy<Key extends string = 'workflows'>(key: Key = 'workflows' as Key, options: WorkflowHealthOptions = {}): Promise<WorkflowHealthResult<Key>> {
    const result = await this.isHealthy(key, options);
    if (result[key].status === 'down') throw new WorkflowHealthCheckError(`Workflow health check failed: ${String(result[key].message)}`, result);
    return result;
  }

  private async checkRedis(timeoutMs: number): Promise<Check> {
    const started = Date.now();
    try {
      await withTimeout(this.redis.connections.command.ping(), timeoutMs, 'Redis did not answer PING');
      return { status: 'up', latencyMs: Date.now() - started };
    } catch (error) {
      return { status: 'down', message: `Redis unreachable: ${errorMessage(error)}` };
    }
  }

  private async checkLibrary(timeoutMs: number): Promise<Check> {
    const { name, build: expected } = this.redis.loader.library;
    try {
      const states = await withTimeout(this.redis.loader.inspect(), timeoutMs, 'Redis did not answer');
      const untrusted = states.filter((state) => state.verdict === 'untrusted');
      if (untrusted.length > 0) return { status: 'down', message: untrusted.map((state) => state.problem).join(' ') };
      const missing = states.filter((state) => state.verdict === 'missing' || state.verdict === 'older');
      if (missing.length > 0) {
        return {
          status: 'down',
          message: `Function library ${name} build ${expected} is not loaded on ${missing.length} node(s) (found ${missing.map((state) => state.build ?? 'none').join(', ')}); it is loaded at start and after a 'Function not found'`,
        };
      }
      return { status: 'up', build: expected, loaded: states.map((state) => state.build) };
    } catch (error) {
      return { status: 'down', message: `Could not read the library build: ${errorMessage(error)}` };
    }
  }

  private async checkMemory(timeoutMs: number, threshold: number): Promise<Check> {
    try {
      const nodes = await withTimeout(readRedisMemory(this.redis.connections.command), timeoutMs, 'Redis did not answer INFO memory');
      return judgeMemory(nodes, threshold);
    } catch (error) {
      return { status: 'down', message: `Could not read Redis memory: ${errorMessage(error)}` };
    }
  }

  private checkWorker(stalledAfterMs: number): Check {
    if (!this.redis.settings.worker) return { status: 'up', message: 'no worker in this app (worker: false)' };
    const base = { id: this.worker.workerId, activeRuns: this.worker.activeRuns, concurrency: this.worker.concurrency };
    if (!this.worker.isRunning) {
      if (this.registry.all().length === 0) return { status: 'up', ...base, message: 'no workflows to serve' };
      return { status: 'down', ...base, message: 'the worker is not running (not started yet, or shutting down)' };
    }
    const lastTick = this.worker.lastLoopActivityAt;
    const agoMs = lastTick === 0 ? undefined : Date.now() - lastTick;
    if (agoMs === undefined || agoMs > stalledAfterMs) {
      return {
        status: 'down',
        ...base,
        ...(agoMs !== undefined ? { lastLoopAgoMs: agoMs } : {}),
        message: `the worker loop is stalled: no housekeeping tick ${agoMs === undefined ? 'yet' : `for ${agoMs} ms`} (limit ${stalledAfterMs} ms)`,
      };
    }
    return { status: 'up', ...base, lastLoopAgoMs: agoMs };
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

