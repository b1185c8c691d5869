/**
 * Splits scenario 1 (or 2) in its two halves, for profiling: emit N runs with no worker running, then start
 * a worker and time how fast it drains the queue, for our engine and BullMQ side by side. Prints wall time,
 * Node CPU and Redis CPU per run of each half, and the mean number of busy worker slots while draining.
 *
 *   npm run bench:drain                    one-step runs / single jobs
 *   WORKLOAD=three npm run bench:drain     three-step runs (BullMQ: single jobs, for the emit side only)
 *   WORKLOAD=keyed ONLY_OURS=1 ...         one-step runs with a per-key concurrency of 1 over 10,000 keys
 *                                          (scenario F1's keyed side)
 *   ONLY_OURS=1 PROFILE_DRAIN=1 ...        also writes a CPU profile of each drain to bench/profiles/
 *   COMMANDSTATS=1 ...                     also lists each half's Redis commands (calls and µs per run,
 *                                          those inside Lua included, from INFO commandstats)
 *
 * Not a scenario of the issue: run.ts is the benchmark; this is the tool that showed where time went.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { WorkflowWorker } from '../lib/worker/workflow-worker.js';
import { startBenchRedis } from './support/redis-server.js';
import { commandTimes, redisCpuSeconds } from './support/redis-stats.js';
import { bullCompleted, startBull } from './systems/bullmq.js';
import { KeyedWorkflow, OneStepWorkflow, ourCount, startOurs, ThreeStepWorkflow } from './systems/ours.js';

const N = Number(process.env.N ?? 20_000);
const THREE = process.env.WORKLOAD === 'three';
const KEYED = process.env.WORKLOAD === 'keyed';
const REPS = 2;
const profiles = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'profiles');

/** Calls and µs per run of each command since the last CONFIG RESETSTAT, costliest first. */
async function commandCosts(admin: Redis): Promise<string> {
  const rows = [...(await commandTimes(admin))]
    .map(([command, { calls, usec }]) => ({ command, calls: calls / N, usec: usec / N }))
    .sort((a, b) => b.usec - a.usec);
  const total = rows.reduce((sum, row) => sum + row.usec, 0);
  const lines = rows.map((row) => `    ${row.command.padEnd(16)} ${row.calls.toFixed(2).padStart(6)} calls ${row.usec.toFixed(2).padStart(7)} µs`);
  return `${lines.join('\n')}\n    (fcall counts its inner commands too; sum without fcall ${(total - (rows.find((row) => row.command === 'fcall')?.usec ?? 0)).toFixed(1)} µs)`;
}

async function measure(admin: Redis, label: string, work: () => Promise<unknown>): Promise<void> {
  if (process.env.COMMANDSTATS) await admin.config('RESETSTAT');
  const redis0 = await redisCpuSeconds(admin);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const redisUs = ((await redisCpuSeconds(admin)) - redis0) * 1e6;
  const perRun = (us: number) => (us / N).toFixed(1);
  console.log(`${label}: ${ms.toFixed(0)} ms, ${((N / ms) * 1000).toFixed(0)}/s, Node CPU ${perRun(cpu.user + cpu.system)} µs/run, Redis CPU ${perRun(redisUs)} µs/run`);
  if (process.env.COMMANDSTATS) console.log(await commandCosts(admin));
}

async function emitAll(start: (i: number) => Promise<unknown>): Promise<void> {
  for (let from = 0; from < N; from += 500) {
    await Promise.all(Array.from({ length: Math.min(500, N - from) }, (_, k) => start(from + k)));
  }
}

async function until(finished: () => Promise<number>): Promise<void> {
  while ((await finished()) < N) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** A CPU profile of `work`, written to bench/profiles/<name>.cpuprofile when PROFILE_DRAIN is set. */
async function profiled(name: string, work: () => Promise<void>): Promise<void> {
  if (!process.env.PROFILE_DRAIN) return work();
  const session = new inspector.Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  await post('Profiler.enable');
  await post('Profiler.start');
  try {
    await work();
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: object };
    mkdirSync(profiles, { recursive: true });
    writeFileSync(path.join(profiles, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

const server = await startBenchRedis();
const admin = new Redis(server.port, server.host);
const [workflow, name] = THREE ? [ThreeStepWorkflow, 'bench-three'] : KEYED ? [KeyedWorkflow, 'bench-keyed'] : [OneStepWorkflow, 'bench-one'];
for (let rep = 1; rep <= REPS; rep += 1) {
  await admin.flushall();
  const producer = await startOurs(server.url, { worker: false });
  await measure(admin, 'ours emit ', () => emitAll((i) => producer.client.emit(workflow, { i })));
  await producer.close();
  const app = await startOurs(server.url, { worker: true });
  const worker = app.app.get(WorkflowWorker);
  const busy: number[] = [];
  const sampler = setInterval(() => busy.push(worker.activeRuns), 1);
  await profiled(`drain-${name}-${rep}`, () => measure(admin, 'ours drain', () => until(() => ourCount(admin, name, 'succeeded'))));
  clearInterval(sampler);
  console.log(`  busy slots while draining: ${(busy.reduce((a, b) => a + b, 0) / busy.length).toFixed(1)} of 50 on average`);
  await app.close();
  if (process.env.ONLY_OURS) continue;
  await admin.flushall();
  const queue = await startBull({ host: server.host, port: server.port }, 'bench', { worker: false });
  await measure(admin, 'bull add  ', () => emitAll((i) => queue.queue.add('job', { i })));
  await queue.close();
  const bull = await startBull({ host: server.host, port: server.port }, 'bench', { worker: true });
  await measure(admin, 'bull drain', () => until(() => bullCompleted(admin, 'bench')));
  await bull.close();
}
admin.disconnect();
await server.stop();
