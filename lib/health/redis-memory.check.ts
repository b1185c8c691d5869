import { Cluster, type Redis } from 'ioredis';
import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { RedisClient } from '../redis/redis-connections.js';

/** One Redis server's memory as INFO reports it. */
export interface NodeMemory {
  /** host:port */
  node: string;
  usedBytes: number;
  /** 0: no maxmemory (Redis grows until the machine runs out). */
  maxBytes: number;
  policy: string;
}

export type MemoryCheck = {
  status: 'up' | 'down';
  message?: string;
  /** The server closest to its limit (the only one on a single node). */
  node: string;
  usedBytes: number;
  maxBytes: number;
  /** usedBytes / maxBytes, when maxmemory is set. */
  usedRatio?: number;
  policy: string;
  /** The share of maxmemory past which the check is down. */
  threshold: number;
  /** Every server read: each primary of a cluster. */
  nodes: NodeMemory[];
};

/** Default share of maxmemory past which health turns down, before Redis refuses writes at 100 %. */
export const DEFAULT_MEMORY_THRESHOLD = 0.9;

/**
 * Reads INFO memory on the server, or on every primary of a cluster (each holds its own shards and fills up
 * on its own). INFO rather than CONFIG GET: managed Redis services often disable CONFIG.
 */
export async function readRedisMemory(client: RedisClient): Promise<NodeMemory[]> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client as Redis];
  return Promise.all(
    nodes.map(async (node) => {
      const info = String(await node.call('INFO', 'memory'));
      const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
      return {
        node: `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`,
        usedBytes: Number(field('used_memory') ?? 0),
        maxBytes: Number(field('maxmemory') ?? 0),
        policy: field('maxmemory_policy') ?? 'unknown',
      };
    }),
  );
}

/**
 * Down when a server may evict keys on its own, or uses more than `threshold` of its maxmemory.
 *
 * Only `noeviction` keeps workflow state whole: `allkeys-*` may delete a run hash or an index entry without
 * the rest; `volatile-*` may delete keys that have a TTL, and the module sets one on event logs (kept
 * `eventRetentionMs` for runs that wait later), so an event could vanish before a waiter reads it. Without
 * maxmemory Redis never evicts, whatever the policy.
 */
export function judgeMemory(nodes: NodeMemory[], threshold: number): MemoryCheck {
  const ratio = (n: NodeMemory) => (n.maxBytes > 0 ? n.usedBytes / n.maxBytes : 0);
  const worst = nodes.reduce((a, b) => (ratio(b) > ratio(a) ? b : a));
  const problems: string[] = [];
  for (const n of nodes) {
    if (n.maxBytes === 0) continue;
    if (n.policy !== 'noeviction') {
      problems.push(
        `Redis at ${n.node} has maxmemory-policy ${n.policy}, which lets Redis delete workflow keys (runs, indexes, event logs) when memory is full: set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)`,
      );
    }
    if (ratio(n) >= threshold) {
      problems.push(
        `Redis at ${n.node} uses ${percent(ratio(n))} of maxmemory (${mib(n.usedBytes)} of ${mib(n.maxBytes)}, threshold ${percent(threshold)}); at 100 % it refuses every workflow write: raise maxmemory, shorten retention, or add shards`,
      );
    }
  }
  return {
    status: problems.length === 0 ? 'up' : 'down',
    ...(problems.length > 0 ? { message: problems.join('; ') } : {}),
    node: worst.node,
    usedBytes: worst.usedBytes,
    maxBytes: worst.maxBytes,
    ...(worst.maxBytes > 0 ? { usedRatio: Math.round(ratio(worst) * 1000) / 1000 } : {}),
    policy: worst.policy,
    threshold,
    nodes,
  };
}

/** Checks the option once, where it is given: a share of maxmemory above 0 and at most 1. */
export function memoryThreshold(value: number | undefined): number {
  const threshold = value ?? DEFAULT_MEMORY_THRESHOLD;
  if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) {
    throw new InvalidArgumentError(`memoryThreshold must be a share of maxmemory above 0 and at most 1 (e.g. 0.9), got ${String(value)}.`);
  }
  return threshold;
}

const percent = (share: number) => `${Math.round(share * 100)} %`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
