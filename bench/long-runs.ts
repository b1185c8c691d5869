/**
 * Long-lived runs (issue 27): a run of N steps with a 1 ms durable sleep every 10th step, with the
 * execution cache on (sticky executions, warm wakes) and off (every wake replays the history), on a
 * private redis-server without persistence.
 *
 *   npm run bench:long-runs
 *   SIZES=1000,3000 MODES=on,off PROBES=100,1000 MEMORY_RUNS=50 npm run bench:long-runs   (SIZES=none: the probes only)
 *
 * Prints, per mode and N: total time, Redis output bytes (INFO stats total_net_output_bytes delta), claims
 * over 1 ms (SLOWLOG at 1,000 µs, wf1_claim calls), the median wake at record ~100 and ~2,000; then, per
 * history length (PROBES), the median wake latency and Redis output bytes per wake over 20 wakes, warm
 * and cold; then the worker's heap per cached execution of 1,000 records.
 */
import 'reflect-metadata';
import { Injectable, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { Workflow, WorkflowClient, WorkflowModule, type WorkflowContext } from '../lib/index.js';
import { WorkflowWorker } from '../lib/worker/workflow-worker.js';
import { commandStats, totalCalls } from './support/redis-stats.js';
import { startBenchRedis } from './support/redis-server.js';

const PREFIX = 'lr';
const numbers = (text: string | undefined, fallback: number[]) => (text === 'none' ? [] : text ? text.split(',').map(Number) : fallback);
const SIZES = numbers(process.env.SIZES, [1_000, 3_000, 10_000]);
const PROBES = numbers(process.env.PROBES, [100, 1_000, 10_000]);
const MODES = (process.env.MODES ?? 'on,off').split(',');
const MEMORY_RUNS = Number(process.env.MEMORY_RUNS ?? 50);
const PROBE_WAKES = 20;

/** First moment each mark was reached (a replay passes the marks of earlier wakes again: kept from the first time). */
const marks = new Map<string, number>();
const mark = (key: string) => {
  if (!marks.has(key)) marks.set(key, performance.now());
};
let info: Redis;
let probeBytes: { from?: number; to?: number; commandsFrom?: number; commandsTo?: number } = {};

async function outputBytes(): Promise<number> {
  return Number(/total_net_output_bytes:(\d+)/.exec(await info.info('stats'))![1]);
}

/** Commands Redis executed (INFO commandstats, those called from Lua included). */
async function redisCommands(): Promise<number> {
  return totalCalls(await commandStats(info));
}

@Workflow('long-run', { maxAttempts: 1 })
@Injectable()
export class LongRunWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; tag: string }>) {
    let total = 0;
    for (let i = 0; i < ctx.input.n; i += 1) {
      total += await ctx.step.run(`s${i}`, () => i);
      if (i % 10 === 9) {
        mark(`${ctx.input.tag}:a${i}`);
        await ctx.step.sleep(`z${i}`, 1);
        mark(`${ctx.input.tag}:b${i}`);
      }
    }
    return total;
  }
}

/** `n` steps, then PROBE_WAKES sleeps of 1 ms, each wake's latency marked, Redis bytes read around them. */
@Workflow('probe-run', { maxAttempts: 1 })
@Injectable()
export class ProbeWorkflow {
  async execute(ctx: WorkflowContext<{ n: number; tag: string }>) {
    for (let i = 0; i < ctx.input.n; i += 1) await ctx.step.run(`s${i}`, () => i);
    for (let j = 0; j < PROBE_WAKES; j += 1) {
      if (j === 1 && probeBytes.from === undefined) {
        probeBytes.commandsFrom = await redisCommands();
        probeBytes.from = await outputBytes();
      }
      mark(`${ctx.input.tag}:a${j}`);
      await ctx.step.sleep(`z${j}`, 1);
      mark(`${ctx.input.tag}:b${j}`);
    }
    if (probeBytes.to === undefined) {
      probeBytes.to = await outputBytes();
      probeBytes.commandsTo = await redisCommands();
    }
    return ctx.input.n;
  }
}

/** `n` steps then a long sleep: parked, and kept warm with the cache on (heap per cached execution). */
@Workflow('parked-run', { maxAttempts: 1 })
@Injectable()
export class ParkedWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    for (let i = 0; i < ctx.input.n; i += 1) await ctx.step.run(`s${i}`, () => ({ i, note: 'a small result' }));
    await ctx.step.sleep('long', 3_600_000);
    return ctx.input.n;
  }
}

@Module({})
class LongRunModule {
  static forRoot(url: string, cache: boolean): DynamicModule {
    return {
      module: LongRunModule,
      imports: [
        WorkflowModule.forRoot({
          connection: url,
          prefix: PREFIX,
          worker: { concurrency: 200, reaperIntervalMs: 20 },
          executionCache: cache ? { maxRuns: 1_000, maxBytes: 1024 * 1024 * 1024 } : false,
          maxStepsPerRun: 100_000,
          tracing: false,
        }),
      ],
      providers: [LongRunWorkflow, ProbeWorkflow, ParkedWorkflow],
    };
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)];
};
const wakes = (tag: string, indexes: number[]) => indexes.map((i) => marks.get(`${tag}:b${i}`)! - marks.get(`${tag}:a${i}`)!).filter((v) => Number.isFinite(v));
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const ms = (value: number) => `${value.toFixed(2)} ms`;

async function main(): Promise<void> {
  const server = await startBenchRedis();
  info = new Redis(server.url);
  await info.config('SET', 'slowlog-log-slower-than', '1000');
  await info.config('SET', 'slowlog-max-len', '100000');
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    console.log(line);
  };
  try {
    say(`Redis ${server.version}, node ${process.version}; a step every record, a 1 ms sleep every 10th step`);
    say('');
    say('| cache | N | wakes | total | Redis output | claims over 1 ms | median wake at ~100 | at ~2,000 |');
    say('|---|---|---|---|---|---|---|---|');
    const probeRows: string[] = [];
    const memoryRows: string[] = [];
    for (const mode of MODES) {
      const app = await NestFactory.createApplicationContext(LongRunModule.forRoot(server.url, mode === 'on'), { logger: ['error', 'warn'] });
      await app.init();
      const client = app.get(WorkflowClient);
      for (const n of SIZES) {
        const tag = `${mode}-${n}`;
        await info.slowlog('RESET');
        const before = await outputBytes();
        const started = performance.now();
        const handle = await client.emit('long-run', { n, tag });
        await handle.result({ timeoutMs: 3_600_000 });
        const total = performance.now() - started;
        const bytes = (await outputBytes()) - before;
        const slow = (await info.slowlog('GET', 100_000)) as [number, number, number, string[]][];
        const slowClaims = slow.filter((entry) => entry[3][1] === 'wf1_claim').length;
        // the 5 wakes around record `record` (a sleep every 10 steps is a record too: record ~ 1.1 x step)
        const at = (record: number) => {
          const nearest = Math.floor(record / 1.1 / 10) * 10 + 9;
          return wakes(tag, [-20, -10, 0, 10, 20].map((k) => nearest + k).filter((i) => i > 0 && i < n));
        };
        say(`| ${mode} | ${n.toLocaleString('en')} | ${n / 10} | ${(total / 1000).toFixed(2)} s | ${mb(bytes)} | ${slowClaims} | ${ms(median(at(100)))} | ${n >= 2_000 ? ms(median(at(2_000))) : '-'} |`);
      }
      for (const records of PROBES) {
        const tag = `probe-${mode}-${records}`;
        probeBytes = {};
        const handle = await client.emit('probe-run', { n: records, tag });
        await handle.result({ timeoutMs: 3_600_000 });
        const latency = median(wakes(tag, [...Array(PROBE_WAKES).keys()].slice(1)));
        // bytes over wakes 1..19 (the INFO reply read at each end is a few KB of the total: subtracted)
        const perWake = (probeBytes.to! - probeBytes.from! - 2 * 4_000) / (PROBE_WAKES - 1);
        // commands per wake (each wake: the park, the timer's tick, the claim; the INFO reads at the ends are not counted)
        const commands = (probeBytes.commandsTo! - probeBytes.commandsFrom!) / (PROBE_WAKES - 1);
        probeRows.push(`| ${mode === 'on' ? 'warm' : 'cold'} | ${records.toLocaleString('en')} | ${ms(latency)} | ${(Math.max(0, perWake) / 1000).toFixed(1)} KB | ${commands.toFixed(1)} |`);
      }
      if (mode === 'on' && MEMORY_RUNS > 0) {
        const worker = app.get(WorkflowWorker);
        const gc = (globalThis as { gc?: () => void }).gc;
        gc?.();
        const heapBefore = process.memoryUsage().heapUsed;
        const cachedBefore = worker.executionCache?.runs ?? 0;
        const bytesBefore = worker.executionCache?.bytes ?? 0;
        for (let r = 0; r < MEMORY_RUNS; r += 1) await client.emit('parked-run', { n: 1_000 });
        const deadline = Date.now() + 600_000;
        while ((worker.executionCache?.runs ?? 0) < cachedBefore + MEMORY_RUNS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        gc?.();
        const heapAfter = process.memoryUsage().heapUsed;
        const cache = worker.executionCache!;
        const runs = cache.runs - cachedBefore;
        memoryRows.push(
          `Worker heap per cached execution of 1,000 records (${runs} runs parked, ${gc ? 'after gc' : 'no --expose-gc'}): ` +
            `${((heapAfter - heapBefore) / runs / 1000).toFixed(0)} KB measured, ${((cache.bytes - bytesBefore) / runs / 1000).toFixed(0)} KB estimated by the cache (its maxBytes counts the estimate)`,
        );
      }
      await app.close();
    }
    say('');
    say('| wake | history (records) | median wake latency | Redis output per wake | Redis commands per wake |');
    say('|---|---|---|---|---|');
    for (const row of probeRows) say(row);
    say('');
    for (const row of memoryRows) say(row);
  } finally {
    info.disconnect();
    await server.stop();
  }
}

await main();
process.exit(0);
