/**
 * Issue 32's crash test at its size: a Redis step that decrements stock, with the worker SIGKILLed around
 * every commit 50 times (25 before the commit call, 25 after it), leaves the stock exactly right; the same
 * reservation as a plain step writes twice for every run killed between its writes and its commit.
 */
import { describe, expect, it } from '@jest/globals';
import { uniquePrefix } from '../support/redis-server.js';
import { reserveUnderCrashes } from '../support/stock-crashes.js';
import { useSuiteRedis } from '../support/workflow-app.js';
import { compileFixtures } from '../support/worker-process.js';

const suite = useSuiteRedis();

describe('Redis steps under 50 SIGKILLs', () => {
  it('leave the stock exactly right; a plain step shows the duplicates', async () => {
    compileFixtures();
    const common = { direct: suite.direct, redisUrl: suite.redis.url, initialStock: 1_000, timeoutMs: 600_000 };
    const viaRedis = await reserveUnderCrashes({ ...common, prefix: uniquePrefix('stock'), mode: 'redis', runs: 50 });
    expect(viaRedis.kills).toBe(50);
    expect(viaRedis.statuses).toEqual(Array(50).fill('succeeded'));
    expect(viaRedis).toMatchObject({ stock: 950, reserved: 50 });

    const plain = await reserveUnderCrashes({ ...common, prefix: uniquePrefix('stock'), mode: 'plain', runs: 10 });
    expect(plain.kills).toBe(10);
    expect(plain.statuses).toEqual(Array(10).fill('succeeded'));
    expect(plain).toMatchObject({ stock: 985, reserved: 10 }); // 5 runs killed between writes and commit wrote twice
  }, 900_000);
});
