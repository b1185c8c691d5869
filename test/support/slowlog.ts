import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Redis } from 'ioredis';

/** One SLOWLOG entry: how long the command ran (µs) and its first arguments. */
export interface SlowEntry {
  micros: number;
  args: string[];
}

/** Logs every command that runs longer than `slowerThanMicros` from now on (the log emptied first). */
export async function startSlowlog(redis: Redis, slowerThanMicros: number): Promise<void> {
  await redis.config('SET', 'slowlog-log-slower-than', String(slowerThanMicros));
  await redis.config('SET', 'slowlog-max-len', '1000000');
  await redis.slowlog('RESET');
}

/** The logged commands, slowest first. */
export async function readSlowlog(redis: Redis): Promise<SlowEntry[]> {
  const raw = (await redis.slowlog('GET', 1000000)) as [number, number, number, string[]][];
  return raw.map(([, , micros, args]) => ({ micros, args: args.slice(0, 4) })).sort((a, b) => b.micros - a.micros);
}

/** The logged FCALLs (any function of the library), slowest first. */
export async function slowFcalls(redis: Redis): Promise<SlowEntry[]> {
  return (await readSlowlog(redis)).filter((entry) => /^fcall/i.test(entry.args[0] ?? ''));
}

/**
 * Gives a private redis-server the real-time scheduling class when this process may (root), else a higher
 * priority, so that its SLOWLOG times are the work it did rather than the time other processes of a busy
 * machine held its core: on a loaded 2-core machine a 4 µs wf1_ack was logged at 4.5 ms. Redis sleeps in
 * epoll when idle, and the kernel caps real-time tasks at 95 % of a core.
 */
export function prioritize(pid: number): void {
  if (spawnSync('chrt', ['-f', '-p', '1', String(pid)]).status === 0) return;
  try {
    os.setPriority(pid, -10);
  } catch {
    // not permitted: the times include the machine's load
  }
}

/** Per function: how many calls were logged and their median, 99th percentile and longest times (µs). */
export async function fcallProfile(redis: Redis): Promise<Record<string, { calls: number; p50: number; p99: number; max: number }>> {
  const byFunction = new Map<string, number[]>();
  for (const entry of await slowFcalls(redis)) {
    const list = byFunction.get(entry.args[1]) ?? [];
    list.push(entry.micros);
    byFunction.set(entry.args[1], list);
  }
  const profile: Record<string, { calls: number; p50: number; p99: number; max: number }> = {};
  for (const [fn, list] of byFunction) {
    list.sort((a, b) => a - b);
    const at = (q: number) => list[Math.min(list.length - 1, Math.floor(q * list.length))];
    profile[fn] = { calls: list.length, p50: at(0.5), p99: at(0.99), max: list[list.length - 1] };
  }
  return profile;
}

/**
 * How long process `pid` has waited, runnable, for a core (ms, /proc/<pid>/schedstat), or 0 where that
 * is not readable. A prioritized redis-server (real-time class) still waits: the kernel throttles
 * real-time tasks that use more than 95 % of a core in a second ('sched: RT throttling activated'), which
 * a flood of calls reaches, and pauses them for the rest of that second.
 */
export function runDelayMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return 0;
  }
}

/**
 * The slow calls that the server's waits for a core (`waitedMs`, from runDelayMs over the same span)
 * cannot explain: all of them when their time over `limitMicros`, summed, is more than it waited; else
 * none (each is then at most its share of the waits over the limit).
 */
export function unexplainedSlowCalls(slow: SlowEntry[], limitMicros: number, waitedMs: number): SlowEntry[] {
  const overMs = slow.reduce((sum, entry) => sum + Math.max(0, entry.micros - limitMicros), 0) / 1000;
  return overMs > waitedMs ? slow : [];
}
