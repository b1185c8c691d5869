import { LeaseLostError } from '../errors/workflow.errors.js';
import type { Executing, ShardState, WorkerState } from './worker-state.js';

/**
 * Renews the leases of the runs a worker executes, one call per shard every third of the lease, and stops
 * (aborts) the runs whose lease another worker took meanwhile.
 */
export class LeaseHeartbeat {
  private timer?: NodeJS.Timeout;

  constructor(private readonly state: WorkerState) {}

  start(leaseMs: number): void {
    this.timer = setInterval(() => void this.beat(), Math.max(50, Math.floor(leaseMs / 3)));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async beat(): Promise<void> {
    const state = this.state;
    const worker = state.redis.settings.worker;
    if (!worker || state.executing.size === 0) return;
    const byShard = new Map<ShardState, Executing[]>();
    for (const e of state.executing.values()) byShard.set(e.shard, [...(byShard.get(e.shard) ?? []), e]);
    await Promise.all(
      [...byShard].map(async ([shard, list]) => {
        try {
          const sentAt = Date.now();
          const lost = await state.redis.workerStore.heartbeat(
            shard.ref!,
            worker.leaseMs,
            list.map((e) => ({ id: e.execution.id, token: e.execution.token })),
          );
          state.recovered();
          const lostIds = new Set(lost);
          for (const e of list) if (!lostIds.has(e.execution.id)) e.execution.leaseRenewed(sentAt);
          for (const id of lost) {
            state.executing.get(id)?.execution.abort(new LeaseLostError(`This worker lost the lease of run ${id}; another worker's results stand.`));
          }
        } catch (error) {
          state.failed('heartbeat', error);
        }
      }),
    );
  }
}
