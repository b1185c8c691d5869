import { Command, InvalidArgumentError } from 'commander';
import type { StandaloneClient } from '../client/standalone-client.js';
import { errorMessage } from '../errors/error-codec.js';
import { assertKeySegment } from '../redis/keys.js';
import { seedUrls, type ConnectionFlags } from './connection.js';

/** Where a command writes, and the environment it reads (REDIS_URL, COLUMNS). */
export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

export interface CommonFlags extends ConnectionFlags {
  json?: boolean;
}

/** The options every command takes, after the command: `runs list --redis URL --prefix wf --json`. */
export function withCommonOptions(command: Command): Command {
  return command
    .option('--redis <url>', 'Redis URL, or comma-separated seed URLs of a cluster (default: $REDIS_URL, else redis://127.0.0.1:6379)')
    .option('--cluster', 'connect as a Redis Cluster client (detected when omitted)')
    .option('--prefix <prefix>', "the module's key prefix (its prefix option)", prefixArg, 'wf')
    .option('--connect-timeout <ms>', 'how long to wait for Redis, in ms', wholeNumberArg(1, 600_000), 5000)
    .option('--json', 'print JSON (the objects the WorkflowClient returns) instead of tables');
}

/**
 * Opens the client for a command, runs it and closes the connections whatever happens, so that the
 * process exits. The URL is checked before anything connects (a usage error, exit code 2).
 */
export async function withClient<T>(flags: CommonFlags, io: CliIo, action: (opened: StandaloneClient) => Promise<T>): Promise<T> {
  seedUrls(flags, io.env);
  // The client's stack (Nest, ioredis) is loaded only now: --help and usage errors answer at once.
  const { openClient } = await import('./open-client.js');
  const opened = await openClient(flags, io.env);
  try {
    return await action(opened);
  } finally {
    await opened.close();
  }
}

/** Prints JSON for scripts, or the table for people. */
export function print(io: CliIo, flags: CommonFlags, value: unknown, table: () => string): void {
  io.out(flags.json ? `${JSON.stringify(value, null, 2)}\n` : `${table()}\n`);
}

export function wholeNumberArg(min: number, max: number) {
  return (text: string): number => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < min || value > max) throw new InvalidArgumentError(`Use a whole number from ${min} to ${max}.`);
    return value;
  };
}

function prefixArg(text: string): string {
  try {
    assertKeySegment('prefix', text);
  } catch (error) {
    throw new InvalidArgumentError(errorMessage(error));
  }
  return text;
}
