/**
 * `npm run bench`: starts a private redis-server, runs every scenario for our engine and for BullMQ
 * alternately (A B A B A B), each trial in a fresh Node process, and rewrites bench/RESULTS.md.
 * BENCH_QUICK=1: smaller counts, for iteration. BENCH_ONLY=s1,s4: some scenarios only. BENCH_WARMUP=0: no
 * untimed warm-up before a throughput trial (0.1 by default: a tenth of its count, at most 2,000 units).
 * BENCH_PROFILE=1: our engine's trials run under `node --cpu-prof` (profiles in bench/profiles/).
 */
import { fork } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startBenchRedis, type BenchRedis } from './support/redis-server.js';
import { commandStats, resetServer, totalCalls } from './support/redis-stats.js';
import { fmt, spread, type Spread } from './support/stats.js';
import { describeWarmup } from './support/warmup.js';
import type { SystemId, TrialResult, TrialSpec } from './trial.js';
import { FLOW_KEYS, statusKey } from './systems/ours.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const QUICK = process.env.BENCH_QUICK === '1';
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const PROFILE = process.env.BENCH_PROFILE === '1';
const REPS = QUICK ? 2 : 3;
/** Scenario F1's trials per side: its ratio moves more between runs than the others' (see its notes). */
const F1_REPS = QUICK ? 2 : 5;

interface Row {
  scenario: string;
  metric: string;
  /** 'higher' = more is better (throughput); 'lower' = less is better */
  better: 'higher' | 'lower';
  ours?: Spread;
  theirs?: { label: string; spread: Spread }[];
  ratio?: number;
  target: string;
  verdict: string;
  unit: string;
}

interface Scenario {
  id: string;
  title: string;
  run(ctx: Context): Promise<Row[]>;
  notes?: string[];
}

interface Context {
  redis: BenchRedis;
  admin: Redis;
  log: (line: string) => void;
  details: string[];
}

// ---- trials ----

async function trial(ctx: Context, spec: Omit<TrialSpec, 'host' | 'port'>, reset = true): Promise<TrialResult> {
  if (reset) await resetServer(ctx.admin);
  const full: TrialSpec = { ...spec, host: ctx.redis.host, port: ctx.redis.port };
  const execArgv = ['--expose-gc'];
  if (PROFILE && spec.system === 'ours') {
    const dir = path.join(repo, 'bench', 'profiles');
    mkdirSync(dir, { recursive: true });
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const child = fork(path.join(here, 'trial.js'), [], {
    env: { ...process.env, BENCH_TRIAL: JSON.stringify(full) },
    execArgv,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (code !== 0 || !line) throw new Error(`trial ${spec.kind}/${spec.system} failed (exit ${code}):\n${err || out}`);
  return JSON.parse(line.slice('RESULT '.length)) as TrialResult;
}

/** Runs `systems` alternately REPS times and collects `metric` of each. */
async function alternate(
  ctx: Context,
  systems: SystemId[],
  spec: Omit<TrialSpec, 'host' | 'port' | 'system'>,
  reps = REPS,
): Promise<Map<SystemId, TrialResult[]>> {
  const results = new Map<SystemId, TrialResult[]>(systems.map((s) => [s, []]));
  for (let rep = 0; rep < reps; rep += 1) {
    for (const system of systems) {
      const result = await trial(ctx, { ...spec, system });
      results.get(system)!.push(result);
      ctx.log(`  ${spec.kind} ${system} #${rep + 1}: ${summarize(result)}`);
    }
  }
  return results;
}

function summarize(result: TrialResult): string {
  return Object.entries(result)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k}=${fmt(v as number)}`)
    .join(' ');
}

function metricOf(results: TrialResult[], key: string): Spread {
  return spread(results.map((r) => r[key] as number));
}

const LABEL: Record<SystemId, string> = {
  ours: 'ours',
  'bull-single': 'BullMQ job',
  'bull-chain': 'BullMQ chain (job adds next)',
  'bull-flow': 'BullMQ FlowProducer chain',
  'bull-fanout': 'BullMQ flow, 3 children',
};

function verdict(ok: boolean, text: string): string {
  return `${ok ? 'PASS' : 'FAIL'}: ${text}`;
}

/** Informational rows: CPU per run of the Node process and of Redis (robust to a busy machine, unlike wall time). */
function cpuRows(scenario: string, r: Map<SystemId, TrialResult[]>, others: SystemId[]): Row[] {
  return (['nodeCpuUs', 'redisCpuUs'] as const).map((key) => {
    const ours = metricOf(r.get('ours')!, key);
    const theirs = others.map((o) => ({ label: LABEL[o], spread: metricOf(r.get(o)!, key) }));
    const ratio = ours.median / Math.min(...theirs.map((t) => t.spread.median));
    return { scenario, metric: key === 'nodeCpuUs' ? 'Node CPU µs/run' : 'Redis CPU µs/run', unit: 'µs', better: 'lower' as const, ours, theirs, ratio, target: '(info)', verdict: `${ratio.toFixed(2)}x` };
  });
}

// ---- scenarios ----

const N1 = QUICK ? 3_000 : 20_000;
const N2 = QUICK ? 1_500 : 10_000;
const N3 = QUICK ? 1_000 : 5_000;
const N4 = QUICK ? 200 : 1_000;
const N5 = QUICK ? 300 : 2_000;
const N6 = QUICK ? 500 : 2_000;
const N7 = QUICK ? 2_000 : 10_000;
const SLEEP7_MS = QUICK ? 10_000 : 30_000;
const NF = QUICK ? 20_000 : 100_000;

const scenarios: Scenario[] = [
  {
    id: 's1',
    title: `1. Throughput: one-step workflow vs one BullMQ job (${N1.toLocaleString('en-US')} each)`,
    run: async (ctx) => {
      const r = await alternate(ctx, ['ours', 'bull-single'], { kind: 'throughput', workload: 'one', n: N1 });
      const ours = metricOf(r.get('ours')!, 'perSec');
      const theirs = metricOf(r.get('bull-single')!, 'perSec');
      const ratio = ours.median / theirs.median;
      return [
        { scenario: '1', metric: 'runs/s', unit: '/s', better: 'higher', ours, theirs: [{ label: LABEL['bull-single'], spread: theirs }], ratio, target: 'ratio >= 1.0', verdict: verdict(ratio >= 1, `${ratio.toFixed(2)}x`) },
        ...cpuRows('1', r, ['bull-single']),
      ];
    },
  },
  {
    id: 's2',
    title: `2. Throughput: three sequential steps vs three chained BullMQ jobs (${N2.toLocaleString('en-US')} each)`,
    run: async (ctx) => {
      const r = await alternate(ctx, ['ours', 'bull-chain', 'bull-flow'], { kind: 'throughput', workload: 'three', n: N2 });
      const ours = metricOf(r.get('ours')!, 'perSec');
      const chain = metricOf(r.get('bull-chain')!, 'perSec');
      const flow = metricOf(r.get('bull-flow')!, 'perSec');
      const best = Math.max(chain.median, flow.median);
      const ratio = ours.median / best;
      return [{
        scenario: '2', metric: 'runs/s', unit: '/s', better: 'higher', ours,
        theirs: [{ label: LABEL['bull-chain'], spread: chain }, { label: LABEL['bull-flow'], spread: flow }],
        ratio, target: 'ratio >= 2.0 vs the faster', verdict: verdict(ratio >= 2, `${ratio.toFixed(2)}x the faster BullMQ way`),
      }, ...cpuRows('2', r, ['bull-chain', 'bull-flow'])];
    },
  },
  {
    id: 's3',
    title: `3. Fan-out/fan-in: parent with 3 parallel child workflows vs a BullMQ FlowProducer parent with 3 children (${N3.toLocaleString('en-US')} each)`,
    notes: ['Scenario 3: our parent runs `Promise.all` of three `ctx.step.runWorkflow` (no-op children, same queue); BullMQ adds a FlowProducer tree (no-op parent and children). A unit is finished when the parent is (ours: parents succeeded; BullMQ: completed jobs / 4).'],
    run: async (ctx) => {
      const r = await alternate(ctx, ['ours', 'bull-fanout'], { kind: 'throughput', workload: 'fanout', n: N3 });
      const ours = metricOf(r.get('ours')!, 'perSec');
      const theirs = metricOf(r.get('bull-fanout')!, 'perSec');
      const ratio = ours.median / theirs.median;
      return [
        { scenario: '3', metric: 'parents/s', unit: '/s', better: 'higher', ours, theirs: [{ label: LABEL['bull-fanout'], spread: theirs }], ratio, target: 'ratio >= 1.5', verdict: verdict(ratio >= 1.5, `${ratio.toFixed(2)}x`) },
        ...cpuRows('3', r, ['bull-fanout']),
      ];
    },
  },
  {
    id: 's4',
    title: `4. Latency emit -> result, one at a time (${N4.toLocaleString('en-US')} runs): run() vs add() -> waitUntilFinished()`,
    run: async (ctx) => {
      const r = await alternate(ctx, ['ours', 'bull-single'], { kind: 'latency', workload: 'one', n: N4 });
      const rows: Row[] = [];
      for (const p of ['p50', 'p99'] as const) {
        const ours = metricOf(r.get('ours')!, p);
        const theirs = metricOf(r.get('bull-single')!, p);
        const ratio = ours.median / theirs.median;
        rows.push({ scenario: '4', metric: `${p} ms`, unit: 'ms', better: 'lower', ours, theirs: [{ label: LABEL['bull-single'], spread: theirs }], ratio, target: 'ours <= BullMQ', verdict: verdict(ratio <= 1, `${ratio.toFixed(2)}x`) });
      }
      return rows;
    },
  },
  {
    id: 's5',
    title: `5. Redis work per three-step run (${N5.toLocaleString('en-US')} runs)`,
    run: async (ctx) => {
      const r = await alternate(ctx, ['ours', 'bull-chain', 'bull-flow'], { kind: 'work', workload: 'three', n: N5 }, 1);
      for (const [system, results] of r) {
        ctx.details.push(`- ${LABEL[system]}: commands per run by name ${JSON.stringify(results[0].commandsByName)}; client requests per run ${JSON.stringify(results[0].requestsByName)}`);
      }
      const rows: Row[] = [];
      for (const [key, label, limit] of [['commands', 'Redis commands/run', 40], ['requests', 'client round trips/run', 6]] as const) {
        const ours = metricOf(r.get('ours')!, key);
        const chain = metricOf(r.get('bull-chain')!, key);
        const flow = metricOf(r.get('bull-flow')!, key);
        const ratio = ours.median / Math.min(chain.median, flow.median);
        rows.push({
          scenario: '5', metric: label, unit: '', better: 'lower', ours,
          theirs: [{ label: LABEL['bull-chain'], spread: chain }, { label: LABEL['bull-flow'], spread: flow }],
          ratio, target: `<= ${limit}`, verdict: verdict(ours.median <= limit, `${fmt(ours.median)} per run`),
        });
      }
      return rows;
    },
  },
  {
    id: 's6',
    title: `6. Redis memory per finished three-step run kept for inspection (${N6.toLocaleString('en-US')} runs)`,
    run: async (ctx) => {
      const r = await alternate(ctx, ['ours', 'bull-chain', 'bull-flow'], { kind: 'memory', workload: 'three', n: N6 });
      const ours = metricOf(r.get('ours')!, 'bytesPerRun');
      const chain = metricOf(r.get('bull-chain')!, 'bytesPerRun');
      const flow = metricOf(r.get('bull-flow')!, 'bytesPerRun');
      const ratio = ours.median / Math.min(chain.median, flow.median);
      return [{
        scenario: '6', metric: 'bytes/run', unit: 'B', better: 'lower', ours,
        theirs: [{ label: LABEL['bull-chain'], spread: chain }, { label: LABEL['bull-flow'], spread: flow }],
        ratio, target: 'ratio <= 1.0 vs the smaller', verdict: verdict(ratio <= 1, `${ratio.toFixed(2)}x`),
      }];
    },
  },
  {
    id: 's7',
    title: `7. Idle cost: ${N7.toLocaleString('en-US')} runs parked in a ${SLEEP7_MS / 1000} s sleep (BullMQ: as many delayed jobs)`,
    notes: [
      `The sleep is ${SLEEP7_MS / 1000} s instead of 60 s to keep the whole bench short; Redis commands are counted over the wait after the last run parked (about ${Math.round((SLEEP7_MS - 5_000) / 1000)} s). One trial per system: these are resource counts, not timings.`,
    ],
    run: async (ctx) => {
      const ours = await idleTrial(ctx, 'ours');
      const bull = await idleTrial(ctx, 'bull-single');
      const one = (v: number): Spread => ({ min: v, median: v, max: v });
      return [
        { scenario: '7', metric: 'worker RSS growth MB', unit: 'MB', better: 'lower', ours: one(ours.rssGrowthMb), theirs: [{ label: 'BullMQ delayed jobs', spread: one(bull.rssGrowthMb) }], ratio: undefined, target: '< 20 MB', verdict: verdict(ours.rssGrowthMb < 20, `${fmt(ours.rssGrowthMb)} MB`) },
        { scenario: '7', metric: 'Redis commands/s while waiting', unit: '/s', better: 'lower', ours: one(ours.commandsPerSec), theirs: [{ label: 'BullMQ delayed jobs', spread: one(bull.commandsPerSec) }], ratio: undefined, target: '< 50/s', verdict: verdict(ours.commandsPerSec < 50, `${fmt(ours.commandsPerSec)}/s`) },
      ];
    },
  },
  {
    id: 'f1',
    title: `F1. Flow control: draining a ${NF.toLocaleString('en-US')}-run backlog over ${FLOW_KEYS.toLocaleString('en-US')} keys with concurrency.limit = 1 vs the same backlog unlimited (one-step runs)`,
    notes: [
      `Both sides emit ${NF.toLocaleString('en-US')} one-step runs with no worker running, then one worker (concurrency 50) drains them, timed from its start. Keyed: ${FLOW_KEYS.toLocaleString('en-US')} runs in the ready set, the rest held back in their keys' queues and moved to it by the completions of their keys' runs. Our engine on both sides.`,
      `${F1_REPS} alternating trials: the keyed drain touches two small keys per key at random and its Redis CPU per run swings more than the unlimited one's on a shared machine (ratios of 0.73-1.09 between runs of 3 trials each; bench/NOTES.md).`,
    ],
    run: async (ctx) => {
      const results: Record<'one' | 'keyed', TrialResult[]> = { one: [], keyed: [] };
      for (let rep = 0; rep < F1_REPS; rep += 1) {
        for (const workload of ['one', 'keyed'] as const) {
          const result = await trial(ctx, { kind: 'drain', workload, n: NF, system: 'ours' });
          results[workload].push(result);
          ctx.log(`  drain ${workload} #${rep + 1}: ${summarize(result)}`);
        }
      }
      const rows: Row[] = [];
      for (const [metric, key, better, unit] of [
        ['runs/s drained', 'perSec', 'higher', '/s'],
        ['Redis CPU µs/run', 'redisCpuUs', 'lower', 'µs'],
        ['Redis commands/run', 'commandsPerRun', 'lower', ''],
        ['Redis bytes per queued run', 'queuedBytes', 'lower', 'B'],
      ] as const) {
        const ours = metricOf(results.keyed, key);
        const theirs = metricOf(results.one, key);
        const ratio = ours.median / theirs.median;
        const main = key === 'perSec';
        rows.push({
          scenario: 'F1', metric, unit, better, ours, theirs: [{ label: 'unlimited, same backlog', spread: theirs }], ratio,
          target: main ? 'ratio >= 0.8' : '(info)', verdict: main ? verdict(ratio >= 0.8, `${ratio.toFixed(2)}x`) : `${ratio.toFixed(2)}x`,
        });
      }
      return rows;
    },
  },
];

/** Worker in its own process; runs are emitted from another process; RSS and Redis commands are measured while they wait. */
async function idleTrial(ctx: Context, system: SystemId): Promise<{ rssGrowthMb: number; commandsPerSec: number }> {
  await resetServer(ctx.admin);
  const base = { workload: 'sleep' as const, n: N7, sleepMs: SLEEP7_MS, host: ctx.redis.host, port: ctx.redis.port, system };
  const worker = fork(path.join(here, 'trial.js'), [], {
    env: { ...process.env, BENCH_TRIAL: JSON.stringify({ ...base, kind: 'idle-worker' }) },
    execArgv: ['--expose-gc', ...(process.env.BENCH_IDLE_NODE_ARGS?.split(' ').filter(Boolean) ?? [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = () => new Promise<Record<string, number>>((resolve) => worker.once('message', (m) => resolve(m as Record<string, number>)));
  const m0 = await next();
  const rss0 = m0.rssMb;
  const emittedAt = Date.now();
  await trial(ctx, { ...base, kind: 'idle-producer' }, false).catch(async (error) => {
    worker.kill();
    throw error;
  });
  // Everything parked: our runs 'waiting' (claimed, slept, lease released); BullMQ's jobs in 'delayed'.
  const until = Date.now() + 120_000;
  for (;;) {
    const parked = system === 'ours' ? await ctx.admin.zcard(statusKey('bench-sleep', 'waiting')) : await ctx.admin.zcard('bull:bench:delayed');
    if (parked >= N7) break;
    if (Date.now() > until) throw new Error(`only ${parked} of ${N7} parked`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const parkedAfterMs = Date.now() - emittedAt;
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  worker.send('measure');
  const m1 = await next();
  const rss1 = m1.rssMb;
  const windowMs = Math.max(2_000, SLEEP7_MS - (Date.now() - emittedAt) - 2_000);
  const before = totalCalls(await commandStats(ctx.admin));
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const after = totalCalls(await commandStats(ctx.admin));
  worker.send('stop');
  await new Promise((resolve) => worker.once('exit', resolve));
  const result = { rssGrowthMb: rss1 - rss0, commandsPerSec: ((after - before) / windowMs) * 1000 };
  ctx.details.push(`- Idle ${LABEL[system]}: all parked ${fmt(parkedAfterMs / 1000)} s after the first emit; worker RSS ${fmt(rss0)} -> ${fmt(rss1)} MB, heap used after GC ${fmt(m0.heapMb)} -> ${fmt(m1.heapMb)} MB, V8 heap committed ${fmt(m0.heapTotalMb)} -> ${fmt(m1.heapTotalMb)} MB (new space ${fmt(m0.newSpaceMb)} -> ${fmt(m1.newSpaceMb)} MB); ${fmt(result.commandsPerSec)} Redis commands/s over ${fmt(windowMs / 1000)} s`);
  ctx.log(`  idle ${system}: all parked after ${parkedAfterMs} ms; RSS ${fmt(rss0)} -> ${fmt(rss1)} MB (heap used after GC ${fmt(m0.heapMb)} -> ${fmt(m1.heapMb)} MB, committed ${fmt(m0.heapTotalMb)} -> ${fmt(m1.heapTotalMb)}, new space ${fmt(m0.newSpaceMb)} -> ${fmt(m1.newSpaceMb)}, external ${fmt(m0.externalMb)} -> ${fmt(m1.externalMb)}); ${fmt(result.commandsPerSec)} commands/s over ${fmt(windowMs / 1000)} s`);
  return result;
}

// ---- report ----

function machine(redisVersion: string): string[] {
  const pkg = (name: string) => JSON.parse(readFileSync(path.join(repo, 'node_modules', name, 'package.json'), 'utf8')).version as string;
  const cpus = os.cpus();
  return [
    `- Date: ${new Date().toISOString()}`,
    `- Machine: ${cpus.length} cores (${cpus[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}`,
    `- Node ${process.version}, Redis ${redisVersion} (private server, no persistence), BullMQ ${pkg('bullmq')}, ioredis ${pkg('ioredis')}, @nestjs/core ${pkg('@nestjs/core')}`,
    `- Mode: ${QUICK ? 'QUICK (BENCH_QUICK=1, small counts: not the reference figures)' : 'full'}; ${REPS} alternating trials per system unless noted; load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  ];
}

function cell(s?: Spread): string {
  if (!s) return '–';
  return s.min === s.max ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

function report(rows: Row[], titles: string[], notes: string[], details: string[], machineLines: string[], elapsedS: number): string {
  const lines = [
    '# Benchmarks against BullMQ',
    '',
    'Generated by `npm run bench` (bench/run.ts); this file is rewritten on every run. The "Profile and',
    'optimizations" section is kept in bench/NOTES.md and copied here.',
    '',
    ...machineLines,
    `- Total bench time: ${Math.round(elapsedS)} s`,
    '',
    '## How it measures',
    '',
    '- One private redis-server (`--save "" --appendonly no`), FLUSHALL + CONFIG RESETSTAT before every trial.',
    '- Every trial is a fresh Node process holding the producer and the workers (one process, no-op handlers,',
    '  concurrency 50). Systems alternate A B A B A B; cells show median (min–max); ratio = ours / BullMQ medians.',
    '- Our engine runs through `WorkflowModule.forRoot` in a Nest application context, as a user runs it.',
    '  BullMQ runs with default job options, so completed jobs are kept (as our finished runs are, for retention).',
    '- Throughput: timed from the first emit/add to the last unit finished (emits in concurrent chunks of 500,',
    '  completion polled every 5 ms from the counters / the completed set). Before the clock starts, each trial',
    `  runs ${describeWarmup()} to the end, untimed, in the same process (the latency trials warm up too).`,
    '- Redis commands: INFO commandstats delta (commands called from Lua included, the FCALL/EVALSHA itself too,',
    '  the measuring client excluded). Round trips: requests sent by the system\'s clients, seen by MONITOR',
    '  (Lua-internal commands excluded); auto-pipelining may batch several into one socket write.',
    '',
    '## Results',
    '',
    '| # | metric | ours | BullMQ | ratio | target | verdict |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => {
      const theirs = r.theirs?.map((t) => `${t.label}: ${cell(t.spread)}`).join('<br>') ?? '–';
      return `| ${r.scenario} | ${r.metric} | ${cell(r.ours)} | ${theirs} | ${r.ratio === undefined ? '–' : r.ratio.toFixed(2)} | ${r.target} | ${r.verdict} |`;
    }),
    '',
    '## Scenarios',
    '',
    ...titles.map((t) => `- ${t}`),
    ...notes.map((n) => `- Note: ${n}`),
    '',
    '## Details',
    '',
    ...details,
    '',
  ];
  const notesFile = path.join(repo, 'bench', 'NOTES.md');
  if (existsSync(notesFile)) lines.push(readFileSync(notesFile, 'utf8'));
  return lines.join('\n');
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  const redis = await startBenchRedis();
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  const ctx: Context = { redis, admin, log: (line) => console.log(line), details: [] };
  const rows: Row[] = [];
  const titles: string[] = [];
  const notes: string[] = [];
  const machineLines = machine(redis.version);
  console.log(machineLines.join('\n'));
  try {
    for (const scenario of scenarios) {
      if (ONLY && !ONLY.includes(scenario.id)) continue;
      console.log(scenario.title);
      titles.push(scenario.title);
      notes.push(...(scenario.notes ?? []));
      const scenarioRows = await scenario.run(ctx);
      rows.push(...scenarioRows);
      for (const row of scenarioRows) console.log(`  => ${row.metric}: ${row.verdict}`);
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
  const text = report(rows, titles, notes, ctx.details, machineLines, (Date.now() - startedAt) / 1000);
  const target = ONLY || QUICK ? path.join(repo, 'bench', 'RESULTS.partial.md') : path.join(repo, 'bench', 'RESULTS.md');
  writeFileSync(target, text);
  console.log(`\nWrote ${path.relative(repo, target)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
