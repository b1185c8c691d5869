import { afterAll, beforeAll } from '@jest/globals';
import type { Provider } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { WorkflowClient, WorkflowModule, type WorkflowModuleOptions } from '../../lib/index.js';
import { RUN_STATUSES } from '../../lib/interfaces/run.interfaces.js';
import { redisUrlForTests, type TestRedis } from './redis-server.js';

export interface TestApp {
  moduleRef: TestingModule;
  client: WorkflowClient;
  close(): Promise<void>;
}

/** A Nest app with the real module against a real Redis: one "process" of a fleet. */
export async function startApp(
  options: WorkflowModuleOptions & { connection: string },
  providers: Provider[] = [],
): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [WorkflowModule.forRoot({ ...options, worker: options.worker ?? { reaperIntervalMs: 20 } })],
    providers,
  }).compile();
  await moduleRef.init();
  let closed = false;
  return {
    moduleRef,
    client: moduleRef.get(WorkflowClient),
    close: async () => {
      if (closed) return;
      closed = true;
      await moduleRef.close();
    },
  };
}

/** A plain Redis connection for assertions and side-effect counters. */
export function redisFor(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1 });
}

/** The runs in a status index: its members before '~' (after them: the sentinel that keeps the 'running'
 *  index a skiplist, see lua/includes/01-common.lua). */
export function statusIndexSize(redis: Redis, root: string, workflow: string, status: string): Promise<number> {
  return redis.zlexcount(`${root}:st:${workflow}:${status}`, '-', '(~');
}

/** How many runs of a workflow a shard holds: every run is in exactly one of the workflow's status indexes. */
export async function runsInShard(redis: Redis, root: string, workflow: string): Promise<number> {
  const sizes = await Promise.all(RUN_STATUSES.map((status) => statusIndexSize(redis, root, workflow, status)));
  return sizes.reduce((a, b) => a + b, 0);
}

export async function waitFor(predicate: () => Promise<boolean> | boolean, timeoutMs = 10_000, stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}

/** A suite's own redis-server, a plain connection to it, and the apps the suite starts (push them here). */
export interface SuiteRedis {
  redis: TestRedis;
  direct: Redis;
  apps: TestApp[];
}

/** Starts a private redis-server before the suite's tests; closes its apps, the connection and the server after them. */
export function useSuiteRedis(): SuiteRedis {
  const suite = { apps: [] as TestApp[] } as SuiteRedis;
  beforeAll(async () => {
    suite.redis = await redisUrlForTests();
    suite.direct = redisFor(suite.redis.url);
  });
  afterAll(async () => {
    for (const app of suite.apps) await app.close();
    suite.direct?.disconnect();
    await suite.redis?.stop();
  });
  return suite;
}
