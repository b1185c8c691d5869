/**
 * The instructions Redis executes per run (or fan-out parent) of a real throughput trial of our engine: the
 * worker, its refills, batches and replies as a scenario runs them, against a redis-server under valgrind's
 * callgrind. Where `bench:lua` drives the library's transitions one kind at a time, this counts the calls a
 * worker actually makes; where a trial's Redis CPU time swings by ±10 % between identical trials, the count
 * repeats within about 1 % (the worker's batches depend on timing). Compare two versions by running it in two
 * checkouts (a `git worktree`).
 *
 *   npm run bench:instructions                    WORKLOAD=fanout N=1000 by default (one | three | fanout)
 *   REDIS_SERVER=<redis-server with symbols> ...   lets `callgrind_annotate <printed dump>` show where they go
 *
 * Not a scenario of the issue: a tool for making Redis's side cheaper.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { countInstructions } from './support/callgrind.js';
import { startBenchRedis } from './support/redis-server.js';
import { commandStats } from './support/redis-stats.js';

const workload = process.env.WORKLOAD ?? 'fanout';
const n = Number(process.env.N ?? 1000);
if (!['one', 'three', 'fanout'].includes(workload)) throw new Error(`WORKLOAD must be one, three or fanout, not ${workload}`);

const server = await startBenchRedis({ callgrind: true });
const admin = new Redis(server.port, server.host);
try {
  const counted = await countInstructions(server);
  const trial = path.join(path.dirname(fileURLToPath(import.meta.url)), 'trial.js');
  // No warm-up: the count is of everything Redis does for the trial's runs, whichever of them are timed.
  const { stdout } = await promisify(execFile)(process.execPath, [trial], {
    env: {
      ...process.env,
      BENCH_WARMUP: '0',
      BENCH_TRIAL: JSON.stringify({ kind: 'throughput', system: 'ours', workload, n, host: server.host, port: server.port }),
    },
    maxBuffer: 16 * 1024 * 1024,
  });
  if (!/^RESULT /m.test(stdout)) throw new Error(`the trial printed no result:\n${stdout}`);
  const { instructions, dump } = await counted();
  const fcalls = ((await commandStats(admin)).get('fcall') ?? 0) / n;
  const unit = workload === 'fanout' ? 'parent' : 'run';
  console.log(`${workload}: ${Math.round(instructions / n).toLocaleString('en-US')} instructions/${unit}, ${fcalls.toFixed(2)} FCALLs/${unit} (${n} ${unit}s; dump ${dump})`);
} finally {
  admin.disconnect();
  await server.stop();
}
