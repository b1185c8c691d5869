/** The exit codes scripts can rely on (docs/cli.md lists what gives each). */
export const EXIT = {
  ok: 0,
  /** The action failed, or what it names does not exist: a run not found, a run not in a state for it. */
  failed: 1,
  /** The command line is wrong: unknown command or option, a bad value. Nothing was read or changed. */
  usage: 2,
  /** Redis could not be reached, or refused the credentials. Nothing was read or changed. */
  unreachable: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line on stderr (saying what to do next) and ends with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
