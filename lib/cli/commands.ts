import { Command, InvalidArgumentError, Option } from 'commander';
import { RunNotFoundError, WorkflowError } from '../errors/workflow.errors.js';
import { RUN_STATUSES, type ListRunsParams, type RunStatus } from '../interfaces/run.interfaces.js';
import { KeySpace } from '../redis/keys.js';
import { DEFAULTS } from '../workflow.constants.js';
import { CliError, EXIT } from './cli-error.js';
import { terminalWidth } from './format.js';
import { print, wholeNumberArg, withClient, withCommonOptions, type CliIo, type CommonFlags } from './command-support.js';
import { runsTable, runView, type RunDetail } from './run-views.js';
import { registerScheduleCommands } from './schedule-commands.js';
import { statsView, throughputTable, workflowsTable, workflowView } from './workflow-views.js';

interface ListFlags extends CommonFlags {
  workflow?: string;
  status?: RunStatus;
  parent?: string;
  limit: number;
  cursor?: string;
  runVersion?: string;
}

const runIds = new KeySpace(DEFAULTS.prefix);

const notFound = (id: string, flags: CommonFlags) =>
  new CliError(
    `No run ${id} under prefix '${flags.prefix}': it may have expired (the retention option), or be under another --prefix or --redis. Find runs with: runs list --workflow <name>.`,
    EXIT.failed,
  );

/** The noun-verb commands: runs list|show|cancel|retry, workflows list|show, schedules (schedule-commands.ts), stats. */
export function registerCommands(program: Command, io: CliIo): void {
  const width = () => terminalWidth(io.env);
  const runs = program.command('runs').description('list, inspect, cancel and retry runs');

  withCommonOptions(runs.command('list').description('runs newest first, filtered; page with --cursor'))
    .option('--workflow <name>', 'only runs of this workflow')
    .addOption(new Option('--status <status>', 'only runs in this status').choices(RUN_STATUSES))
    .option('--parent <runId>', 'only the children of this run')
    .option('--limit <n>', 'runs per page, 1 to 1000', wholeNumberArg(1, 1000), 50)
    .option('--cursor <cursor>', 'the next page: the cursor the previous page printed', cursorArg)
    .option('--run-version <version>', 'only runs of this version (the version option of the app that emitted them)')
    .action((flags: ListFlags) =>
      withClient(flags, io, async ({ client }) => {
        const params: ListRunsParams = { workflow: flags.workflow, status: flags.status, parentId: flags.parent, limit: flags.limit, cursor: flags.cursor };
        if (flags.runVersion !== undefined) params.version = flags.runVersion;
        const page = await client.listRuns(params);
        print(io, flags, page, () => runsTable(page, Date.now(), width()));
      }),
    );

  withCommonOptions(runs.command('show').argument('<runId>').description('a run, its steps and its history'))
    .action((id: string, flags: CommonFlags) =>
      withClient(flags, io, async ({ client }) => {
        const run = await client.getRun(id);
        if (!run) throw notFound(id, flags);
        const [steps, history] = await Promise.all([client.getRunSteps(id), client.getRunHistory(id)]);
        const graphs = steps.some((step) => step.kind === 'graph') ? await client.getRunGraphs(id) : [];
        const detail: RunDetail = { run, steps, history, ...(graphs.length > 0 ? { graphs } : {}) };
        print(io, flags, detail, () => runView(detail, Date.now(), width()));
      }),
    );

  withCommonOptions(runs.command('cancel').argument('<runId>').description('cancel a run that has not finished, and its children'))
    .option('--reason <text>', 'recorded in the run\'s error: "The run was canceled: <text>"')
    .action((id: string, flags: CommonFlags & { reason?: string }) =>
      withClient(flags, io, async ({ client }) => {
        const canceled = await client.cancelRun(id, { reason: flags.reason });
        const run = await client.getRun(id);
        if (!run) throw notFound(id, flags);
        if (!canceled) throw new CliError(`Run ${id} is ${run.status}: only a run that has not finished can be canceled. Nothing was changed.`, EXIT.failed);
        print(io, flags, { canceled: true, run }, () =>
          run.status === 'canceled'
            ? `Canceled run ${id}.`
            : run.continuedAs
              ? `Canceled the live run of the chain that run ${id} continued into (follow it with: runs show ${run.continuedAs}).`
              : `Canceling run ${id}: it is ${run.status} (its compensations run first).`,
        );
      }),
    );

  withCommonOptions(runs.command('retry').argument('<runId>').description('run a failed or canceled run again, under the same id'))
    .option('--from-step <name>', 'forget the records from this step on (in call order): it and the steps after it run again, with new idempotency keys')
    .option('--to-version <version>', "move the run to this version first, as retryRun(id, { onVersion: 'current' }) in an app of that version: a run that has not finished (a pinned run no live worker serves) only changes version")
    .action((id: string, flags: CommonFlags & { fromStep?: string; toVersion?: string }) =>
      withClient({ ...flags, version: flags.toVersion }, io, async ({ client }) => {
        try {
          await client.retryRun(id, { fromStep: flags.fromStep, ...(flags.toVersion !== undefined ? { onVersion: 'current' as const } : {}) });
        } catch (error) {
          if (error instanceof RunNotFoundError) throw notFound(id, flags);
          if (error instanceof WorkflowError) throw new CliError(`${error.message} Nothing was changed.`, EXIT.failed);
          throw error;
        }
        const run = await client.getRun(id);
        print(io, flags, { retried: true, run }, () =>
          flags.toVersion !== undefined && run?.status !== 'queued'
            ? `Moved run ${id} to version ${flags.toVersion}: it is ${run?.status}. Follow it with: runs show ${id}`
            : `Retried run ${id}: it is ${run?.status ?? 'queued'} again, attempt ${run?.attempt ?? 1}${flags.toVersion !== undefined ? `, version ${flags.toVersion}` : ''}. Follow it with: runs show ${id}`,
        );
      }),
    );

  withCommonOptions(runs.command('fork').argument('<runId>').description('a new run of a finished run\'s workflow on today\'s code, with copies of its records before a step'))
    .option('--from-step <name>', 'the first step to execute again (default: the first that did not succeed)')
    .option('--input <json>', "the fork's input as JSON (default: the run's input)", jsonArg)
    .action((id: string, flags: CommonFlags & { fromStep?: string; input?: { value: unknown } }) =>
      withClient(flags, io, async ({ client }) => {
        let forkId: string;
        try {
          forkId = (await client.forkRun(id, { fromStep: flags.fromStep, input: flags.input?.value })).id;
        } catch (error) {
          if (error instanceof RunNotFoundError) throw notFound(id, flags);
          if (error instanceof WorkflowError) throw new CliError(`${error.message} Nothing was changed.`, EXIT.failed);
          throw error;
        }
        const run = await client.getRun(forkId);
        print(io, flags, { forked: true, run }, () => `Forked run ${id} as ${forkId}: it is ${run?.status ?? 'queued'}. Follow it with: runs show ${forkId}`);
      }),
    );

  const workflows = program.command('workflows').description('the workflows workers registered in Redis');

  withCommonOptions(workflows.command('list').description('workflows with their queue, live workers, cron triggers and runs by status'))
    .action((flags: CommonFlags) =>
      withClient(flags, io, async ({ client }) => {
        const list = await client.listWorkflows();
        print(io, flags, list, () => workflowsTable(list, flags.prefix, width()));
      }),
    );

  withCommonOptions(workflows.command('show').argument('<name>').description("a workflow's options, runs by status, cron triggers and workers"))
    .action((name: string, flags: CommonFlags) =>
      withClient(flags, io, async ({ client }) => {
        const meta = await client.getWorkflowMeta(name);
        if (!meta) {
          throw new CliError(`No workflow '${name}' is registered under prefix '${flags.prefix}': see the names with: workflows list.`, EXIT.failed);
        }
        print(io, flags, meta, () => workflowView(meta, Date.now(), width()));
      }),
    );

  registerScheduleCommands(program, io, width);

  withCommonOptions(program.command('stats').description('runs by status, queue depth and oldest queued run per workflow and queue; live workers'))
    .option('--minutes <n>', 'also the runs started and finished per minute over the last n minutes (1 to 60)', wholeNumberArg(1, 60))
    .action((flags: CommonFlags & { minutes?: number }) =>
      withClient(flags, io, async ({ client }) => {
        const [stats, throughput] = await Promise.all([client.getStats(), flags.minutes ? client.getThroughput({ minutes: flags.minutes }) : undefined]);
        const view = () => statsView(stats, flags.prefix, Date.now(), width());
        if (!throughput) return print(io, flags, stats, view);
        print(io, flags, { ...stats, throughput }, () => (stats.workflows.length === 0 ? view() : `${view()}\n\n${throughputTable(throughput, width())}`));
      }),
    );
}

function jsonArg(text: string): { value: unknown } {
  try {
    return { value: JSON.parse(text) };
  } catch {
    throw new InvalidArgumentError('Use JSON, e.g. --input \'{"orderId":"o-1"}\' (quote it for the shell).');
  }
}

function cursorArg(text: string): string {
  if (!runIds.parseRunId(text)) throw new InvalidArgumentError('Use the cursor that the previous page printed (a run id).');
  return text;
}
