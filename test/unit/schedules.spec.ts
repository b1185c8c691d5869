import { describe, expect, it } from '@jest/globals';
import type { LoggerService } from '@nestjs/common';
import { Workflow, runInline, type WorkflowContext } from '../../lib/index.js';
import { latestTickBetween, scheduledAtFromKey } from '../../lib/scheduler/missed-tick.js';

const silent: LoggerService = { log() {}, error() {}, warn() {}, debug() {}, verbose() {} };

@Workflow('inline-digest', { cron: [{ id: 'hourly', expression: '0 * * * *' }] })
class DigestWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.run.scheduledAt ?? 'none';
  }
}

/** A cron trigger every `period` ms from 0: its first tick strictly after `from`. */
const every = (period: number) => (from: Date) => (Math.floor(from.getTime() / period) + 1) * period;

describe('schedules: missed ticks and scheduledAt', () => {
  it('finds the latest tick strictly between two times, without walking a long gap tick by tick', () => {
    expect(latestTickBetween(every(2_000), 10_000, 17_500)).toBe(16_000);
    expect(latestTickBetween(every(2_000), 10_000, 16_000)).toBe(14_000);
    expect(latestTickBetween(every(2_000), 10_000, 12_000)).toBeUndefined();
    expect(latestTickBetween(every(3_600_000), 0, 3_600_000)).toBeUndefined();
    // a week of per-second ticks: the answer without a 600,000-step walk
    let calls = 0;
    const counted = (from: Date) => {
      calls += 1;
      return every(1_000)(from);
    };
    expect(latestTickBetween(counted, 0, 7 * 86_400_000 + 500)).toBe(7 * 86_400_000);
    expect(calls).toBeLessThan(10);
  });

  it('reads a tick time from the idempotency key a cron tick or a trigger gave the run, and nothing else', () => {
    expect(scheduledAtFromKey('cron:hourly:2026-12-07T06:00:00.000Z', ['hourly'])).toBe('2026-12-07T06:00:00.000Z');
    expect(scheduledAtFromKey('cron:0 * * * *@local:2026-12-07T06:00:00.000Z', ['0 * * * *@local'])).toBe('2026-12-07T06:00:00.000Z');
    expect(scheduledAtFromKey('cron:hourly:2026-12-07T06:12:03.120Z:trigger:0a1b2c3d', ['hourly'])).toBe('2026-12-07T06:12:03.120Z');
    expect(scheduledAtFromKey('cron:other:2026-12-07T06:00:00.000Z', ['hourly'])).toBeUndefined();
    expect(scheduledAtFromKey('cron:hourly:not-a-time-at-all-really!', ['hourly'])).toBeUndefined();
    expect(scheduledAtFromKey('order-42', ['hourly'])).toBeUndefined();
    expect(scheduledAtFromKey(undefined, ['hourly'])).toBeUndefined();
  });

  it('runInline gives ctx.run.scheduledAt from its option', async () => {
    const at = new Date('2026-12-07T06:00:00.000Z');
    await expect(runInline(new DigestWorkflow(), { input: {}, scheduledAt: at, logger: silent })).resolves.toMatchObject({ succeeded: true, output: at.toISOString() });
    await expect(runInline(new DigestWorkflow(), { input: {}, logger: silent })).resolves.toMatchObject({ output: 'none' });
  });
});
