import { InvalidArgumentError, UnknownWorkflowError } from '../errors/workflow.errors.js';
import type { RunInfo } from '../interfaces/run.interfaces.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import type { RunInspector } from './run-inspector.js';

/**
 * pauseWorkflow / resumeWorkflow. The flag that claims obey is kept per shard ('<root>:paused', read by
 * every claim of that shard in the same call: lua/includes/02-paused.lua), on every shard the workflow's
 * runs may be in; one hash for the deployment ('{<prefix>}:paused') is what listings show. A pause marks
 * the hash first and then the shards, a resume the shards first: a pause or resume cut short by a crash
 * is shown as paused, and repeating it completes it.
 */
export class PausedWorkflows {
  constructor(
    private readonly redis: WorkflowRedis,
    private readonly inspector: RunInspector,
  ) {}

  async pause(workflow: string): Promise<void> {
    const shards = await this.shardsOf(workflow, 'pauseWorkflow');
    await this.redis.store.markPaused(workflow, 'pause');
    await Promise.all(shards.map((shard) => this.redis.store.pauseInShard(shard, workflow, 'pause')));
  }

  async resume(workflow: string): Promise<void> {
    const shards = await this.shardsOf(workflow, 'resumeWorkflow');
    await Promise.all(shards.map((shard) => this.redis.store.pauseInShard(shard, workflow, 'resume')));
    await this.redis.store.markPaused(workflow, 'resume');
  }

  /** Paused workflows and when each was paused (ISO). */
  async list(): Promise<Map<string, string>> {
    const stored = await this.redis.store.readPaused();
    return new Map(Object.entries(stored).map(([name, at]) => [name, new Date(Number(at)).toISOString()]));
  }

  /** Sets `delayedBy: 'paused'` on the queued runs whose workflow is paused in their shard (one read per shard). */
  async markDelayed(runs: RunInfo[]): Promise<RunInfo[]> {
    const queued = runs.filter((run) => run.status === 'queued');
    if (queued.length === 0) return runs;
    const byShard = new Map<string, Promise<string[]>>();
    await Promise.all(
      queued.map(async (run) => {
        const shard = this.redis.keys.parseRunId(run.id);
        if (!shard) return;
        const root = this.redis.keys.shardRoot(shard);
        if (!byShard.has(root)) byShard.set(root, this.redis.store.readPausedInShard(shard));
        if ((await byShard.get(root)!).includes(run.workflow)) run.delayedBy = 'paused';
      }),
    );
    return runs;
  }

  private async shardsOf(workflow: string, name: string) {
    if (typeof workflow !== 'string' || workflow === '') {
      throw new InvalidArgumentError(`${name} needs a workflow's name (got ${JSON.stringify(workflow) ?? String(workflow)}).`);
    }
    await this.redis.ready();
    const shards = (await this.inspector.shardsByWorkflow()).get(workflow);
    if (!shards) {
      throw new UnknownWorkflowError(
        `${name}: no workflow '${workflow}' is registered under prefix '${this.redis.keys.prefix}'. List them with listWorkflows() (CLI: workflows list).`,
      );
    }
    return shards;
  }
}
