/**
 * Private, throw-away redis-server processes, for the tests (test/support/redis-server.ts adds what only
 * they need) and the sample (sample/sample-redis.ts). Not part of the package.
 *
 * Every server gets its own free port and (unless `dir` is given) its own temp
 * dir, so it never touches a shared Redis. Spawned processes are tracked and
 * SIGKILLed if the process exits without stopping them.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_SERVER_NOT_FOUND =
  'redis-server not found: install it (bash scripts/setup.sh does; Debian/Ubuntu: apt-get install -y redis-server) ' +
  'or set REDIS_URL to a Redis >= 7.0 it may use';

export interface StartRedisOptions {
  appendonly?: boolean;
  appendfsync?: 'always' | 'everysec';
  /** Data dir. If given it is NOT removed on stop(). */
  dir?: string;
  /** Fixed port; default: a free one. */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
  /** Readiness timeout in ms (default 10000). */
  readyTimeoutMs?: number;
}

export interface RedisServerHandle {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** pid of the current process (changes after restart()). */
  readonly pid: number;
  /** Send a signal (default SIGKILL) and wait for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SHUTDOWN NOSAVE (falls back to SIGTERM/SIGKILL), wait for exit, rm temp dir if we created it. */
  stop(): Promise<void>;
  /** Start again on the same port, dir and args; resolves once PING answers. */
  restart(): Promise<void>;
}

const HOST = '127.0.0.1';
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

let redisServerChecked = false;
export function assertRedisServerAvailable(): void {
  if (redisServerChecked) return;
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) throw new Error(REDIS_SERVER_NOT_FOUND);
  redisServerChecked = true;
}

/** Find a free TCP port on 127.0.0.1 by binding to port 0. */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not get a free port'))));
    });
  });
}

/** Send one inline command over a raw socket and return the first reply line. */
export function rawCommand(port: number, command: string, timeoutMs = 1000, host = HOST): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ host, port });
    let buf = '';
    const done = (err: Error | null, value?: string) => {
      clearTimeout(timer);
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      if (err) reject(err);
      else resolve(value ?? '');
    };
    const timer = setTimeout(() => done(new Error(`timeout: ${command}`)), timeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.startsWith('$')) {
        // bulk string: "$<len>\r\n<payload>\r\n"
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const len = Number(buf.slice(1, nl));
        if (len < 0) return done(null, '');
        if (buf.length >= nl + 2 + len) done(null, buf.slice(nl + 2, nl + 2 + len));
        return;
      }
      const nl = buf.indexOf('\r\n');
      if (nl >= 0) done(null, buf.slice(0, nl));
    });
    sock.on('error', (e) => done(e));
    sock.on('close', () => done(new Error('connection closed')));
  });
}

export async function waitForPing(port: number, timeoutMs = 10000, host = HOST): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const reply = await rawCommand(port, 'PING', 500, host);
      if (reply === '+PONG') return;
      lastErr = new Error(`unexpected PING reply: ${reply}`); // e.g. -LOADING
    } catch (e) {
      lastErr = e;
    }
    await sleep(50);
  }
  throw new Error(`redis on ${host}:${port} not ready after ${timeoutMs}ms: ${String(lastErr)}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Resolves true if the child exited within ms, false otherwise (leaves no timer behind). */
function waitExitWithin(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    child.once('exit', onExit);
  });
}

function spawnRedis(args: string[], logTail: string[]): ChildProcess {
  installExitHook();
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (d: Buffer) => {
    logTail.push(d.toString('utf8'));
    if (logTail.length > 50) logTail.shift();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServerHandle> {
  assertRedisServerAvailable();
  const port = opts.port ?? (await getFreePort());
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'nrw-redis-')));
  const args = [
    '--port', String(port),
    '--bind', HOST,
    '--save', '',
    '--appendonly', opts.appendonly ? 'yes' : 'no',
    '--dir', dir,
    '--daemonize', 'no',
    ...(opts.appendfsync ? ['--appendfsync', opts.appendfsync] : []),
    ...(opts.args ?? []),
  ];
  const readyTimeout = opts.readyTimeoutMs ?? 10000;
  const logTail: string[] = [];
  let child: ChildProcess | undefined;
  let stopped = false;

  const launch = async () => {
    const c = spawnRedis(args, logTail);
    child = c;
    let earlyExit: string | undefined;
    c.once('exit', (code, sig) => (earlyExit = `exited early (code=${code}, signal=${sig})`));
    const spawnErr = new Promise<never>((_, reject) => c.once('error', reject));
    try {
      await Promise.race([waitForPing(port, readyTimeout), spawnErr]);
    } catch (e) {
      c.kill('SIGKILL');
      await waitExit(c);
      throw new Error(
        `failed to start redis-server on port ${port}${earlyExit ? ` (${earlyExit})` : ''}: ` +
          `${(e as Error).message}\n${logTail.join('').slice(-2000)}`,
      );
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const c = child;
    if (!c) return;
    if (c.exitCode === null && c.signalCode === null) c.kill(signal);
    await waitExit(c);
  };

  await launch();

  return {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    get pid() {
      return child?.pid ?? -1;
    },
    kill,
    async restart() {
      if (stopped) throw new Error('restart() after stop()');
      await kill('SIGKILL');
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const c = child;
      if (c && c.exitCode === null && c.signalCode === null) {
        rawCommand(port, 'SHUTDOWN NOSAVE', 1000).catch(() => {}); // connection just closes on success
        if (!(await waitExitWithin(c, 3000))) {
          c.kill('SIGTERM');
          if (!(await waitExitWithin(c, 3000))) await kill('SIGKILL');
        }
      }
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}
