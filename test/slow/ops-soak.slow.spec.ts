import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

/**
 * Memory soak: many short runs with a short retention; Redis memory must stay flat (retention deletes
 * every key and index entry of a finished run). 50,000 runs, the documented figure; SOAK_RUNS sets another:
 *   SOAK_RUNS=100000 npm run test:slow -- test/slow/ops-soak.slow.spec.ts
 */
const TOTAL = Number(process.env.SOAK_RUNS ?? 50_000);
const BATCH = 500;
const RETENTION_MS = 1_000;
const SAMPLES = 10;
const LANES = 3;

@Workflow('soak', { queue: 'soak' })
@Injectable()
class SoakWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const doubled = await ctx.step.run('double', () => ctx.input.n * 2);
    return doubled + 1;
  }
}

describe(`memory stays flat over ${TOTAL} short runs with a ${RETENTION_MS} ms retention (soak)`, () => {
  let redis: TestRedis;
  let app: TestApp;
  let admin: Redis;
  const prefix = uniquePrefix('soak');
  /** Finished runs Redis still keeps: the shard's retention index. */
  const retainedRuns = () => admin.zcard(`{${prefix}:soak:0}:expiry`);

  beforeAll(async () => {
    redis = await redisUrlForTests();
    admin = redisFor(redis.url);
    app = await startApp(
      {
        connection: redis.url,
        prefix,
        retention: { succeededMs: RETENTION_MS, failedMs: RETENTION_MS, canceledMs: RETENTION_MS },
        worker: { concurrency: 64, reaperIntervalMs: 20 },
      },
      [SoakWorkflow],
    );
  });

  afterAll(async () => {
    admin?.disconnect();
    await app?.close();
    await redis?.stop();
  });

  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(String(await admin.info('memory')))![1]);
  /** Waits until every finished run has expired, then reads used_memory and the key count. */
  const settled = async () => {
    await waitFor(async () => {
      const stats = await app.client.getStats();
      return stats.workflows.every((w) => Object.values(w.counts).every((n) => n === 0));
    }, 30_000, 100);
    return { usedMemory: await usedMemory(), keys: await admin.dbsize() };
  };

  it('keeps used_memory flat: the end is within 20% of the level after warm-up', async () => {
    const started = Date.now();
    const sampleEvery = Math.max(BATCH, Math.floor(TOTAL / SAMPLES / BATCH) * BATCH);
    const warmUp = sampleEvery * 2;
    const curve: { runs: number; seconds: number; usedMemory: number; retained: number }[] = [];
    let next = 0;
    let done = 0;
    let nextSample = sampleEvery;
    /** LANES batches in flight at once, until `until` runs are done. */
    const drive = (until: number) =>
      Promise.all(
        Array.from({ length: LANES }, async () => {
          while (next < until) {
            const from = next;
            const size = Math.min(BATCH, until - from);
            next += size;
            const handles = await Promise.all(Array.from({ length: size }, (_, i) => app.client.emit(SoakWorkflow, { n: from + i })));
            const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 60_000 })));
            expect(results[size - 1]).toBe((from + size - 1) * 2 + 1);
            done += size;
            if (done >= nextSample) {
              nextSample += sampleEvery;
              const [memory, retained] = await Promise.all([usedMemory(), retainedRuns()]);
              curve.push({ runs: done, seconds: (Date.now() - started) / 1000, usedMemory: memory, retained });
            }
          }
        }),
      );
    await drive(warmUp);
    const afterWarmUp = await settled();
    await drive(TOTAL);
    const seconds = (Date.now() - started) / 1000;
    const end = await settled();
    const base = afterWarmUp;
    const kb = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
    console.log(
      [
        `soak: ${TOTAL} runs in ${seconds.toFixed(1)} s (${(TOTAL / seconds).toFixed(0)} runs/s), retention ${RETENTION_MS} ms`,
        'used_memory while running (runs done -> used_memory):',
        ...curve.map((p) => `  ${String(p.runs).padStart(6)} @ ${p.seconds.toFixed(1).padStart(5)} s -> ${kb(p.usedMemory)}`),
        `settled after warm-up (${warmUp} runs): ${kb(base.usedMemory)}, ${base.keys} keys`,
        `settled at the end: ${kb(end.usedMemory)}, ${end.keys} keys (${(((end.usedMemory - base.usedMemory) / base.usedMemory) * 100).toFixed(1)}%)`,
      ].join('\n'),
    );
    expect(Math.abs(end.usedMemory - base.usedMemory)).toBeLessThanOrEqual(base.usedMemory * 0.2);
    expect(end.keys).toBeLessThanOrEqual(base.keys);
    // While running, memory is bounded by the runs Redis keeps (finished ones waiting out their retention,
    // counted from the retention index, plus at most LANES x BATCH emitted and not yet finished), at 3 KiB
    // each (a finished run takes ~1.7 KiB), not by the total; and retention deletes runs while the soak runs.
    const after = curve.filter((p) => p.runs > warmUp);
    for (const point of after) {
      expect(point.usedMemory).toBeLessThanOrEqual(base.usedMemory + (point.retained + LANES * BATCH) * 3 * 1024);
    }
    const last = after.at(-1)!;
    expect(last.retained).toBeLessThan(last.runs - warmUp);
  }, 900_000);
});
