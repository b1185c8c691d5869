import type { Redis } from 'ioredis';

/** Commands the measuring client itself sends; they are not the systems' work. */
const MEASUREMENT = new Set(['info', 'config|resetstat', 'config', 'flushall', 'monitor', 'client|setname', 'client|info', 'client', 'ping', 'memory|purge', 'hello', 'select']);

/** Calls per command from INFO commandstats (commands called from Lua included, as Redis counts them). */
export async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const stats = new Map<string, number>();
  for (const line of info.split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (match && !MEASUREMENT.has(match[1])) stats.set(match[1], Number(match[2]));
  }
  return stats;
}

/** Calls and µs per command from INFO commandstats (Lua included; an FCALL's µs include its inner commands'). */
export async function commandTimes(redis: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const info = await redis.info('commandstats');
  const times = new Map<string, { calls: number; usec: number }>();
  for (const [, command, calls, usec] of info.matchAll(/cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g)) {
    if (!MEASUREMENT.has(command)) times.set(command, { calls: Number(calls), usec: Number(usec) });
  }
  return times;
}

export function totalCalls(stats: Map<string, number>): number {
  let total = 0;
  for (const calls of stats.values()) total += calls;
  return total;
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

/** Resets Redis between trials: data, stats (our private server only, never a shared one). */
export async function resetServer(redis: Redis): Promise<void> {
  await redis.flushall();
  await redis.config('RESETSTAT');
}

/** CPU seconds the Redis server has used (user + system), from INFO cpu. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0);
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
  return user + sys;
}
