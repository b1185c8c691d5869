import type { Command } from 'commander';
import { WorkflowError } from '../errors/workflow.errors.js';
import { CliError, EXIT } from './cli-error.js';
import { print, withClient, withCommonOptions, type CliIo, type CommonFlags } from './command-support.js';
import { schedulesTable } from './workflow-views.js';

/** `schedules list|pause|resume|trigger`: cron triggers and their state in Redis, seen and changed for every instance. */
export function registerScheduleCommands(program: Command, io: CliIo, width: () => number): void {
  const schedules = program.command('schedules').description('cron triggers: list, pause, resume, trigger now');

  withCommonOptions(schedules.command('list').description('the cron triggers of registered workflows: paused or not, next and last tick'))
    .action((flags: CommonFlags) =>
      withClient(flags, io, async ({ client }) => {
        const list = await client.listSchedules();
        print(io, flags, list, () => schedulesTable(list, width()));
      }),
    );

  const failedAction = (error: unknown) => (error instanceof WorkflowError ? new CliError(error.message, EXIT.failed) : error);

  for (const [verb, description] of [
    ['pause', 'stop a trigger on every instance: its ticks start no run until resumed'],
    ['resume', 'let a paused trigger tick again, from its next tick on'],
  ] as const) {
    withCommonOptions(schedules.command(verb).argument('<workflow>').argument('<id>', 'the trigger id, as schedules list shows it').description(description))
      .action((workflow: string, id: string, flags: CommonFlags) =>
        withClient(flags, io, async ({ client }) => {
          const changed = await (verb === 'pause' ? client.pauseSchedule(workflow, id) : client.resumeSchedule(workflow, id)).catch((error: unknown) => {
            throw failedAction(error);
          });
          const state = verb === 'pause' ? 'paused' : 'running';
          print(io, flags, { workflow, id, paused: verb === 'pause', changed }, () =>
            changed ? `Schedule '${id}' of workflow '${workflow}' is ${state} now.` : `Schedule '${id}' of workflow '${workflow}' was ${state} already; nothing changed.`,
          );
        }),
      );
  }

  withCommonOptions(schedules.command('trigger').argument('<workflow>').argument('<id>', 'the trigger id, as schedules list shows it').description("start the trigger's run now, once (paused or not)"))
    .action((workflow: string, id: string, flags: CommonFlags) =>
      withClient(flags, io, async ({ client }) => {
        const handle = await client.triggerSchedule(workflow, id).catch((error: unknown) => {
          throw failedAction(error);
        });
        const run = await handle.getState();
        print(io, flags, { triggered: true, run }, () => `Started run ${handle.id} of '${workflow}' (schedule '${id}'). Follow it with: runs show ${handle.id}`);
      }),
    );
}
