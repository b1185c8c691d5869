/**
 * The CLI as users run it, as one object: the build and the runs are cli-runner.ts's (lib/ built into a
 * package directory with package.json's `bin`, spawned with node). test/e2e/cli.e2e.spec.ts has its own copy.
 */
import { buildCliBin as buildOnce, removeCliBin, runCliBin, type CliExit } from './cli-runner.js';

export type { CliExit };

export interface CliBin {
  /** Runs the bin; REDIS_URL is removed from the environment unless `env` sets it. With CLI_TRANSCRIPT=<file>,
   *  each command and its output is appended there (the transcripts in docs/). */
  run(args: string[], env?: NodeJS.ProcessEnv): Promise<CliExit>;
  remove(): Promise<void>;
}

export async function buildCliBin(): Promise<CliBin> {
  await buildOnce();
  return { run: (args, env = {}) => runCliBin(args, env, 20_000), remove: removeCliBin };
}
