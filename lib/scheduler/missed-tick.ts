/**
 * The latest tick of a cron trigger strictly between `after` and `before` (ms), or undefined when none is.
 * `next(from)` is the trigger's first tick strictly after `from` (cron's CronTime.getNextDateFrom).
 *
 * A trigger that ticks every second over a week-long outage has 600,000 ticks in the gap: rather than
 * walking them, the window before `before` is doubled until it holds a tick, and only that window is
 * walked (the half nearer `before` had none, so the walk covers what lies in one window's older half).
 */
export function latestTickBetween(next: (from: Date) => number, after: number, before: number): number | undefined {
  for (let span = 1_000; ; span *= 2) {
    const from = Math.max(after, before - span);
    let tick = next(new Date(from));
    if (tick < before) {
      for (let following = next(new Date(tick)); following < before; following = next(new Date(following))) tick = following;
      return tick;
    }
    if (from === after) return undefined;
  }
}

/** The scheduled time of a cron tick from the idempotency key of the run it started: 'cron:<trigger id>:<ISO time>' (a run
 *  started by triggerSchedule has ':trigger:<nonce>' after it). Undefined for a run no trigger started. */
export function scheduledAtFromKey(key: string | undefined, triggerIds: readonly string[]): string | undefined {
  if (!key?.startsWith('cron:')) return undefined;
  for (const id of triggerIds) {
    const prefix = `cron:${id}:`;
    if (!key.startsWith(prefix)) continue;
    const iso = key.slice(prefix.length, prefix.length + 24);
    const at = Date.parse(iso);
    if (!Number.isNaN(at) && new Date(at).toISOString() === iso) return iso;
  }
  return undefined;
}
