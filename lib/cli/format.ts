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
