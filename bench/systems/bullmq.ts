import { FlowProducer, Queue, QueueEvents, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';

/** BullMQ as a Nest team would use it instead: default job options (completed jobs are kept), no-op processors. */

export const BULL_PREFIX = 'bull';

export interface BullConnection {
  host: string;
  port: number;
}

export interface BullSystem {
  queue: Queue;
  worker?: Worker;
  flows?: FlowProducer;
  events?: QueueEvents;
  close(): Promise<void>;
}

/**
 * `mode` decides what the processor does:
 *  - 'single': no-op
 *  - 'chain': each job adds the next ('s1' -> 's2' -> 's3'), the way users chain jobs by hand
 *  - 'flow': no-op (the chain is a FlowProducer tree, the parent runs after its child)
 */
export async function startBull(
  connection: BullConnection,
  name: string,
  opts: { worker: boolean; mode?: 'single' | 'chain' | 'flow'; concurrency?: number; flows?: boolean; events?: boolean },
): Promise<BullSystem> {
  const queue = new Queue(name, { connection, prefix: BULL_PREFIX });
  await queue.waitUntilReady();
  let worker: Worker | undefined;
  if (opts.worker) {
    const mode = opts.mode ?? 'single';
    const processor =
      mode === 'chain'
        ? async (job: Job) => {
            if (job.name === 's1') await queue.add('s2', job.data);
            else if (job.name === 's2') await queue.add('s3', job.data);
            return true;
          }
        : async () => true;
    worker = new Worker(name, processor, { connection, prefix: BULL_PREFIX, concurrency: opts.concurrency ?? 50 });
    worker.on('error', () => undefined);
    await worker.waitUntilReady();
  }
  const flows = opts.flows ? new FlowProducer({ connection, prefix: BULL_PREFIX }) : undefined;
  let events: QueueEvents | undefined;
  if (opts.events) {
    events = new QueueEvents(name, { connection, prefix: BULL_PREFIX });
    await events.waitUntilReady();
  }
  return {
    queue,
    worker,
    flows,
    events,
    close: async () => {
      await worker?.close();
      await events?.close();
      await flows?.close();
      await queue.close();
    },
  };
}

/** A three-job chain: 's1' added now; the processor adds 's2' and 's3'. */
export function addChain(system: BullSystem, i: number): Promise<unknown> {
  return system.queue.add('s1', { i });
}

/** A three-job FlowProducer chain: 's3' is the parent of 's2', the parent of 's1' (which runs first). */
export function addFlow(system: BullSystem, i: number): Promise<unknown> {
  const queueName = system.queue.name;
  return system.flows!.add({
    name: 's3',
    queueName,
    data: { i },
    children: [{ name: 's2', queueName, data: { i }, children: [{ name: 's1', queueName, data: { i } }] }],
  });
}

/** Fan-out/fan-in: a FlowProducer parent with three children (processed in parallel), the parent after all three. */
export function addFanOut(system: BullSystem, i: number): Promise<unknown> {
  const queueName = system.queue.name;
  return system.flows!.add({
    name: 'parent',
    queueName,
    data: { i },
    children: [0, 1, 2].map((k) => ({ name: `child-${k}`, queueName, data: { i: i * 3 + k } })),
  });
}

export async function bullCompleted(redis: Redis, name: string): Promise<number> {
  return redis.zcard(`${BULL_PREFIX}:${name}:completed`);
}
