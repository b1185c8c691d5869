/**
 * The untimed warm-up of a throughput trial (bench/trial.ts), described in RESULTS.md by bench/run.ts: a fresh
 * process first runs its code unoptimized and grows its heap and buffers, a fixed cost that would otherwise
 * weigh more on the shorter trial of the faster system (bench/NOTES.md, twelfth round).
 * BENCH_WARMUP: the share of the trial's count run first (0.1 by default; 0 = none).
 */
const WARMUP_SHARE = Number(process.env.BENCH_WARMUP ?? '0.1');
const MAX_WARMUP_UNITS = 2_000;

/** Units a throughput trial of `n` units runs to the end before its clock starts. */
export function warmupUnits(n: number): number {
  return Math.min(MAX_WARMUP_UNITS, Math.ceil(n * WARMUP_SHARE));
}

/** The warm-up in words, for RESULTS.md. */
export function describeWarmup(): string {
  return WARMUP_SHARE > 0
    ? `${Math.round(WARMUP_SHARE * 100)} % of its count (at most ${MAX_WARMUP_UNITS.toLocaleString('en-US')} units)`
    : 'nothing (BENCH_WARMUP=0)';
}
