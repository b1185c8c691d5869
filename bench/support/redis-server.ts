import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export interface BenchRedis {
  url: string;
  host: string;
  port: number;
  version: string;
  stop(): Promise<void>;
}

/**
 * The benchmark's own redis-server: no persistence (no RDB, no AOF), default settings otherwise, so both
 * systems run against the same server under the same settings. It never touches a shared Redis.
 */
export async function startBenchRedis(): Promise<BenchRedis> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'wf-bench-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'],
    { stdio: 'ignore' },
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  child.on('error', (error) => {
    throw new Error(`Cannot start redis-server (${error.message}): install it (apt-get install -y redis-server).`);
  });
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined);
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch (error) {
      client.disconnect();
      if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer within 10 s: ${String(error)}`);
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
