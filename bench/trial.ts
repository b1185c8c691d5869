/**
 * One trial of one scenario for one system, in a fresh Node process (so that no trial inherits another's
 * heap, connections or JIT state). Started by run.ts with BENCH_TRIAL set to a JSON TrialSpec; prints one
 * line 'RESULT <json>'. Producer and workers live in this one process, as in a small service.
 */
import v8 from 'node:v8';
import { Redis } from 'ioredis';
import { addChain, addFanOut, addFlow, bullCompleted, startBull, type BullSystem } from './systems/bullmq.js';
import { ourCount, startOurs, FanOutWorkflow, KeyedWorkflow, OneStepWorkflow, SleepWorkflow, ThreeStepWorkflow, type OurApp } from './systems/ours.js';
import { commandStats, redisCpuSeconds, totalCalls, usedMemory } from './support/redis-stats.js';
import { percentile } from './support/stats.js';
import { warmupUnits } from './support/warmup.js';

export type SystemId = 'ours' | 'bull-single' | 'bull-chain' | 'bull-flow' | 'bull-fanout';
export type TrialKind = 'throughput' | 'latency' | 'work' | 'memory' | 'idle-worker' | 'idle-producer' | 'drain';

export interface TrialSpec {
  kind: TrialKind;
  system: SystemId;
  /** 'one' = one step / one job; 'three' = three steps / three-job chain; 'fanout' = parent + 3 parallel children;
   *  'keyed' = one step with a per-key concurrency of 1 (ours only) */
  workload: 'one' | 'three' | 'sleep' | 'fanout' | 'keyed';
  n: number;
  host: string;
  port: number;
  sleepMs?: number;
}

export type TrialResult = Record<string, number | string | Record<string, number>>;

const QUEUE_NAME = 'bench';
const EMIT_CHUNK = 500;

/** A system under test, behind the few operations the scenarios need. */
interface Subject {
  /** Starts one unit of work (a run, or the first job of a chain). */
  start(i: number): Promise<unknown>;
  /** Units of work finished so far. */
  finished(redis: Redis): Promise<number>;
  /** Starts one unit and waits until it has finished. */
  startAndWait?(i: number): Promise<unknown>;
  close(): Promise<void>;
}

async function subject(spec: TrialSpec, withWorker = true): Promise<Subject> {
  const url = `redis://${spec.host}:${spec.port}`;
  if (spec.system === 'ours') {
    const ours: OurApp = await startOurs(url, { worker: withWorker });
    const [workflow, name] = ({
      one: [OneStepWorkflow, 'bench-one'],
      three: [ThreeStepWorkflow, 'bench-three'],
      sleep: [SleepWorkflow, 'bench-sleep'],
      fanout: [FanOutWorkflow, 'bench-fanout'],
      keyed: [KeyedWorkflow, 'bench-keyed'],
    } as const)[spec.workload];
    return {
      start: (i) => ours.client.emit(workflow, { i, ms: spec.sleepMs ?? 0 }),
      finished: (redis) => ourCount(redis, name, spec.workload === 'sleep' ? 'waiting' : 'succeeded'),
      startAndWait: (i) => ours.client.run(workflow, { i, ms: 0 }),
      close: () => ours.close(),
    };
  }
  const connection = { host: spec.host, port: spec.port };
  const mode = spec.system === 'bull-chain' ? 'chain' : spec.system === 'bull-flow' ? 'flow' : 'single';
  const fanout = spec.workload === 'fanout';
  const bull: BullSystem = await startBull(connection, QUEUE_NAME, {
    worker: withWorker,
    mode,
    flows: mode === 'flow' || fanout,
    events: spec.kind === 'latency',
  });
  // A fan-out unit is 4 jobs (the parent completes last, after its 3 children).
  const jobsPerUnit = fanout ? 4 : mode === 'single' ? 1 : 3;
  return {
    start: (i) =>
      spec.workload === 'sleep'
        ? bull.queue.add('nap', { i }, { delay: spec.sleepMs ?? 0 })
        : fanout
          ? addFanOut(bull, i)
        : mode === 'chain'
          ? addChain(bull, i)
          : mode === 'flow'
            ? addFlow(bull, i)
            : bull.queue.add('job', { i }),
    finished: async (redis) =>
      spec.workload === 'sleep' ? redis.zcard(`bull:${QUEUE_NAME}:delayed`) : Math.floor((await bullCompleted(redis, QUEUE_NAME)) / jobsPerUnit),
    startAndWait: async (i) => {
      const job = await bull.queue.add('job', { i });
      return job.waitUntilFinished(bull.events!);
    },
    close: () => bull.close(),
  };
}

/** Starts units `first`, `first + 1`, ... (`n` of them), EMIT_CHUNK at a time. */
async function startAll(s: Subject, n: number, first = 0): Promise<void> {
  for (let from = 0; from < n; from += EMIT_CHUNK) {
    const chunk: Promise<unknown>[] = [];
    for (let i = from; i < Math.min(n, from + EMIT_CHUNK); i += 1) chunk.push(s.start(first + i));
    await Promise.all(chunk);
  }
}

async function waitFinished(s: Subject, redis: Redis, n: number, timeoutMs = 600_000): Promise<number> {
  const until = Date.now() + timeoutMs;
  let polls = 0;
  for (;;) {
    polls += 1;
    if ((await s.finished(redis)) >= n) return polls;
    if (Date.now() > until) throw new Error(`only ${await s.finished(redis)} of ${n} finished within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function throughput(spec: TrialSpec, redis: Redis): Promise<TrialResult> {
  const s = await subject(spec);
  const warmup = warmupUnits(spec.n);
  if (warmup > 0) {
    await startAll(s, warmup, -warmup);
    await waitFinished(s, redis, warmup);
  }
  const redisCpu0 = await redisCpuSeconds(redis);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  await startAll(s, spec.n);
  await waitFinished(s, redis, warmup + spec.n);
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  const redisCpu = (await redisCpuSeconds(redis)) - redisCpu0;
  await s.close();
  // CPU per run is far less sensitive than wall time to the other work on a shared machine.
  return { perSec: (spec.n / ms) * 1000, ms, nodeCpuUs: (cpu.user + cpu.system) / spec.n, redisCpuUs: (redisCpu * 1e6) / spec.n };
}

/**
 * A backlog drained: n runs emitted with no worker running (for 'keyed', most held back by their key's
 * limit), then a worker started and timed until all have finished. Also the Redis bytes per queued run.
 */
async function drain(spec: TrialSpec, redis: Redis): Promise<TrialResult> {
  const before = await usedMemory(redis);
  const producer = await subject(spec, false);
  await startAll(producer, spec.n);
  await producer.close();
  const queuedBytes = ((await usedMemory(redis)) - before) / spec.n;
  const redisCpu0 = await redisCpuSeconds(redis);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const s = await subject(spec);
  await waitFinished(s, redis, spec.n);
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  const redisCpu = (await redisCpuSeconds(redis)) - redisCpu0;
  const calls = totalCalls(await commandStats(redis));
  await s.close();
  return { perSec: (spec.n / ms) * 1000, ms, nodeCpuUs: (cpu.user + cpu.system) / spec.n, redisCpuUs: (redisCpu * 1e6) / spec.n, queuedBytes, commandsPerRun: calls / spec.n };
}

async function latency(spec: TrialSpec): Promise<TrialResult> {
  const s = await subject(spec);
  const warmup = Math.min(100, Math.ceil(spec.n / 10));
  for (let i = 0; i < warmup; i += 1) await s.startAndWait!(-i);
  const samples: number[] = [];
  for (let i = 0; i < spec.n; i += 1) {
    const t0 = performance.now();
    await s.startAndWait!(i);
    samples.push(performance.now() - t0);
  }
  await s.close();
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), mean: samples.reduce((a, b) => a + b, 0) / samples.length };
}

/** Redis commands (INFO commandstats, Lua included) and client requests (MONITOR, Lua excluded) per unit. */
async function work(spec: TrialSpec, redis: Redis): Promise<TrialResult> {
  const s = await subject(spec);
  const pollerAddress = /addr=(\S+)/.exec(String(await redis.call('CLIENT', 'INFO')))?.[1];
  const monitor = await redis.monitor();
  const requests = new Map<string, number>();
  let lua = 0;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua') {
      lua += 1;
      return;
    }
    if (source === pollerAddress) return;
    const name = args[0].toLowerCase() === 'fcall' || args[0].toLowerCase() === 'evalsha' ? `${args[0]} ${args[1].slice(0, 12)}` : args[0];
    requests.set(name, (requests.get(name) ?? 0) + 1);
  });
  await redis.config('RESETSTAT');
  await startAll(s, spec.n);
  const polls = await waitFinished(s, redis, spec.n);
  const stats = await commandStats(redis);
  await new Promise((resolve) => setTimeout(resolve, 100));
  monitor.disconnect();
  await s.close();
  // The finished() polls are ours, not the system's: one command each.
  const commands = totalCalls(stats) - polls;
  let requestCount = 0;
  for (const count of requests.values()) requestCount += count;
  const perRun = (x: number) => x / spec.n;
  const top = Object.fromEntries([...stats].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => [k, Number(perRun(v).toFixed(2))]));
  const topRequests = Object.fromEntries([...requests].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => [k, Number(perRun(v).toFixed(2))]));
  return { commands: perRun(commands), requests: perRun(requestCount), luaSeen: perRun(lua), commandsByName: top, requestsByName: topRequests };
}

/** Redis memory per finished unit kept for inspection (used_memory delta, apps closed). */
async function memory(spec: TrialSpec, redis: Redis): Promise<TrialResult> {
  const before = await usedMemory(redis);
  const s = await subject(spec);
  await startAll(s, spec.n);
  await waitFinished(s, redis, spec.n);
  await s.close();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const after = await usedMemory(redis);
  return { bytesPerRun: (after - before) / spec.n };
}

function memoryMb(): { rssMb: number; heapMb: number; heapTotalMb: number; newSpaceMb: number; externalMb: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  const mb = (n: number) => n / 1024 / 1024;
  const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
  return { rssMb: mb(usage.rss), heapMb: mb(usage.heapUsed), heapTotalMb: mb(usage.heapTotal), newSpaceMb: mb(newSpace), externalMb: mb(usage.external + usage.arrayBuffers) };
}

/** The idle scenario's worker: reports RSS when asked; run.ts emits from another process and measures Redis. */
async function idleWorker(spec: TrialSpec): Promise<void> {
  const s = await subject(spec);
  await new Promise((resolve) => setTimeout(resolve, 500));
  process.send!(memoryMb());
  process.on('message', async (message: string) => {
    if (message === 'measure') process.send!(memoryMb());
    if (message === 'stop') {
      await s.close();
      process.send!({ stopped: true });
      process.exit(0);
    }
  });
}

async function idleProducer(spec: TrialSpec): Promise<TrialResult> {
  const s = await subject(spec, false);
  await startAll(s, spec.n);
  await s.close();
  return { emitted: spec.n };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.BENCH_TRIAL ?? '') as TrialSpec;
  if (spec.kind === 'idle-worker') return idleWorker(spec);
  const redis = new Redis({ host: spec.host, port: spec.port, maxRetriesPerRequest: 1 });
  let result: TrialResult;
  switch (spec.kind) {
    case 'throughput':
      result = await throughput(spec, redis);
      break;
    case 'latency':
      result = await latency(spec);
      break;
    case 'work':
      result = await work(spec, redis);
      break;
    case 'memory':
      result = await memory(spec, redis);
      break;
    case 'idle-producer':
      result = await idleProducer(spec);
      break;
    case 'drain':
      result = await drain(spec, redis);
      break;
  }
  redis.disconnect();
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`trial failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
