/**
 * The CLI as users run it, for tests: lib/ built (tsconfig.build.json) into a package directory with the
 * repository's package.json `bin`, spawned with node (test/support/cli-bin.ts wraps it as one object).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TSC = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');

export interface CliExit {
  code: number | null;
  stdout: string;
  stderr: string;
}

let work: string | undefined;
let built: Promise<string> | undefined;

/** Builds lib/ once into a package directory with package.json's `bin`; resolves with the bin's path. */
export function buildCliBin(): Promise<string> {
  built ??= (async () => {
    work = await mkdtemp(path.join(repo, '.cli-check-'));
    const pkg = path.join(work, 'package');
    const build = spawn(process.execPath, [TSC, '-p', 'tsconfig.build.json', '--outDir', path.join(pkg, 'dist'), '--sourceMap', 'false', '--declarationMap', 'false'], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    build.stdout.on('data', (chunk) => (output += chunk));
    const [code] = (await once(build, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`building lib/ failed:\n${output}`);
    const manifest = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { name: string; version: string; type: string; bin: Record<string, string> };
    await writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name: manifest.name, version: manifest.version, type: manifest.type, bin: manifest.bin }));
    return path.join(pkg, manifest.bin['nestjs-redis-workflows']);
  })();
  return built;
}

export async function removeCliBin(): Promise<void> {
  if (work) await rm(work, { recursive: true, force: true });
}

/** Spawns the built bin (REDIS_URL removed from the environment unless `env` sets it). */
export async function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const bin = await buildCliBin();
  const { REDIS_URL: _ignored, ...rest } = process.env;
  return spawn(process.execPath, [bin, ...args], { cwd: work, env: { ...rest, COLUMNS: '160', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Runs the built bin to its end. With CLI_TRANSCRIPT=<file>, each command and its output is appended there
 * (the transcripts in docs/).
 */
export async function runCliBin(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<CliExit> {
  const child = await spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  // The process must end by itself: every command closes its connections.
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  if (process.env.CLI_TRANSCRIPT) {
    await appendFile(process.env.CLI_TRANSCRIPT, `$ npx nestjs-redis-workflows ${args.join(' ')}\n${stdout}${stderr}(exit ${code})\n\n`);
  }
  return { code, stdout, stderr };
}
