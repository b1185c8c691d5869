/**
 * What an operator trips on (issue 24, item 8): a start-up that waits for Redis says so at once and for
 * as long as connectTimeoutMs; a refused password says so; no password is echoed; validation errors do
 * not carry the input; business outcomes are not logged at ERROR.
 */
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import { IsInt, IsString, Min } from 'class-validator';
import {
  InputValidationError,
  NonRetriableError,
  Workflow,
  WorkflowConfigurationError,
  type WorkflowContext,
} from '../../lib/index.js';
import { getFreePort, startRedis, uniquePrefix } from '../support/redis-server.js';
import { redisFor, startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

class OrderInput {
  @IsString()
  orderId!: string;

  @IsString()
  cardNumber!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}

@Workflow('operator-order', { input: OrderInput })
@Injectable()
class OrderWorkflow {
  async execute(ctx: WorkflowContext<OrderInput>) {
    return ctx.input.orderId;
  }
}

@Workflow('operator-refuses', { maxAttempts: 3 })
@Injectable()
class RefusingWorkflow {
  async execute(ctx: WorkflowContext<{ wait?: boolean }>) {
    if (ctx.input.wait) await ctx.step.sleep('long', 60_000);
    throw new NonRetriableError('card declined');
  }
}

type Line = { level: string; message: string; at: number };

function captureLogs(): Line[] {
  const lines: Line[] = [];
  for (const level of ['log', 'warn', 'error'] as const) {
    jest.spyOn(Logger.prototype, level).mockImplementation(function (this: Logger, message: unknown) {
      lines.push({ level, message: String(message), at: Date.now() });
    });
  }
  return lines;
}

describe('operator-facing messages (e2e, private redis-server)', () => {
  const suite = useSuiteRedis();

  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('says at once what it waits for (password masked), and gives up after connectTimeoutMs', async () => {
    const lines = captureLogs();
    const port = await getFreePort();
    const started = Date.now();
    const failure = await startApp({ connection: `redis://:s3cret-pass@127.0.0.1:${port}`, connectTimeoutMs: 3000 }).catch((error: Error) => error);
    const failedAt = Date.now();
    expect(failure).toBeInstanceOf(WorkflowConfigurationError);
    expect((failure as Error).message).toContain(`Cannot reach Redis at redis://:***@127.0.0.1:${port} within 3000 ms`);
    expect(failedAt - started).toBeLessThan(9000);
    const waiting = lines.find((line) => line.message.includes(`127.0.0.1:${port}`));
    expect(waiting?.message).toBe(`Connecting to Redis at redis://:***@127.0.0.1:${port} (waiting up to 3000 ms, option connectTimeoutMs)`);
    // said when the wait began, not when it ended; and the first refused attempt is reported as it happens
    expect(failedAt - waiting!.at).toBeGreaterThanOrEqual(2900);
    const refused = lines.find((line) => line.level === 'warn' && line.message.includes('is not reachable yet'));
    expect(failedAt - refused!.at).toBeGreaterThanOrEqual(2000);
    expect(JSON.stringify(lines) + (failure as Error).message).not.toContain('s3cret-pass');
  }, 20_000);

  it('says that authentication failed, at once, for a wrong password', async () => {
    const server = await startRedis();
    try {
      const admin = redisFor(server.url);
      await admin.config('SET', 'requirepass', 'the-right-one');
      admin.disconnect();
      captureLogs();
      const started = Date.now();
      const failure = await startApp({ connection: `redis://:wrong-pass@127.0.0.1:${server.port}`, connectTimeoutMs: 15_000 }).catch((error: Error) => error);
      expect(failure).toBeInstanceOf(WorkflowConfigurationError);
      const message = (failure as Error).message;
      expect(message).toMatch(/refused the credentials \((WRONGPASS|ERR invalid password)/);
      expect(message).toContain('check the password');
      expect(message).not.toContain('Cannot reach');
      expect(message).not.toContain('wrong-pass');
      expect(Date.now() - started).toBeLessThan(7000);
    } finally {
      await server.stop();
    }
  }, 30_000);

  it('masks the password of a malformed connection URL', async () => {
    for (const connection of ['redis:/user:s3cret-pass@127.0.0.1:6390', 'localhost:s3cret-pass@6390', 'redis://user:s3cret-pass@127.0.0.1:notaport']) {
      const failure = await startApp({ connection, connectTimeoutMs: 300 }).catch((error: Error) => error);
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).not.toContain('s3cret-pass');
    }
  }, 20_000);

  it('leaves the input out of InputValidationError.errors', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('opinput') }, [OrderWorkflow]);
    suite.apps.push(app);
    const failure = await app.client.emit(OrderWorkflow, { orderId: 'o-1', cardNumber: '4111-1111-1111-1111', quantity: 0 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InputValidationError);
    const errors = (failure as InputValidationError).errors;
    expect(errors.map((e) => e.property)).toEqual(['quantity']);
    expect(errors[0].constraints).toEqual({ min: 'quantity must not be less than 1' });
    expect(errors[0].value).toBe(0);
    expect(errors[0]).not.toHaveProperty('target');
    expect(JSON.stringify(errors)).not.toContain('4111');
  });

  it('logs a NonRetriableError failure and a cancellation below ERROR', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('oplog') }, [RefusingWorkflow]);
    suite.apps.push(app);
    const lines = captureLogs();
    const declined = await app.client.emit(RefusingWorkflow, {});
    await expect(declined.result({ timeoutMs: 10_000 })).rejects.toThrow('card declined');
    const waiting = await app.client.emit(RefusingWorkflow, { wait: true });
    await waitFor(async () => (await waiting.getState()).status === 'waiting');
    await waiting.cancel('customer changed their mind');
    await expect(waiting.result({ timeoutMs: 10_000 })).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const about = (id: string) => lines.filter((line) => line.message.includes(id) || line.message.includes('card declined'));
    expect(lines.filter((line) => line.level === 'error')).toEqual([]);
    expect(about(declined.id).some((line) => line.level === 'warn' && line.message.includes('Run failed: NonRetriableError: card declined'))).toBe(true);
  });
});
