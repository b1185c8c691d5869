import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { Throughput, ThroughputMinute } from '../interfaces/run.interfaces.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';
import type { RunInspector } from './run-inspector.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Kinds of count_throughput (lua/includes/01-common.lua), in ThroughputMinute's order. */
const KINDS = ['b', 's', 'f', 'c'] as const;
const NAMES = ['started', 'succeeded', 'failed', 'canceled'] as const;

/**
 * Runs started, succeeded, failed and canceled per minute over the last hour, per workflow: read from the
 * per-minute counts that the transition calls keep in each shard (at most two small hashes per workflow,
 * kind and shard: this hour's and the last), summed over the workflow's shards. Minutes are the Redis
 * server's, as the counts are.
 */
export class ThroughputReader {
  constructor(
    private readonly redis: WorkflowRedis,
    private readonly inspector: RunInspector,
  ) {}

  async read(opts: { minutes?: number; workflow?: string } = {}): Promise<Throughput> {
    const minutes = opts.minutes ?? 60;
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > 60) {
      throw new InvalidArgumentError(`getThroughput: minutes must be a whole number from 1 to 60 (the counts are kept for the last hour), got ${String(minutes)}.`);
    }
    if (opts.workflow !== undefined && typeof opts.workflow !== 'string') throw new InvalidArgumentError('getThroughput: workflow must be a workflow name.');
    await this.redis.ready();
    const [now, registered, shardsOf] = await Promise.all([this.redis.store.readServerTime(), this.inspector.workflows(), this.inspector.shardsByWorkflow()]);
    const current = now - (now % MINUTE_MS);
    const first = current - (minutes - 1) * MINUTE_MS;
    const hours = [...new Set([Math.floor(first / HOUR_MS), Math.floor(current / HOUR_MS)])];
    const workflows = registered.filter((w) => opts.workflow === undefined || w.name === opts.workflow);
    const rows = await Promise.all(
      workflows.map(async (w) => {
        const series: ThroughputMinute[] = Array.from({ length: minutes }, (_, i) => ({
          at: new Date(first + i * MINUTE_MS).toISOString(),
          started: 0,
          succeeded: 0,
          failed: 0,
          canceled: 0,
        }));
        const perShard = await Promise.all((shardsOf.get(w.name) ?? []).map((shard) => this.redis.store.readThroughput(shard, w.name, KINDS, hours)));
        for (const hashes of perShard) {
          hashes.forEach((hash, i) => {
            const hour = hours[Math.floor(i / KINDS.length)];
            const name = NAMES[i % KINDS.length];
            for (const [minute, count] of Object.entries(hash)) {
              const slot = (hour * HOUR_MS + Number(minute) * MINUTE_MS - first) / MINUTE_MS;
              if (Number.isInteger(slot) && slot >= 0 && slot < minutes) series[slot][name] += Number(count) || 0;
            }
          });
        }
        return { name: w.name, queue: w.queue, minutes: series };
      }),
    );
    return { from: new Date(first).toISOString(), to: new Date(current + MINUTE_MS).toISOString(), workflows: rows };
  }
}
