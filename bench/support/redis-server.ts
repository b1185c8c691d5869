import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { getFreePort } from '../../support/redis-server.js';

export interface BenchRedis {
  url: string;
  host: string;
  port: number;
  version: string;
  /** The redis-server's process id (valgrind's, which is the same process, under callgrind). */
  pid: number;
  /** Where callgrind writes its dumps, when the server runs under it. */
  callgrindDir?: string;
  stop(): Promise<void>;
}

export interface BenchRedisOptions {
  /**
   * Runs the server under `valgrind --tool=callgrind`, which counts the instructions it executes: unlike
   * CPU time, the same calls give the same count within 0.1 % from run to run. The server runs about 50
   * times slower. The binary is `REDIS_SERVER` if set (a build with symbols shows where the instructions
   * go: `callgrind_annotate <dump>`), else the redis-server on the PATH.
   */
  callgrind?: boolean;
}

/**
 * The benchmark's own redis-server: no persistence (no RDB, no AOF), default settings otherwise, so both
 * systems run against the same server under the same settings. It never touches a shared Redis.
 */
export async function startBenchRedis(options: BenchRedisOptions = {}): Promise<BenchRedis> {
  const port = await getFreePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'wf-bench-redis-'));
  const server = process.env.REDIS_SERVER ?? 'redis-server';
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'];
  const callgrindDir = options.callgrind ? await mkdtemp(path.join(os.tmpdir(), 'wf-bench-callgrind-')) : undefined;
  const child: ChildProcess = callgrindDir
    ? spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${path.join(callgrindDir, 'callgrind.out')}`, server, ...args], { stdio: 'ignore' })
    : spawn(server, args, { stdio: 'ignore' });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.on('error', (error) => {
    throw new Error(
      callgrindDir
        ? `Cannot start valgrind (${error.message}): install it (apt-get install -y valgrind).`
        : `Cannot start ${server} (${error.message}): install it (apt-get install -y redis-server).`,
    );
  });
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined);
  const until = Date.now() + (callgrindDir ? 60_000 : 10_000);
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch (error) {
      client.disconnect();
      if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer in time: ${String(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const info = await client.info('server');
  client.disconnect();
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? 'unknown';
  return {
    url: `redis://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    version,
    pid: child.pid!,
    callgrindDir,
    stop: async () => {
      process.off('exit', killOnExit);
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
