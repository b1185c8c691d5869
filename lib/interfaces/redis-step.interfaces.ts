/** A value a Redis step writes: stored as Redis stores it, a string (a number is written as its text). */
export type RedisTxValue = string | number;

/**
 * What `ctx.step.redis(name, (tx) => …)` hands its function: queue commands on it (ioredis-style names,
 * a key first); they run inside the call that commits the step, so their effect happens exactly once
 * across crashes, retries and replays. The step resolves with their replies, in order (integers as
 * numbers, missing values as null; guards give none). Each method returns `tx`, for chaining.
 *
 * A fixed list, each with a fixed number of arguments: no scripts, no blocking, no admin, no variadic
 * forms. Everything is checked before anything is written (types of the keys, integers), so a step
 * either runs all its commands or none.
 */
export interface RedisTx {
  /** A key in this run's hash slot: `<name>:{<shard>}`. On a Redis Cluster every key must be one. */
  key(name: string): string;
  /** The whole step writes nothing unless GET `key` equals `value` when it commits (`null`: the key must
   *  not exist); otherwise the step fails with RedisStepGuardError. */
  expect(key: string, value: RedisTxValue | null): RedisTx;

  get(key: string): RedisTx;
  exists(key: string): RedisTx;
  strlen(key: string): RedisTx;
  ttl(key: string): RedisTx;
  pttl(key: string): RedisTx;
  set(key: string, value: RedisTxValue): RedisTx;
  del(key: string): RedisTx;
  incr(key: string): RedisTx;
  decr(key: string): RedisTx;
  incrby(key: string, increment: number | string): RedisTx;
  decrby(key: string, decrement: number | string): RedisTx;
  expire(key: string, seconds: number | string): RedisTx;
  pexpire(key: string, milliseconds: number | string): RedisTx;
  persist(key: string): RedisTx;

  hget(key: string, field: string): RedisTx;
  hexists(key: string, field: string): RedisTx;
  hlen(key: string): RedisTx;
  hset(key: string, field: string, value: RedisTxValue): RedisTx;
  hdel(key: string, field: string): RedisTx;
  hincrby(key: string, field: string, increment: number | string): RedisTx;

  sismember(key: string, member: RedisTxValue): RedisTx;
  scard(key: string): RedisTx;
  sadd(key: string, member: RedisTxValue): RedisTx;
  srem(key: string, member: RedisTxValue): RedisTx;

  zscore(key: string, member: RedisTxValue): RedisTx;
  zcard(key: string): RedisTx;
  zadd(key: string, score: number | string, member: RedisTxValue): RedisTx;
  zrem(key: string, member: RedisTxValue): RedisTx;
  zincrby(key: string, increment: number | string, member: RedisTxValue): RedisTx;

  llen(key: string): RedisTx;
  lpush(key: string, value: RedisTxValue): RedisTx;
  rpush(key: string, value: RedisTxValue): RedisTx;
}

/** Queues the commands that undo a Redis step, given the step's replies (see RedisStepOptions.compensate). */
export type RedisCompensation = (tx: RedisTx, replies: unknown[]) => void;

export interface RedisStepOptions {
  /** When the run fails for good or is canceled, the saga queues these commands; they run in one call
   *  that also marks the step compensated, so the undo happens exactly once too. */
  compensate?: RedisCompensation;
}
