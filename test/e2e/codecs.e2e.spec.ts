/**
 * Payload codecs: with aesGcmCodec every payload (input, step result, event, child input and output, error,
 * output) is unreadable in Redis, a rotated key keeps older runs readable, a process without the codec
 * shows a placeholder and result() says what is missing; compressionCodec shrinks large payloads.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  PayloadError,
  Workflow,
  WorkflowConfigurationError,
  aesGcmCodec,
  chainCodecs,
  compressionCodec,
  type WorkflowContext,
} from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

const suite = useSuiteRedis();
const SECRET = 'card-4242-4242-secret';

@Workflow('secret-child')
@Injectable()
class SecretChild {
  async execute(ctx: WorkflowContext<{ secret: string }>) {
    return { echoed: ctx.input.secret };
  }
}

@Workflow('secret-parent', { maxAttempts: 2, backoff: { type: 'fixed', delayMs: 10 } })
@Injectable()
class SecretParent {
  async execute(ctx: WorkflowContext<{ id: string; secret: string }>) {
    const fromStep = await ctx.step.run('read-secret', () => `${ctx.input.secret}-step`);
    const flaky = await ctx.step.run('flaky', (s) => {
      if (s.attempt === 1) throw new Error(`failed with ${ctx.input.secret}`);
      return 'ok';
    }, { retries: 1 });
    const child = await ctx.step.runWorkflow('child', SecretChild, { secret: `${ctx.input.secret}-child` });
    const event = await ctx.step.waitForEvent<{ secret: string }>('approval', { event: 'approve', key: ctx.input.id });
    return { fromStep, flaky, child, event };
  }
}

/** Every value stored in the server, as text. */
async function everything(redis: Redis): Promise<string> {
  const parts: string[] = [];
  for (const key of await redis.keys('*')) {
    const type = await redis.type(key);
    if (type === 'string') parts.push(key, (await redis.get(key)) ?? '');
    else if (type === 'hash') parts.push(key, JSON.stringify(await redis.hgetall(key)));
    else if (type === 'list') parts.push(key, JSON.stringify(await redis.lrange(key, 0, -1)));
    else if (type === 'set') parts.push(key, JSON.stringify(await redis.smembers(key)));
    else if (type === 'zset') parts.push(key, JSON.stringify(await redis.zrange(key, '0', '-1')));
    else if (type === 'stream') parts.push(key, JSON.stringify(await redis.xrange(key, '-', '+')));
  }
  return parts.join('\n');
}

const key = () => randomBytes(32);

describe('payload codecs', () => {
  it('leaves no payload readable in Redis, and reads them back with a rotated key', async () => {
    const prefix = uniquePrefix('enc');
    const k1 = key();
    const first = await startApp({ connection: suite.redis.url, prefix, codec: aesGcmCodec({ keys: { k1 }, current: 'k1' }) }, [SecretParent, SecretChild]);
    const handle = await first.client.emit(SecretParent, { id: 'p1', secret: SECRET });
    await waitFor(async () => (await first.client.getRun(handle.id))?.status === 'waiting');
    await first.close();

    // the next deployment encrypts with k2 and keeps k1 for what was written with it
    const k2 = key();
    const second = await startApp({ connection: suite.redis.url, prefix, codec: aesGcmCodec({ keys: { k1, k2 }, current: 'k2' }) }, [SecretParent, SecretChild]);
    suite.apps.push(second);
    await second.client.sendEvent('approve', { secret: `${SECRET}-event` }, { key: 'p1' });
    expect(await second.client.handle(handle.id).result({ timeoutMs: 10_000 })).toEqual({
      fromStep: `${SECRET}-step`,
      flaky: 'ok',
      child: { echoed: `${SECRET}-child` },
      event: { secret: `${SECRET}-event` },
    });
    const run = await second.client.getRun(handle.id);
    expect(run?.input).toEqual({ id: 'p1', secret: SECRET }); // written with k1, read after the rotation
    const steps = await second.client.getRunSteps(handle.id);
    expect(steps.find((s) => s.name === 'read-secret')?.result).toBe(`${SECRET}-step`);

    const stored = await everything(suite.direct);
    expect(stored).toContain(prefix); // the run's keys are there...
    expect(stored).not.toContain('card-4242'); // ...and not one payload is readable
    expect(stored).toMatch(/wfc1:k1\./);
    expect(stored).toMatch(/wfc1:k2\./);
    await second.close();

    // a process without the codec shows a placeholder and says what is missing
    const plain = await startApp({ connection: suite.redis.url, prefix, worker: false });
    suite.apps.push(plain);
    expect((await plain.client.getRun(handle.id))?.output).toBe('[encoded payload: this process has no codec for it]');
    await expect(plain.client.handle(handle.id).result({ timeoutMs: 5_000 })).rejects.toThrow(PayloadError);
    await plain.close();
  });

  it('compresses large payloads and reads them back', async () => {
    const prefix = uniquePrefix('zip');
    const codec = chainCodecs(compressionCodec({ minBytes: 256 }), aesGcmCodec({ keys: { a: key() }, current: 'a' }));
    const app = await startApp({ connection: suite.redis.url, prefix, codec }, [SecretChild]);
    suite.apps.push(app);
    const big = 'x'.repeat(200_000);
    const handle = await app.client.emit(SecretChild, { secret: big });
    expect(await handle.result({ timeoutMs: 10_000 })).toEqual({ echoed: big });
    const used = Number(/used_memory:(\d+)/.exec(await suite.direct.info('memory'))![1]);
    expect(used).toBeLessThan(5_000_000);
    const hash = await suite.direct.hgetall(`{${prefix}:default:0}:r:${handle.id}`);
    expect(hash.in.length).toBeLessThan(2_000); // 200 KB of input stored in under 2 KB
    await app.close();
  });

  it('refuses a key that is not 32 bytes, and an unknown current key, at once', () => {
    expect(() => aesGcmCodec({ keys: { a: randomBytes(16) }, current: 'a' })).toThrow(WorkflowConfigurationError);
    expect(() => aesGcmCodec({ keys: { a: key() }, current: 'b' })).toThrow(/current key 'b'/);
  });
});
