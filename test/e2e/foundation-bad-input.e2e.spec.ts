/**
 * Bad input gets a clear error and writes nothing; a Redis outage makes emit fail fast while a worker
 * logs it once, retries with backoff and resumes when the server is back.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { PayloadError, UnknownWorkflowError, Workflow, WorkflowConnectionError, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const MAX_PAYLOAD = 200;

@Workflow('echo')
@Injectable()
class EchoWorkflow {
  async execute(ctx: WorkflowContext<unknown>) {
    return ctx.input;
  }
}

type BadKind = 'function' | 'cycle' | 'bigint' | 'large';

function badValue(kind: BadKind): unknown {
  if (kind === 'function') return { fn: () => 1 };
  if (kind === 'bigint') return { amount: 10n };
  if (kind === 'large') return { text: 'x'.repeat(MAX_PAYLOAD) };
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  return cycle;
}

const expectedProblem: Record<BadKind, RegExp> = {
  function: /is not JSON: \$\.fn is a function/,
  cycle: /is not JSON: \$\.self is a circular reference/,
  bigint: /is not JSON: \$\.amount is a BigInt/,
  large: /is \d+ bytes, more than maxPayloadBytes \(200\)/,
};

@Workflow('bad-step', { maxAttempts: 3 })
@Injectable()
class BadStepWorkflow {
  async execute(ctx: WorkflowContext<{ kind: BadKind }>) {
    await ctx.step.run('fine', () => 'ok');
    await ctx.step.run('bad', () => badValue(ctx.input.kind));
    return 'unreachable';
  }
}

class NotAWorkflow {}

describe('bad input and Redis outages (e2e, private redis-server)', () => {
  let redis: TestRedis;
  let direct: Redis;
  let app: TestApp;
  const prefix = uniquePrefix('bad');

  async function keysOfPrefix(): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await direct.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys.sort();
  }

  beforeAll(async () => {
    redis = await redisUrlForTests({ appendonly: true, appendfsync: 'always' });
    direct = redisFor(redis.url);
    app = await startApp({ connection: redis.url, prefix, maxPayloadBytes: MAX_PAYLOAD, worker: { reaperIntervalMs: 20, leaseMs: 3000 } }, [
      EchoWorkflow,
      BadStepWorkflow,
    ]);
  });

  afterAll(async () => {
    await app?.close();
    direct?.disconnect();
    await redis?.stop();
  });

  it('refuses unknown workflows and inputs that are not JSON or too large, writing nothing', async () => {
    // Run data lives in shard keys '{<prefix>:<queue>:<partition>}:…'; only app-level keys exist so far.
    const shardKeys = async () => (await keysOfPrefix()).filter((key) => key.startsWith(`{${prefix}:`));
    const before = await keysOfPrefix();
    expect(await shardKeys()).toEqual([]);

    await expect(app.client.emit('no-such-workflow', {})).rejects.toThrow(UnknownWorkflowError);
    await expect(app.client.emit('no-such-workflow', {})).rejects.toThrow(/Unknown workflow 'no-such-workflow'.*Check the name/);
    await expect(app.client.emit(NotAWorkflow as never, {} as never)).rejects.toThrow(/NotAWorkflow is not a workflow: decorate it with @Workflow/);
    for (const kind of ['function', 'cycle', 'bigint', 'large'] as const) {
      const error = await app.client.emit(EchoWorkflow, badValue(kind)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PayloadError);
      expect((error as Error).message).toMatch(/^The input of workflow 'echo' /);
      expect((error as Error).message).toMatch(expectedProblem[kind]);
    }
    expect(await keysOfPrefix()).toEqual(before);
    expect(await shardKeys()).toEqual([]);
    // The limit is exact: an input of exactly maxPayloadBytes is accepted.
    const exact = { t: 'y'.repeat(MAX_PAYLOAD - 8) };
    expect(Buffer.byteLength(JSON.stringify(exact))).toBe(MAX_PAYLOAD);
    expect(await app.client.run(EchoWorkflow, exact, { timeoutMs: 10_000 })).toEqual(exact);
  });

  it.each(['function', 'cycle', 'bigint', 'large'] as const)('a step result that cannot be stored (%s) fails the step and the run with a clear error', async (kind) => {
    const handle = await app.client.emit(BadStepWorkflow, { kind });
    const error = await handle.result({ timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PayloadError);
    expect((error as Error).message).toMatch(/^The result of step 'bad' /);
    expect((error as Error).message).toMatch(expectedProblem[kind]);
    // Not retried: the same code would produce the same value.
    expect(await app.client.getRun(handle.id)).toMatchObject({ status: 'failed', attempt: 1 });
    const steps = await app.client.getRunSteps(handle.id);
    // Both steps may commit within the same server millisecond, so their listing order is not asserted.
    expect(steps.map((s) => [s.name, s.status, s.result]).sort()).toEqual([
      ['bad', 'failed', undefined],
      ['fine', 'succeeded', 'ok'],
    ]);
  });

  it('emit fails fast while Redis is down; the worker logs the outage once, retries, and resumes when Redis is back', async () => {
    if (!redis.server) return;
    const errors: string[] = [];
    const logs: string[] = [];
    const errorSpy = jest.spyOn(Logger.prototype, 'error').mockImplementation(function (this: Logger, message: unknown) {
      errors.push(String(message));
    });
    const logSpy = jest.spyOn(Logger.prototype, 'log').mockImplementation(function (this: Logger, message: unknown) {
      logs.push(String(message));
    });
    try {
      // Persisted before the outage (appendfsync always); due while Redis is down.
      const delayed = await app.client.emit(EchoWorkflow, { survived: true }, { delayMs: 800 });
      // A result() wait started before the outage rides it out.
      const survived = delayed.result({ timeoutMs: 20_000 });
      survived.catch(() => undefined);
      await redis.server.kill('SIGKILL');
      // Timed from the moment the app's connection has seen the outage (a command written in the instant
      // before that is held by ioredis for resending until its reconnect attempts fail).
      const command = app.moduleRef.get(WorkflowRedis).connections.command;
      await waitFor(() => command.status !== 'ready', 2_000, 1);

      const startedAt = Date.now();
      const error = await app.client.emit(EchoWorkflow, { during: 'outage' }).catch((e: unknown) => e);
      const failedAfterMs = Date.now() - startedAt;
      expect(error).toBeInstanceOf(WorkflowConnectionError);
      expect((error as Error).message).toMatch(/Redis is unreachable .*Retry when it is back/);
      expect(failedAfterMs).toBeLessThan(250);

      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const outageErrors = errors.filter((m) => /Redis call failed/.test(m));
      expect(outageErrors).toHaveLength(1);
      expect(outageErrors[0]).toMatch(/retrying until it is back/);

      await redis.server.restart();
      expect(await survived).toEqual({ survived: true });
      await waitFor(() => logs.some((m) => /Redis is reachable again; worker resumed/.test(m)), 5_000);
      // The worker has a connection of its own: the app's emits go out once the command connection is back too.
      await waitFor(() => command.status === 'ready', 5_000);
      expect(await app.client.run(EchoWorkflow, { after: 'outage' }, { timeoutMs: 10_000 })).toEqual({ after: 'outage' });
      expect(errors.filter((m) => /Redis call failed/.test(m))).toHaveLength(1);
      process.stdout.write(`outage: emit failed after ${failedAfterMs} ms; worker errors logged during the outage: ${outageErrors.length}\n`);
    } finally {
      errorSpy.mockRestore();
      logSpy.mockRestore();
    }
  });
});
