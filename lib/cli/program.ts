import { Command, CommanderError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../errors/error-codec.js';
import { CliError, EXIT, type ExitCode } from './cli-error.js';
import type { CliIo } from './command-support.js';
import { registerCommands } from './commands.js';

/** Runs one command line (the arguments after the program's name); resolves with the exit code. */
export async function runCli(args: string[], io: CliIo): Promise<ExitCode> {
  const program = new Command('nestjs-redis-workflows')
    .description('Inspect and act on the runs of nestjs-redis-workflows in Redis, without a Nest app.')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  registerCommands(program, io);
  for (const command of allCommands(program)) command.exitOverride();
  try {
    if (args.length === 0) {
      io.err(program.helpInformation());
      return EXIT.usage;
    }
    await program.parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with code 0; a command group without its verb shows its help
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.ok;
      return EXIT.usage;
    }
    if (error instanceof CliError) {
      io.err(`error: ${error.message}\n`);
      return error.exitCode;
    }
    io.err(`error: ${errorMessage(error)}\n`);
    return EXIT.failed;
  }
}

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((child) => [child, ...allCommands(child)]);
}

/** This package's version, from the package.json above the compiled (or source) file. */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}
