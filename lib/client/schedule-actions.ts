import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, UnknownWorkflowError } from '../errors/workflow.errors.js';
import type { RunHandle, ScheduleInfo } from '../interfaces/run.interfaces.js';
import type { CronTrigger } from '../interfaces/workflow.interfaces.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import { triggerId } from '../scheduler/trigger-id.js';
import type { RegisteredWorkflow, RunInspector } from './run-inspector.js';

/**
 * Cron triggers at run time: listed with their state in Redis, paused, resumed and triggered by any app
 * or the CLI. The triggers come from the registry in Redis (what workers declared in `@Workflow({ cron })`);
 * their state from each workflow's schedule hash (lua/schedules.lua), which every instance's ticks read.
 */
export class ScheduleActions {
  constructor(
    private readonly redis: WorkflowRedis,
    private readonly inspector: RunInspector,
    private readonly emit: (workflow: string, input: unknown, idempotencyKey: string) => Promise<RunHandle>,
  ) {}

  async list(): Promise<ScheduleInfo[]> {
    await this.redis.ready();
    const [workflows, workers] = await Promise.all([this.inspector.workflows(), this.inspector.workers()]);
    const withCron = workflows.filter((w) => (w.cron ?? []).length > 0);
    const states = await Promise.all(withCron.map((w) => this.redis.store.readSchedules(w.name)));
    return withCron.flatMap((w, i) => {
      const serving = workers.filter((worker) => worker.workflows.includes(w.name)).length;
      return (w.cron ?? []).flatMap((trigger) => {
        let id: string;
        try {
          id = triggerId(w.name, trigger);
        } catch {
          return []; // a trigger a newer or damaged writer registered
        }
        return [toScheduleInfo(w.name, id, trigger, states[i], serving)];
      });
    });
  }

  async setPaused(workflow: string, id: string, paused: boolean): Promise<boolean> {
    await this.find(workflow, id, paused ? 'pauseSchedule' : 'resumeSchedule');
    return this.redis.store.schedulePause(workflow, id, paused);
  }

  /**
   * Starts the trigger's run now, with its input, once per call (a resent call creates nothing twice: the
   * run id is the request id). `ctx.run.scheduledAt` is the Redis server's time of the call.
   */
  async trigger(workflow: string, id: string): Promise<RunHandle> {
    const trigger = await this.find(workflow, id, 'triggerSchedule');
    const at = await this.redis.store.readServerTime();
    // Named like a tick (scheduledAt is read from it), and made unique to this call.
    const key = `cron:${id}:${new Date(at).toISOString()}:trigger:${randomBytes(4).toString('hex')}`;
    const handle = await this.emit(workflow, trigger.input ?? {}, key);
    await this.redis.store.scheduleTick(workflow, id, 'ran', at);
    return handle;
  }

  private async find(workflow: string, id: string, method: string): Promise<CronTrigger> {
    if (typeof workflow !== 'string' || typeof id !== 'string' || workflow === '' || id === '') {
      throw new InvalidArgumentError(`${method}(workflow, id) needs the workflow's name and the trigger's id as strings: see them with listSchedules().`);
    }
    await this.redis.ready();
    const registered: RegisteredWorkflow | undefined = (await this.inspector.workflows()).find((w) => w.name === workflow);
    if (!registered) {
      throw new UnknownWorkflowError(`${method}: no workflow '${workflow}' is registered under prefix '${this.redis.keys.prefix}'. See the schedules with listSchedules().`);
    }
    const triggers = registered.cron ?? [];
    const trigger = triggers.find((t) => safeTriggerId(workflow, t) === id);
    if (!trigger) {
      const known = triggers.map((t) => `'${safeTriggerId(workflow, t)}'`).join(', ');
      throw new InvalidArgumentError(
        `${method}: workflow '${workflow}' has no cron trigger '${id}' (${known ? `its triggers: ${known}` : 'it declares none'}). Nothing was changed.`,
      );
    }
    return trigger;
  }
}

function safeTriggerId(workflow: string, trigger: CronTrigger): string | undefined {
  try {
    return triggerId(workflow, trigger);
  } catch {
    return undefined;
  }
}

function toScheduleInfo(workflow: string, id: string, trigger: CronTrigger, state: Record<string, string>, workers: number): ScheduleInfo {
  const iso = (field: string) => {
    const ms = Number(state[`${field}:${id}`]);
    return state[`${field}:${id}`] !== undefined && Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
  };
  const next = iso('n');
  const last = iso('l');
  return {
    workflow,
    id,
    expression: trigger.expression,
    ...(trigger.timezone !== undefined ? { timezone: trigger.timezone } : {}),
    catchUp: trigger.catchUp === 'latest' ? 'latest' : 'none',
    paused: state[`p:${id}`] === '1',
    ...(next ? { next } : {}),
    ...(last ? { last } : {}),
    workers,
  };
}
