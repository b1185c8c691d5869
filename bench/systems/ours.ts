import 'reflect-metadata';
import { Injectable, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { INestApplicationContext } from '@nestjs/common';
import { Redis } from 'ioredis';
import { Workflow, WorkflowClient, WorkflowModule, type WorkflowContext } from '../../lib/index.js';

/** Our engine as a user runs it: WorkflowModule.forRoot in a Nest application context, no-op handlers. */

export const PREFIX = 'bench';
export const QUEUE = 'default';
/** Runs of a workflow by status: one sorted set per (workflow, status) in the shard. */
export function statusKey(workflow: string, status: string): string {
  return `{${PREFIX}:${QUEUE}:0}:st:${workflow}:${status}`;
}

export interface BenchInput {
  i: number;
  ms?: number;
}

@Workflow('bench-one', { maxAttempts: 1 })
@Injectable()
export class OneStepWorkflow {
  async execute(ctx: WorkflowContext<BenchInput>) {
    await ctx.step.run('a', () => true);
    return true;
  }
}

@Workflow('bench-three', { maxAttempts: 1 })
@Injectable()
export class ThreeStepWorkflow {
  async execute(ctx: WorkflowContext<BenchInput>) {
    await ctx.step.run('a', () => true);
    await ctx.step.run('b', () => true);
    await ctx.step.run('c', () => true);
    return true;
  }
}

@Workflow('bench-sleep', { maxAttempts: 1 })
@Injectable()
export class SleepWorkflow {
  async execute(ctx: WorkflowContext<BenchInput>) {
    await ctx.step.sleep('nap', ctx.input.ms ?? 0);
    return true;
  }
}

@Workflow('bench-leaf', { maxAttempts: 1 })
@Injectable()
export class LeafWorkflow {
  async execute(ctx: WorkflowContext<BenchInput>) {
    return ctx.input.i;
  }
}

/** Fan-out/fan-in: three child runs in parallel, the parent resumes when all three have finished. */
@Workflow('bench-fanout', { maxAttempts: 1 })
@Injectable()
export class FanOutWorkflow {
  async execute(ctx: WorkflowContext<BenchInput>) {
    const results = await Promise.all([0, 1, 2].map((k) => ctx.step.runWorkflow(`child-${k}`, LeafWorkflow, { i: ctx.input.i * 3 + k })));
    return results.length;
  }
}

/** Distinct flow keys of the flow-control scenario: run i has key i mod FLOW_KEYS. */
export const FLOW_KEYS = 10_000;

/** The one-step workflow with a per-key concurrency of 1 over FLOW_KEYS keys (scenario f1). */
@Workflow('bench-keyed', { maxAttempts: 1, concurrency: { key: (input: BenchInput) => `k${input.i % FLOW_KEYS}`, limit: 1 } })
@Injectable()
export class KeyedWorkflow {
  async execute(ctx: WorkflowContext<BenchInput>) {
    await ctx.step.run('a', () => true);
    return true;
  }
}

@Module({})
class BenchAppModule {
  static forRoot(url: string, worker: boolean, concurrency: number): DynamicModule {
    return {
      module: BenchAppModule,
      imports: [
        WorkflowModule.forRoot({
          connection: url,
          prefix: PREFIX,
          worker: worker ? { concurrency } : false,
        }),
      ],
      providers: [OneStepWorkflow, ThreeStepWorkflow, SleepWorkflow, LeafWorkflow, FanOutWorkflow, KeyedWorkflow],
    };
  }
}

export interface OurApp {
  app: INestApplicationContext;
  client: WorkflowClient;
  close(): Promise<void>;
}

export async function startOurs(url: string, opts: { worker: boolean; concurrency?: number }): Promise<OurApp> {
  const app = await NestFactory.createApplicationContext(BenchAppModule.forRoot(url, opts.worker, opts.concurrency ?? 50), {
    logger: ['error', 'warn'],
  });
  return { app, client: app.get(WorkflowClient), close: () => app.close() };
}

/** Runs of `workflow` in `status`, from the shard's status index (one ZCARD). */
export async function ourCount(redis: Redis, workflow: string, status: string): Promise<number> {
  return redis.zcard(statusKey(workflow, status));
}
