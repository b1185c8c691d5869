/**
 * The CLI as users run it: lib/ built (tsconfig.build.json) into a package directory with the repository's
 * package.json `bin`, and that file spawned with node. test/e2e/cli.e2e.spec.ts has its own copy of this.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const repo = path.resolve(import.meta.dirname, '../..');
const TSC = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');

export interface CliExit {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliBin {
  /** Runs the bin; REDIS_URL is removed from the environment unless `env` sets it. With CLI_TRANSCRIPT=<file>,
   *  each command and its output is appended there (the transcripts in docs/). */
  run(args: string[], env?: NodeJS.ProcessEnv): Promise<CliExit>;
  remove(): Promise<void>;
}

export async function buildCliBin(): Promise<CliBin> {
  const work = await mkdtemp(path.join(repo, '.cli-check-'));
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
  const bin = path.join(pkg, manifest.bin['nestjs-redis-workflows']);
  return {
    async run(args, env = {}) {
      const { REDIS_URL: _ignored, ...rest } = process.env;
      const child = spawn(process.execPath, [bin, ...args], { cwd: work, env: { ...rest, COLUMNS: '160', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      // The process must end by itself: every command closes its connections.
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [exitCode] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      if (process.env.CLI_TRANSCRIPT) {
        await appendFile(process.env.CLI_TRANSCRIPT, `$ npx nestjs-redis-workflows ${args.join(' ')}\n${stdout}${stderr}(exit ${exitCode})\n\n`);
      }
      return { code: exitCode, stdout, stderr };
    },
    remove: () => rm(work, { recursive: true, force: true }),
  };
}
