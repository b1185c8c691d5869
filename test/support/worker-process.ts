/**
 * Real worker processes for crash and fencing tests. Child processes need compiled JavaScript with
 * decorator metadata (Nest DI), which only tsc emits: lib/ and test/fixtures/ are compiled once into
 * dist-test/ (gitignored), guarded by a lock directory so parallel jest workers compile it only once,
 * and again only when a source file changed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'dist-test');
const LOCK = path.join(ROOT, 'dist-test.lock');
const STAMP = path.join(OUT, '.stamp');

function fingerprint(): string {
  let newest = 0;
  let count = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') || entry.name.endsWith('.json')) {
        newest = Math.max(newest, statSync(full).mtimeMs);
        count += 1;
      }
    }
  };
  walk(path.join(ROOT, 'lib'));
  walk(path.join(ROOT, 'test', 'fixtures'));
  return `${count}:${newest}`;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Compiles lib/ and test/fixtures/ into dist-test/ unless it is up to date; returns dist-test/. */
export function compileFixtures(): string {
  const wanted = fingerprint();
  const upToDate = () => existsSync(STAMP) && readFileSync(STAMP, 'utf8') === wanted;
  if (upToDate()) return OUT;
  const until = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      // Another jest worker compiles; a lock older than 2 minutes is left over from a killed run.
      if (Date.now() - statSync(LOCK, { throwIfNoEntry: false })!.mtimeMs > 120_000) rmSync(LOCK, { recursive: true, force: true });
      if (Date.now() > until) throw new Error(`Timed out waiting for ${LOCK}; remove it if no test is running.`);
      sleepSync(200);
      if (upToDate()) return OUT;
    }
  }
  try {
    if (upToDate()) return OUT;
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'test', 'fixtures', 'tsconfig.json')], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    if (result.status !== 0) throw new Error(`Compiling test fixtures failed:\n${result.stdout}\n${result.stderr}`);
    writeFileSync(STAMP, wanted);
    return OUT;
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

export interface WorkerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  signal(signal: NodeJS.Signals): void;
  /** Resolves with the exit code or signal once the process has exited. */
  exited: Promise<number | NodeJS.Signals>;
  /** SIGTERM (graceful: the fixture closes its app), then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Spawns `node dist-test/test/fixtures/<fixture>.js` with the given environment and resolves once it
 * printed READY (its Nest app is initialised and its worker started).
 */
export async function startWorkerProcess(fixture: string, env: Record<string, string>, readyTimeoutMs = 20_000): Promise<WorkerProcess> {
  const out = compileFixtures();
  const script = path.join(out, 'test', 'fixtures', `${fixture}.js`);
  const child = spawn(process.execPath, [script], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '', FORCE_COLOR: '0', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let text = '';
  child.stdout!.on('data', (chunk) => (text += chunk));
  child.stderr!.on('data', (chunk) => (text += chunk));
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve(signal ?? code ?? 0);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`worker ${fixture} not READY within ${readyTimeoutMs} ms:\n${text}`)), readyTimeoutMs);
    const onData = () => {
      if (/^READY$/m.test(text)) {
        cleanup();
        resolve();
      }
    };
    const onExit = () => fail(new Error(`worker ${fixture} exited before READY:\n${text}`));
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
    };
    const fail = (error: Error) => {
      cleanup();
      child.kill('SIGKILL');
      reject(error);
    };
    child.stdout!.on('data', onData);
    child.on('exit', onExit);
  });
  return {
    child,
    pid: child.pid!,
    output: () => text,
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    exited,
    stop: async (graceMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
