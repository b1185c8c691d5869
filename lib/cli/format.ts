import type { RunErrorInfo } from '../interfaces/run.interfaces.js';
import { truncate } from './table.js';

/** Width of the terminal, or of COLUMNS, or 120 when the output is not a terminal. */
export function terminalWidth(env: NodeJS.ProcessEnv): number {
  return Number(env.COLUMNS) || process.stdout.columns || 120;
}

/** '2026-12-07 03:55:12 UTC' */
export function absolute(iso: string | undefined): string {
  return iso === undefined ? '' : `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** '3m ago', 'in 2h' */
export function relative(iso: string | undefined, now: number): string {
  if (iso === undefined) return '';
  const ms = Date.parse(iso) - now;
  const text = duration(Math.abs(ms), false);
  return ms > 0 ? `in ${text}` : `${text} ago`;
}

/** '2026-12-07 03:55:12 UTC (3m ago)' */
export function when(iso: string | undefined, now: number): string | undefined {
  return iso === undefined ? undefined : `${absolute(iso)} (${relative(iso, now)})`;
}

/** '850ms', '4.2s', '3m 4s', '2h 5m', '3d 4h'; `precise` false drops the milliseconds under a minute. */
export function duration(ms: number, precise = true): string {
  if (ms < 1000) return precise ? `${Math.round(ms)}ms` : `${Math.floor(ms / 1000)}s`;
  if (ms < 60_000) return precise ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 1000)}s`;
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ];
  const first = units.findIndex(([size]) => ms >= size);
  const [big, bigUnit] = units[first];
  const [small, smallUnit] = units[first + 1];
  const rest = Math.floor((ms % big) / small);
  return `${Math.floor(ms / big)}${bigUnit}${rest > 0 ? ` ${rest}${smallUnit}` : ''}`;
}

/** A JSON value on one line, cut at `max` characters (tables only: --json prints it whole). */
export function brief(value: unknown, max = 60): string {
  if (value === undefined) return '';
  return truncate(JSON.stringify(value) ?? '', max);
}

export function errorLine(error: RunErrorInfo | undefined): string {
  return error ? `${error.name}: ${error.message}` : '';
}

/**
 * The fraction a progress value stands for, when it is one: a number from 0 to 1, or an object with a
 * `fraction` from 0 to 1, or with numbers `done` and `total` (total > 0). The dashboard reads it alike
 * (assets/dashboard.js, progressFraction).
 */
export function progressFraction(value: unknown): number | undefined {
  const inRange = (n: unknown) => (typeof n === 'number' && n >= 0 && n <= 1 ? n : undefined);
  if (typeof value === 'number') return inRange(value);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as { fraction?: unknown; done?: unknown; total?: unknown };
  if (v.fraction !== undefined) return inRange(v.fraction);
  if (typeof v.done === 'number' && typeof v.total === 'number' && v.total > 0) return inRange(v.done / v.total);
  return undefined;
}

/** '40% {"done":40,"total":100}', '40%', or the value's JSON when it is no fraction. */
export function progressLine(value: unknown, max = 60): string {
  if (value === undefined) return '';
  const fraction = progressFraction(value);
  if (fraction === undefined) return brief(value, max);
  const percent = `${Math.floor(fraction * 1000) / 10}%`;
  return typeof value === 'number' ? percent : `${percent} ${brief(value, max - percent.length - 1)}`;
}
