import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Redis } from 'ioredis';

/** One SLOWLOG entry: how long the command ran (µs) and its first arguments. */
export interface SlowEntry {
  micros: number;
  args: string[];
}

/** Per connection: the local redis-server's pid and its waits for a core when its slow log was started. */
const STARTS = new WeakMap<Redis, { pid?: number; waitedMs: number }>();

/** Logs every command that runs longer than `slowerThanMicros` from now on (the log emptied first). */
export async function startSlowlog(redis: Redis, slowerThanMicros: number): Promise<void> {
  await redis.config('SET', 'slowlog-log-slower-than', String(slowerThanMicros));
  await redis.config('SET', 'slowlog-max-len', '1000000');
  await redis.slowlog('RESET');
  const pid = await localServerPid(redis);
  STARTS.set(redis, { pid, waitedMs: pid ? runDelayMs(pid) : 0 });
}

/** The server's pid when it runs on this machine (its /proc entry is a redis-server), else undefined. */
async function localServerPid(redis: Redis): Promise<number | undefined> {
  const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
  try {
    return pid && readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('redis') ? pid : undefined;
  } catch {
    return undefined;
  }
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
function runDelayMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return 0;
  }
}

/**
 * The FCALLs over `limitMicros` since startSlowlog that the server's waits for a core meanwhile cannot
 * explain: all of them when their time over the limit, summed, is more than the server waited; else none
 * (each is then at most its share of the waits). The slow ones are printed. What every "no call over
 * 5 ms" check asserts empty.
 */
export async function unexplainedSlowFcalls(redis: Redis, limitMicros = 5_000): Promise<SlowEntry[]> {
  const slow = (await slowFcalls(redis)).filter((entry) => entry.micros > limitMicros);
  if (slow.length === 0) return [];
  const start = STARTS.get(redis);
  const waited = start?.pid ? runDelayMs(start.pid) - start.waitedMs : 0;
  const overMs = slow.reduce((sum, entry) => sum + Math.max(0, entry.micros - limitMicros), 0) / 1000;
  const unexplained = overMs > waited ? slow : [];
  const listed = slow.map((entry) => `${entry.args[1]} ${entry.micros} µs`).join(', ');
  console.log(`FCALLs over ${limitMicros / 1000} ms: ${listed}; the server waited ${waited.toFixed(1)} ms for a core meanwhile${unexplained.length === 0 ? ', which explains them' : ''}`);
  return unexplained;
}
