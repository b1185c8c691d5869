/**
 * Redis's own cost of each transition of a one-step run, with Node out of the way: every call is prepared
 * first and sent in pipelines of 1,000, so that Redis is the busy process. Emits N runs, claims them in batches
 * of 50, then completes each (its step record with it, no refill). Prints the median over REPS rounds of
 * Redis's CPU time per run for each, and how INFO commandstats splits the FCALL's time between its inner
 * commands and the Lua around them.
 *
 *   npm run bench:lua                          N=20000 REPS=5 by default
 *   LUA_B=/path/to/other/lua npm run bench:lua  compares this package's lua/ (A) with another lua/ folder (B),
 *                                              each on a redis-server of its own, rounds alternating A B A B
 *   WORKLOAD=fanout npm run bench:lua          the fan-out of scenario 3 instead: N parents, each parked with three
 *                                              children it starts, the children completed (which wakes the
 *                                              parent), the parents claimed again and completed
 *   WORKLOAD=keyed npm run bench:lua           scenario F1's keyed runs: N one-step runs over N/10 keys with a
 *                                              concurrency limit of 1 (one run a key ready, nine held), drained
 *                                              by claim and completion rounds; each completion admits its key's
 *                                              next run. Compare with the default workload (unlimited)
 *   CALLGRIND=1 N=1000 REPS=1 npm run bench:lua counts the instructions Redis executes for each instead (the
 *                                              server runs under valgrind's callgrind): the same calls give the
 *                                              same count within 0.1 %, where CPU time swings by 10-20 % on a
 *                                              shared machine. REDIS_SERVER=/path/to/redis-server with symbols
 *                                              lets `callgrind_annotate` on the printed dumps show where they go
 *
 * Not a scenario of the issue: the tool for making the Lua library cheaper, one change at a time.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { assembleLuaLibrary } from '../lib/redis/lua-library.js';
import { countInstructions } from './support/callgrind.js';
import { startBenchRedis, type BenchRedis } from './support/redis-server.js';
import { commandTimes, redisCpuSeconds } from './support/redis-stats.js';

const N = Number(process.env.N ?? 20_000);
const REPS = Number(process.env.REPS ?? 5);
const BATCH = 50;
const ROOT = '{bench:default:0}';
const WORKFLOW = 'bench-one';

const CALLGRIND = process.env.CALLGRIND === '1';

interface Cost {
  /** Redis process CPU time per run (INFO cpu): not inflated when the OS preempts Redis, as wall time is. */
  cpu: number;
  fcall: number;
  inner: number;
  /** Instructions Redis executed per run (CALLGRIND=1 only). */
  instructions?: number;
  /** The callgrind dump of this cost's calls (CALLGRIND=1 only). */
  dump?: string;
}

async function costOf(variant: Variant, send: () => Promise<unknown>): Promise<Cost> {
  const { admin } = variant;
  await admin.config('RESETSTAT');
  const cpu0 = await redisCpuSeconds(admin);
  const counted = CALLGRIND ? await countInstructions(variant.server) : undefined;
  await send();
  const instructions = counted ? await counted() : undefined;
  const cpu = ((await redisCpuSeconds(admin)) - cpu0) * 1e6;
  let fcall = 0;
  let inner = 0;
  for (const [command, { usec }] of await commandTimes(admin)) {
    if (command === 'fcall') fcall += usec;
    else inner += usec;
  }
  return { cpu: cpu / N, fcall: fcall / N, inner: inner / N, instructions: instructions && instructions.instructions / N, dump: instructions?.dump };
}

async function pipelined(redis: Redis, calls: (string | number)[][]): Promise<unknown[]> {
  const replies: unknown[] = [];
  for (let from = 0; from < calls.length; from += 1000) {
    const pipeline = redis.pipeline();
    for (const args of calls.slice(from, from + 1000)) pipeline.call('FCALL', ...args);
    for (const [error, reply] of (await pipeline.exec())!) {
      if (error) throw error;
      replies.push(reply);
    }
  }
  return replies;
}

interface Variant {
  label: string;
  code: string;
  /** The library's build number (its claim replies are flat from 39 on). */
  build: number;
  server: BenchRedis;
  admin: Redis;
  rounds: Record<string, Cost>[];
}

const FANOUT = process.env.WORKLOAD === 'fanout';
const KEYED = process.env.WORKLOAD === 'keyed';
const KEYED_WORKFLOW = 'bench-keyed';
/** Runs per key of the keyed workload, as in scenario F1 (100,000 runs over 10,000 keys). */
const RUNS_PER_KEY = 10;
const PARENT_WORKFLOW = 'bench-fanout';
const CHILD_WORKFLOW = 'bench-leaf';

/** Claims every ready run of `workflow` in batches, as the worker's claim does: its workflows packed in one
 *  argument, its runs packed and, from build 39 on, flat in the reply (lua/claim.lua). */
async function claimAll(variant: Variant, workflow: string, count: number, tag: string, batches = Math.ceil(count / BATCH)): Promise<{ id: string; token: string; steps: number }[]> {
  const flat = variant.build >= 39;
  const replies = await pipelined(
    variant.admin,
    Array.from({ length: batches }, (_, k) => [
      'wf1_claim', 1, ROOT, 'w1', `${BATCH}${flat ? 'f' : 'p'}`, 30_000, `${tag}${k}`, 86_400_000, `0,1,0,${Buffer.byteLength(workflow)}:${workflow}`,
    ]),
  );
  const runs: { id: string; token: string; steps: number }[] = [];
  for (const reply of replies as unknown[][]) {
    // per run: its head (id and token first), input, error and steps; flat, the steps' count comes before them
    for (let r = 1; r < reply.length; ) {
      const entry = flat ? reply.slice(r, r + 3) : (reply[r] as unknown[]);
      const stepElements = flat ? Number(reply[r + 3]) : (entry[3] as unknown[]).length;
      const [id, token] = String(entry[0]).split('\n');
      runs.push({ id, token, steps: stepElements / 2 });
      r += flat ? 4 + stepElements : 1;
    }
  }
  if (runs.length !== count) throw new Error(`${variant.label}: claimed ${runs.length} of ${count} runs of ${workflow}`);
  return runs;
}

async function completeAll(admin: Redis, runs: { id: string; token: string }[], output: string, label: string): Promise<void> {
  const replies = await pipelined(admin, runs.map((run) => ['wf1_complete', 1, ROOT, run.id, run.token, output, 86_400_000]));
  if (replies.some((reply) => (reply as unknown[])[0] !== 1)) throw new Error(`${label}: a completion was refused`);
}

/** A round's start: the variant's library on an empty server, then N runs of `workflow` emitted (the round's first cost). */
async function emitRound(variant: Variant, rep: number, workflow: string): Promise<Cost> {
  const { admin } = variant;
  await admin.flushall();
  await admin.function('LOAD', 'REPLACE', variant.code);
  const ids = Array.from({ length: N }, (_, i) => `01KBENCH${String(rep).padStart(2, '0')}${String(i).padStart(16, '0')}`);
  // keyed: version '', deadline '', the flow key and its spec (concurrency 1, no rate limit, not fair)
  const flow = (i: number) => (KEYED ? ['', '', `k${i % (N / RUNS_PER_KEY)}`, '1,0,0,0'] : []);
  return costOf(variant, () => pipelined(admin, ids.map((id, i) => ['wf1_emit', 1, ROOT, id, workflow, 'default', `{"i":${i}}`, 0, '', '', '', '', '', '', '', ...flow(i)])));
}

/** Scenario F1's keyed side: RUNS_PER_KEY rounds, each claiming the runs ready (one a key) and completing
 *  them, which admits each key's next run; costs are per run over all rounds. */
async function keyedRound(variant: Variant, rep: number): Promise<void> {
  const emit = await emitRound(variant, rep, KEYED_WORKFLOW);
  const keys = N / RUNS_PER_KEY;
  const record = `{"k":"step","a":1,"st":${Date.now()},"r":true}`;
  const claims: Cost[] = [];
  const completions: Cost[] = [];
  for (let turn = 0; turn < Number(process.env.TURNS ?? RUNS_PER_KEY); turn += 1) {
    let claimed: { id: string; token: string }[] = [];
    claims.push(await costOf(variant, async () => {
      claimed = await claimAll(variant, KEYED_WORKFLOW, keys, `c${turn}-`);
    }));
    completions.push(await costOf(variant, async () => {
      const replies = await pipelined(variant.admin, claimed.map((run) => ['wf1_complete', 1, ROOT, run.id, run.token, 'true', 86_400_000, 1, '0:a', record]));
      if (replies.some((reply) => (reply as unknown[])[0] !== 1)) throw new Error(`${variant.label}: a completion was refused`);
    }));
  }
  if (process.env.PER_TURN) console.log(completions.map((c) => Math.round((c.instructions ?? c.cpu) * RUNS_PER_KEY)).join(" "), claims.map((c) => Math.round((c.instructions ?? c.cpu) * RUNS_PER_KEY)).join(" "));
  const left = await variant.admin.call('ZCARD', `${ROOT}:st:${KEYED_WORKFLOW}:queued`);
  if (Number(left) !== 0 && !process.env.PER_TURN) throw new Error(`${variant.label}: ${left} keyed runs still queued after ${RUNS_PER_KEY} rounds`);
  // each round's cost is per N runs (costOf divides by N): summed, per run drained
  const sum = (costs: Cost[]): Cost => ({
    cpu: costs.reduce((a, c) => a + c.cpu, 0),
    fcall: costs.reduce((a, c) => a + c.fcall, 0),
    inner: costs.reduce((a, c) => a + c.inner, 0),
    instructions: CALLGRIND ? costs.reduce((a, c) => a + c.instructions!, 0) : undefined,
    dump: completions.at(-1)!.dump,
  });
  variant.rounds.push({ emit, claim: sum(claims), complete: sum(completions) });
}

/** Scenario 3's parent with three children, transition by transition; costs are per parent (its children included). */
async function fanOutRound(variant: Variant, rep: number): Promise<void> {
  const { admin } = variant;
  const emit = await emitRound(variant, rep, PARENT_WORKFLOW);
  const childIds = (i: number) => [0, 1, 2].map((k) => `01KCHILD${String(rep).padStart(2, '0')}${String(i * 3 + k).padStart(16, '0')}`);
  let parents: { id: string; token: string }[] = [];
  const claim = await costOf(variant, async () => {
    parents = await claimAll(variant, PARENT_WORKFLOW, N, 'p');
  });
  const park = await costOf(variant, async () => {
    const replies = await pipelined(
      admin,
      parents.map((parent, i) => {
        const children = childIds(i);
        const args: (string | number)[] = ['wf1_park', 1, ROOT, parent.id, parent.token, JSON.stringify({ children })];
        children.forEach((child, k) => {
          args.push('spawn', `0:child-${k}`, `${child}||${CHILD_WORKFLOW}`);
          args.push(child, CHILD_WORKFLOW, 'default', `{"i":${i * 3 + k}}`, 0, '', '', '', parent.id, `0:child-${k}`, ROOT, '');
        });
        return args;
      }),
    );
    if (replies.some((reply) => (reply as unknown[])[0] !== 1)) throw new Error(`${variant.label}: a park was refused`);
  });
  let children: { id: string; token: string }[] = [];
  const claimChildren = await costOf(variant, async () => {
    children = await claimAll(variant, CHILD_WORKFLOW, 3 * N, 'c');
  });
  const completeChildren = await costOf(variant, () => completeAll(admin, children, '1', variant.label));
  let woken: { id: string; token: string; steps: number }[] = [];
  const claimWoken = await costOf(variant, async () => {
    woken = await claimAll(variant, PARENT_WORKFLOW, N, 'w');
  });
  if (woken.some((run) => run.steps !== 3)) throw new Error(`${variant.label}: a woken parent did not get its three child records`);
  const completeParents = await costOf(variant, () => completeAll(admin, woken, '3', variant.label));
  variant.rounds.push({ emit, claim, park, 'claim-3': claimChildren, 'complete-3': completeChildren, 'claim-woken': claimWoken, complete: completeParents });
}

async function round(variant: Variant, rep: number): Promise<void> {
  if (FANOUT) return fanOutRound(variant, rep);
  if (KEYED) return keyedRound(variant, rep);
  const { admin } = variant;
  const emit = await emitRound(variant, rep, WORKFLOW);
  let claimedRuns: { id: string; token: string }[] = [];
  const claim = await costOf(variant, async () => {
    claimedRuns = await claimAll(variant, WORKFLOW, N, 'c');
  });
  const record = `{"k":"step","a":1,"st":${Date.now()},"r":true}`;
  const complete = await costOf(variant, async () => {
    const replies = await pipelined(admin, claimedRuns.map((run) => ['wf1_complete', 1, ROOT, run.id, run.token, 'true', 86_400_000, 1, '0:a', record]));
    if (replies.some((reply) => (reply as unknown[])[0] !== 1)) throw new Error(`${variant.label}: a completion was refused`);
  });
  variant.rounds.push({ emit, claim, complete });
}

const packageLua = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'lua');
const variants: Variant[] = [];
for (const [label, dir] of [['A', packageLua], ...(process.env.LUA_B ? [['B', process.env.LUA_B]] : [])]) {
  const server = await startBenchRedis({ callgrind: CALLGRIND });
  const code = assembleLuaLibrary(dir).code;
  const build = Number(/local BUILD = (\d+)/.exec(code)?.[1] ?? 0);
  variants.push({ label, code, build, server, admin: new Redis(server.port, server.host), rounds: [] });
}
for (let rep = 0; rep < REPS; rep += 1) {
  for (const variant of variants) await round(variant, rep);
}

// The least a round took is the steadiest reading of a cost on a shared machine; the median is printed too.
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const totals: number[] = [];
const unit = FANOUT ? 'parent' : 'run';
for (const variant of variants) {
  let total = 0;
  let totalMin = 0;
  let totalInstructions = 0;
  for (const name of Object.keys(variant.rounds[0])) {
    const cpus = variant.rounds.map((r) => r[name].cpu);
    const cpu = median(cpus);
    const fcall = median(variant.rounds.map((r) => r[name].fcall));
    const inner = median(variant.rounds.map((r) => r[name].inner));
    total += cpu;
    totalMin += Math.min(...cpus);
    if (CALLGRIND) {
      const instructions = median(variant.rounds.map((r) => r[name].instructions!));
      totalInstructions += instructions;
      console.log(`${variant.label} ${name.padEnd(11)} ${Math.round(instructions).toLocaleString('en-US').padStart(9)} instructions/${unit} (dump ${variant.rounds.at(-1)![name].dump})`);
      continue;
    }
    console.log(
      `${variant.label} ${name.padEnd(11)} Redis CPU ${cpu.toFixed(2).padStart(6)} µs/${unit}, least ${Math.min(...cpus).toFixed(2)}; in FCALL ${fcall.toFixed(2)} (inner commands ${inner.toFixed(2)}, Lua around them ${(fcall - inner).toFixed(2)})`,
    );
  }
  const what = FANOUT ? 'parent with 3 children' : 'one-step run';
  if (CALLGRIND) {
    totals.push(totalInstructions);
    console.log(`${variant.label} ${what}: ${Math.round(totalInstructions).toLocaleString('en-US')} instructions (median of ${REPS} rounds of ${N})`);
    continue;
  }
  totals.push(total);
  console.log(`${variant.label} ${what}: Redis CPU ${total.toFixed(2)} µs, least ${totalMin.toFixed(2)} (median of ${REPS} rounds of ${N})`);
}
if (totals.length === 2) console.log(`B / A: ${(totals[1] / totals[0]).toFixed(3)}`);
for (const variant of variants) {
  variant.admin.disconnect();
  await variant.server.stop();
}
