import { Command, InvalidArgumentError, Option } from 'commander';
import { UnknownWorkflowError } from '../errors/workflow.errors.js';
import type { CancelRunsFilter, RetryRunsFilter } from '../interfaces/run.interfaces.js';
import { CliError, EXIT } from './cli-error.js';
import { print, wholeNumberArg, withClient, withCommonOptions, type CliIo, type CommonFlags } from './command-support.js';

/** The flags of a bulk `runs retry` / `runs cancel` (without a run id). */
export interface BulkFlags extends CommonFlags {
  workflow?: string;
  status?: string;
  since?: Date;
  until?: Date;
  limit?: number;
  reason?: string;
}

const BULK_FLAGS = ['workflow', 'status', 'since', 'until', 'limit'] as const;

/** Adds the bulk flags to `runs retry` or `runs cancel`; `statuses`: what --status may be. */
export function withBulkOptions(command: Command, statuses: readonly string[], what: string): Command {
  return command
    .option('--workflow <name>', `without a run id: ${what} the runs of this workflow (bounded batches, safe to repeat)`)
    .addOption(new Option('--status <status>', 'with --workflow: only runs in this status').choices(statuses))
    .option('--since <time>', "with --workflow: only runs created at or after this: '90s', '30m', '1h', '2d' ago, or an ISO date", timeArg)
    .option('--until <time>', 'with --workflow: only runs created before this (same forms as --since)', timeArg)
    .option('--limit <n>', 'with --workflow: at most this many runs (oldest first)', wholeNumberArg(1, Number.MAX_SAFE_INTEGER));
}

/** A single-run command given bulk flags, or a bulk command without --workflow: a usage error. */
export function checkBulkUsage(id: string | undefined, flags: BulkFlags, verb: 'retry' | 'cancel'): void {
  const given = BULK_FLAGS.filter((flag) => flags[flag] !== undefined);
  if (id !== undefined && given.length > 0) {
    throw new CliError(`runs ${verb} takes a run id or --workflow with filters, not both (got ${given.map((f) => `--${f}`).join(', ')} with ${id}).`, EXIT.usage);
  }
  if (id === undefined && flags.workflow === undefined) {
    throw new CliError(`runs ${verb} needs a run id, or --workflow <name> (with --status, --since, --until, --limit) for many runs.`, EXIT.usage);
  }
  if (id === undefined && verb === 'retry' && flags.status === undefined) {
    throw new CliError('runs retry --workflow needs --status failed or --status canceled: the runs to retry.', EXIT.usage);
  }
}

export async function bulkRetry(flags: BulkFlags, io: CliIo): Promise<void> {
  const filter: RetryRunsFilter = { workflow: flags.workflow!, status: flags.status as RetryRunsFilter['status'], since: flags.since, until: flags.until, limit: flags.limit };
  await withClient(flags, io, async ({ client }) => {
    const retried = await unknownWorkflowFails(() => client.retryRuns(filter));
    print(io, flags, { retried, filter }, () => `Retried ${retried} ${filter.status} run(s) of ${filter.workflow}${windowText(filter)}: they are queued again, attempt 1.`);
  });
}

export async function bulkCancel(flags: BulkFlags, io: CliIo): Promise<void> {
  const filter: CancelRunsFilter = {
    workflow: flags.workflow!,
    status: flags.status as CancelRunsFilter['status'],
    since: flags.since,
    until: flags.until,
    limit: flags.limit,
    ...(flags.reason !== undefined ? { reason: flags.reason } : {}),
  };
  await withClient(flags, io, async ({ client }) => {
    const canceled = await unknownWorkflowFails(() => client.cancelRuns(filter));
    print(io, flags, { canceled, filter }, () => `Canceled ${canceled} ${filter.status ?? 'unfinished'} run(s) of ${filter.workflow}${windowText(filter)}.`);
  });
}

/** workflows pause|resume <name>. */
export function registerPauseCommands(workflows: Command, io: CliIo): void {
  for (const action of ['pause', 'resume'] as const) {
    const description = action === 'pause' ? 'stop claiming runs of a workflow (emits are still accepted; its runs wait in queued)' : 'claim the runs of a paused workflow again';
    withCommonOptions(workflows.command(action).argument('<name>').description(description)).action((name: string, flags: CommonFlags) =>
      withClient(flags, io, async ({ client }) => {
        // counted before a resume: the workers claim the queued runs as soon as it is done
        const queued = (await client.getWorkflowMeta(name))?.counts.queued ?? 0;
        await unknownWorkflowFails(() => (action === 'pause' ? client.pauseWorkflow(name) : client.resumeWorkflow(name)));
        const meta = await client.getWorkflowMeta(name);
        print(io, flags, { [action === 'pause' ? 'paused' : 'resumed']: true, workflow: meta }, () =>
          action === 'pause'
            ? `Paused workflow ${name}: no run of it is claimed until 'workflows resume ${name}'; emits are still accepted (${queued} run(s) queued now). Runs executing now go on.`
            : `Resumed workflow ${name}: its ${queued} queued run(s) are claimed now.`,
        );
      }),
    );
  }
}

async function unknownWorkflowFails<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof UnknownWorkflowError) throw new CliError(error.message.replace('listWorkflows() (CLI: workflows list)', 'workflows list'), EXIT.failed);
    throw error;
  }
}

function windowText(filter: { since?: Date; until?: Date; limit?: number }): string {
  const parts = [
    filter.since ? ` created since ${filter.since.toISOString()}` : '',
    filter.until ? ` before ${filter.until.toISOString()}` : '',
    filter.limit !== undefined ? ` (at most ${filter.limit})` : '',
  ];
  return parts.join('');
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** '90s', '30m', '1h', '2d' (that long ago, by this machine's clock) or an ISO date. */
export function timeArg(text: string): Date {
  const relative = /^(\d+)([smhd])$/.exec(text);
  if (relative) return new Date(Date.now() - Number(relative[1]) * UNITS[relative[2]]);
  const date = /^\d{4}-\d{2}-\d{2}/.test(text) ? new Date(text) : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    throw new InvalidArgumentError("Use a time ago ('90s', '30m', '1h', '2d') or an ISO date ('2026-12-07T05:00:00Z').");
  }
  return date;
}
