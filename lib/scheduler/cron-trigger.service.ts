import { errorMessage } from '../errors/error-codec.js';
import { Injectable, Logger } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { SchedulerRegistry } from '@nestjs/schedule';
import type { CronJob } from 'cron';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { WorkflowClient } from '../client/workflow.client.js';
import type { WorkflowDefinition } from '../discovery/workflow-definition.js';
import { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { CronTrigger } from '../interfaces/workflow.interfaces.js';
import { WorkflowRedis } from '../redis/workflow-redis.js';
import { latestTickBetween } from './missed-tick.js';
import { triggerId } from './trigger-id.js';

type CronJobClass = typeof CronJob;

interface PlannedTrigger {
  definition: WorkflowDefinition;
  trigger: CronTrigger;
  id: string;
  /** Name of the job in @nestjs/schedule's SchedulerRegistry. */
  jobName: string;
}

interface MountedTrigger extends PlannedTrigger {
  job: CronJob;
  /** The scheduled time of the job's next tick: a tick is named by it, not by the clock when it fired. */
  nextTickAt: Date;
}

/** Statuses that hold (or are about to take) one of a workflow's maxConcurrency slots. */
const BUSY_STATUSES = ['queued', 'running', 'compensating'] as const;

/**
 * Fires the `cron` triggers of the app's workflows through @nestjs/schedule's SchedulerRegistry.
 *
 * Every instance of the app runs the same jobs on its own clock; each tick emits the workflow with the
 * idempotency key `cron:<triggerId>:<scheduled tick time>`, so Redis lets exactly one instance start it.
 * Each tick first asks Redis (lua/schedules.lua) whether the trigger is paused, and records that it was
 * seen: a trigger with `catchUp: 'latest'` starts, on mount, the latest tick that no instance saw.
 * Collect-then-mount as in @nestjs/schedule: `prepare()` on module init checks the triggers and that
 * ScheduleModule is imported, `start()` on bootstrap mounts the jobs, `stop()` before shutdown removes them.
 */
@Injectable()
export class CronTriggerService {
  private readonly logger = new Logger('WorkflowCron');
  private planned: PlannedTrigger[] = [];
  private readonly mounted: MountedTrigger[] = [];
  private schedulerRegistry?: SchedulerRegistry;
  private CronJobClass?: CronJobClass;

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
    private readonly client: WorkflowClient,
    private readonly moduleRef: ModuleRef,
  ) {}

  get triggerCount(): number {
    return this.mounted.length;
  }

  /** Triggers fire in apps that have the workflow as a provider and run a worker, unless `cron: false`. */
  async prepare(): Promise<void> {
    const settings = this.redis.settings;
    if (!settings.cron || !settings.worker) return;
    const planned: PlannedTrigger[] = [];
    for (const definition of this.registry.all()) {
      if (!definition.instance) continue;
      const seen = new Set<string>();
      for (const trigger of definition.options.cron) {
        const id = triggerId(definition.name, trigger);
        if (seen.has(id)) {
          throw new WorkflowConfigurationError(
            `@Workflow('${definition.name}') declares two cron triggers with the id '${id}': give each trigger a distinct \`id\`.`,
          );
        }
        seen.add(id);
        planned.push({ definition, trigger, id, jobName: `workflow:${definition.name}:${id}` });
      }
    }
    if (planned.length === 0) return;
    const { SchedulerRegistry, CronJob } = await loadSchedule(planned[0].definition.name);
    try {
      this.schedulerRegistry = this.moduleRef.get(SchedulerRegistry, { strict: false });
    } catch {
      this.schedulerRegistry = undefined;
    }
    if (!this.schedulerRegistry) {
      throw new WorkflowConfigurationError(
        `Workflow '${planned[0].definition.name}' declares cron triggers, but @nestjs/schedule's ScheduleModule is not imported: add ScheduleModule.forRoot() to the imports of your app's root module (once), or set cron: false in WorkflowModule.forRoot() to leave the triggers to another app.`,
      );
    }
    this.CronJobClass = CronJob;
    // Building each job (not started) checks its expression and time zone now rather than at bootstrap.
    for (const p of planned) this.createJob(p, () => undefined);
    this.planned = planned;
  }

  start(): void {
    if (!this.schedulerRegistry || this.mounted.length > 0) return;
    for (const p of this.planned) {
      const mounted = {} as MountedTrigger;
      const job = this.createJob(p, () => this.onTick(mounted));
      Object.assign(mounted, p, { job });
      this.schedulerRegistry.addCronJob(p.jobName, job);
      job.start();
      mounted.nextTickAt = job.nextDate().toJSDate();
      this.mounted.push(mounted);
      this.afterMount(mounted).catch((error) => {
        this.logger.error(`Cron trigger '${p.id}' of workflow '${p.definition.name}' could not record its next tick or catch up: ${errorMessage(error)}`);
      });
    }
    if (this.mounted.length > 0) {
      this.logger.log(`Started ${this.mounted.length} cron trigger(s): ${this.mounted.map((m) => `${m.definition.name} '${m.id}'`).join(', ')}`);
    }
  }

  stop(): void {
    for (const m of this.mounted.splice(0)) {
      void m.job.stop();
      if (this.schedulerRegistry?.doesExist('cron', m.jobName)) this.schedulerRegistry.deleteCronJob(m.jobName);
    }
  }

  private createJob(p: PlannedTrigger, onTick: () => void): CronJob {
    const CronJobClass = this.CronJobClass as CronJobClass;
    try {
      return CronJobClass.from({
        cronTime: p.trigger.expression,
        timeZone: p.trigger.timezone,
        onTick,
        start: false,
        name: p.jobName,
        errorHandler: (error) => this.logger.error(`Cron trigger '${p.id}' of workflow '${p.definition.name}' failed: ${errorMessage(error)}`),
      });
    } catch (error) {
      throw new WorkflowConfigurationError(
        `@Workflow('${p.definition.name}') cron trigger '${p.id}': ${errorMessage(error)}. Use a cron expression such as '0 * * * *' (5 fields, or 6 with seconds) and an IANA time zone such as 'Europe/Paris'.`,
        { cause: error },
      );
    }
  }

  private onTick(m: MountedTrigger): Promise<void> {
    const tickAt = m.nextTickAt;
    // The job has already scheduled its next tick when it calls us.
    m.nextTickAt = m.job.nextDate().toJSDate();
    return this.fire(m, tickAt).catch((error) => {
      this.logger.error(`Cron trigger '${m.id}' of workflow '${m.definition.name}' could not start the tick of ${tickAt.toISOString()}: ${errorMessage(error)}`);
    });
  }

  /**
   * Records the next tick in Redis (listSchedules shows it), and with `catchUp: 'latest'` starts the latest
   * tick that no instance saw (every instance was stopped at its time): the tick is named by its scheduled
   * time as any tick is, so instances that start together start it once.
   */
  private async afterMount(m: MountedTrigger): Promise<void> {
    const now = Date.now();
    const { paused, seenBefore } = await this.redis.store.scheduleTick(m.definition.name, m.id, 'next', now, m.nextTickAt.getTime());
    // A trigger no instance ever ticked (a new one) has nothing it missed; a paused one starts nothing.
    if ((m.trigger.catchUp ?? 'none') !== 'latest' || paused || seenBefore === undefined) return;
    const missed = latestTickBetween((from) => m.job.cronTime.getNextDateFrom(from, m.trigger.timezone).toMillis(), seenBefore, Math.min(now, m.nextTickAt.getTime()));
    if (missed === undefined) return;
    this.logger.log(
      `Cron trigger '${m.id}' of workflow '${m.definition.name}' catches up on the tick of ${new Date(missed).toISOString()}, missed while no instance ran (catchUp: 'latest').`,
    );
    await this.fire(m, new Date(missed));
  }

  private async fire(m: MountedTrigger, tickAt: Date): Promise<void> {
    const { definition } = m;
    const idempotencyKey = `cron:${m.id}:${tickAt.toISOString()}`;
    const limit = definition.options.maxConcurrency;
    const next = m.nextTickAt.getTime();
    if (limit > 0) {
      // Counts first, then the key: if another instance started this tick in between, the key shows it
      // and this instance stays silent instead of logging a skip that did not happen.
      const shard = { queue: definition.options.queue, partition: 0 };
      const counts = await this.redis.store.readStatusCounts(shard, definition.name, BUSY_STATUSES);
      const busy = counts.queued + counts.running + counts.compensating;
      if (busy >= limit) {
        if (await this.redis.store.readIdempotencyKey(shard, definition.name, idempotencyKey)) return;
        const { paused } = await this.redis.store.scheduleTick(definition.name, m.id, 'skip', tickAt.getTime(), next);
        if (paused) return;
        this.logger.log(
          `Cron trigger '${m.id}' of workflow '${definition.name}' skipped the tick of ${tickAt.toISOString()}: ${busy} run(s) queued or executing, at its maxConcurrency of ${limit}.`,
        );
        return;
      }
    }
    // Asked of Redis at every tick, so that a pause made by any instance or the CLI holds for all.
    const { fire } = await this.redis.store.scheduleTick(definition.name, m.id, 'fire', tickAt.getTime(), next);
    if (!fire) return;
    await this.client.emit(definition.type, (m.trigger.input ?? {}) as never, { idempotencyKey });
  }
}

/**
 * @nestjs/schedule is an optional peer dependency, loaded only by apps whose workflows declare cron.
 * `cron` is its dependency, so it is resolved from there rather than from this package.
 */
async function loadSchedule(workflow: string): Promise<{ SchedulerRegistry: typeof SchedulerRegistry; CronJob: CronJobClass }> {
  try {
    const schedule = await import('@nestjs/schedule');
    const requireHere = createRequire(import.meta.url);
    const cronPath = createRequire(requireHere.resolve('@nestjs/schedule')).resolve('cron');
    const cron = (await import(pathToFileURL(cronPath).href)) as { CronJob?: CronJobClass; default?: { CronJob: CronJobClass } };
    const CronJob = cron.CronJob ?? cron.default?.CronJob;
    if (!CronJob) throw new Error('the cron package has no CronJob export');
    return { SchedulerRegistry: schedule.SchedulerRegistry, CronJob };
  } catch (error) {
    throw new WorkflowConfigurationError(
      `Workflow '${workflow}' declares cron triggers, which need @nestjs/schedule: npm install @nestjs/schedule, and import ScheduleModule.forRoot() in your app's root module (${errorMessage(error)}).`,
      { cause: error },
    );
  }
}

