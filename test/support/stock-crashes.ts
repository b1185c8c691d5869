/**
 * Drives test/fixtures/stock-worker.ts: emits reservations, then keeps one worker process running,
 * starting a new one each time the last killed itself, until every run has finished.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { startWorkerProcess, type WorkerProcess } from './worker-process.js';
import { startApp } from './workflow-app.js';

export interface StockCrashOutcome {
  stock: number;
  reserved: number;
  kills: number;
  statuses: string[];
}

export async function reserveUnderCrashes(opts: {
  direct: Redis;
  redisUrl: string;
  prefix: string;
  mode: 'redis' | 'plain';
  runs: number;
  initialStock: number;
  timeoutMs: number;
}): Promise<StockCrashOutcome> {
  const { direct, prefix, mode } = opts;
  const markers = mkdtempSync(path.join(tmpdir(), 'stock-kills-'));
  await direct.set(`stock:${prefix}`, opts.initialStock);
  const env = { REDIS_URL: opts.redisUrl, PREFIX: prefix, MARKERS: markers, LEASE_MS: '500' };
  // the first worker registers the workflow, so that an app without it can emit by name
  let worker: WorkerProcess | undefined = await startWorkerProcess('stock-worker', env);
  const api = await startApp({ connection: opts.redisUrl, prefix, worker: false });
  let kills = 0;
  try {
    const handles = [];
    for (let i = 0; i < opts.runs; i += 1) {
      handles.push(await api.client.emit('reserve-stock', { order: `o${i}`, mode, killAt: i % 2 === 0 ? 'before' : 'after' }));
    }
    const results = Promise.all(handles.map((h) => h.result({ timeoutMs: opts.timeoutMs }).then(() => 'succeeded', (e: Error) => `failed: ${e.message}`)));
    let done = false;
    void results.finally(() => (done = true));
    const until = Date.now() + opts.timeoutMs;
    while (!done && Date.now() < until) {
      worker ??= await startWorkerProcess('stock-worker', env);
      const exit = await Promise.race([worker.exited, results.then(() => 'done' as const)]);
      if (exit === 'SIGKILL') kills += 1;
      else if (exit !== 'done') throw new Error(`the stock worker exited with ${String(exit)}:\n${worker.output()}`);
      if (exit !== 'done') worker = undefined;
    }
    return {
      stock: Number(await direct.get(`stock:${prefix}`)),
      reserved: await direct.hlen(`orders:${prefix}`),
      kills,
      statuses: await results,
    };
  } finally {
    await worker?.stop(2_000);
    await api.close();
    rmSync(markers, { recursive: true, force: true });
  }
}
