/**
 * A bulk retry at the size an outage leaves behind: 100,000 failed runs of a workflow retried by the CLI
 * (`runs retry --workflow … --status failed`) with no FCALL over 5 ms (SLOWLOG is the judge), and a bulk
 * retry whose process is SIGKILLed midway, then run again: every run is retried exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import { NonRetriableError, Workflow } from '../../lib/index.js';
import { buildCliBin, removeCliBin, runCliBin, spawnCli } from '../support/cli-runner.js';
import { uniquePrefix } from '../support/redis-server.js';
import { fcallProfile, prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, statusIndexSize, useSuiteRedis, waitFor } from '../support/workflow-app.js';

const N = Number(process.env.BULK_N ?? 100_000);

@Workflow('bulk-broken', { maxAttempts: 1 })
@Injectable()
class BrokenWorkflow {
  execute(): never {
    throw new NonRetriableError('partner down');
  }
}

describe(`bulk retry of ${N} failed runs`, () => {
  const suite = useSuiteRedis();
  const prefix = uniquePrefix('bulk');
  const root = `{${prefix}:default:0}`;
  const conn = () => ['--redis', suite.redis.url, '--prefix', prefix];

  beforeAll(async () => {
    if (suite.redis.server) prioritize(suite.redis.server.pid);
    // 100,000 'Run failed' lines through jest's console took most of the set-up's time
    Logger.overrideLogger(false);
    const built = buildCliBin();
    const app = await startApp({ connection: suite.redis.url, prefix, cron: false, worker: { concurrency: 200, reaperIntervalMs: 50 } }, [BrokenWorkflow]);
    const started = Date.now();
    for (let at = 0; at < N; at += 2_000) {
      await Promise.all(Array.from({ length: Math.min(2_000, N - at) }, () => app.client.emit(BrokenWorkflow, {})));
    }
    await waitFor(async () => (await statusIndexSize(suite.direct, root, 'bulk-broken', 'failed')) === N, 600_000, 500);
    console.log(`${N} failed runs made in ${Date.now() - started} ms`);
    // no worker from here on: a retried run stays queued, so each retry can be counted
    await app.close();
    await built;
  }, 900_000);

  afterAll(() => removeCliBin());

  it('a bulk retry killed midway and run again retries every run exactly once, with no FCALL over 5 ms', async () => {
    // every command is logged: the retry calls' times are printed, and none may pass 5 ms
    await startSlowlog(suite.direct, 0);
    const first = await spawnCli(['runs', 'retry', '--workflow', 'bulk-broken', '--status', 'failed', ...conn()]);
    const killAt = Math.floor(N / 3);
    await waitFor(async () => (await statusIndexSize(suite.direct, root, 'bulk-broken', 'queued')) >= killAt, 120_000, 5);
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));
    const queuedAtKill = await statusIndexSize(suite.direct, root, 'bulk-broken', 'queued');
    expect(queuedAtKill).toBeLessThan(N);

    const started = Date.now();
    const second = await runCliBin(['runs', 'retry', '--workflow', 'bulk-broken', '--status', 'failed', ...conn(), '--json'], {}, 600_000);
    const took = Date.now() - started;
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout).retried).toBe(N - queuedAtKill);
    console.log(`killed after ${queuedAtKill} retried; the repeat retried ${N - queuedAtKill} in ${took} ms`);

    expect(await statusIndexSize(suite.direct, root, 'bulk-broken', 'queued')).toBe(N);
    expect(await statusIndexSize(suite.direct, root, 'bulk-broken', 'failed')).toBe(0);
    expect(await suite.direct.zcard(`${root}:q:bulk-broken`)).toBe(N);
    // each run's history has exactly one 'retried' entry
    const ids = await suite.direct.zrangebylex(`${root}:st:bulk-broken:queued`, '-', '(~');
    let retriedOnce = 0;
    for (let at = 0; at < ids.length; at += 5_000) {
      const pipeline = suite.direct.pipeline();
      for (const id of ids.slice(at, at + 5_000)) pipeline.lrange(`${root}:h:${id}`, 0, -1);
      for (const [error, entries] of (await pipeline.exec())!) {
        if (error) throw error;
        if ((entries as string[]).filter((e) => e.includes('"type":"retried"')).length === 1) retriedOnce += 1;
      }
    }
    expect(retriedOnce).toBe(N);

    console.log(`FCALL times in µs: ${JSON.stringify(await fcallProfile(suite.direct))}`);
    const slow = await unexplainedSlowFcalls(suite.direct);
    expect(slow.map((entry) => `${entry.args[1]} ${entry.micros} µs`)).toEqual([]);
    // a third run finds nothing to retry
    expect(JSON.parse((await runCliBin(['runs', 'retry', '--workflow', 'bulk-broken', '--status', 'failed', ...conn(), '--json'])).stdout).retried).toBe(0);
  }, 900_000);
});
