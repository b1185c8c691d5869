import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { RedisTx, RedisTxValue } from '../interfaces/redis-step.interfaces.js';

/**
 * The commands a Redis step queues (ctx.step.redis), checked here before anything is sent and again by
 * wf1_commit_redis_step (lua/redis-step.lua), which runs them in the call that commits the step. The
 * list is fixed: each command has a fixed number of arguments (no variadic forms, so Lua never unpacks a
 * user-sized list), none runs a script, blocks or administers.
 */
const COMMANDS = {
  get: { args: 0 }, exists: { args: 0 }, strlen: { args: 0 }, ttl: { args: 0 }, pttl: { args: 0 },
  set: { args: 1, writes: true }, del: { args: 0, writes: true },
  incr: { args: 0, writes: true, counter: true }, decr: { args: 0, writes: true, counter: true },
  incrby: { args: 1, writes: true, counter: true, integer: 0 }, decrby: { args: 1, writes: true, counter: true, integer: 0 },
  expire: { args: 1, writes: true, integer: 0 }, pexpire: { args: 1, writes: true, integer: 0 }, persist: { args: 0, writes: true },
  hget: { args: 1 }, hexists: { args: 1 }, hlen: { args: 0 },
  hset: { args: 2, writes: true }, hdel: { args: 1, writes: true }, hincrby: { args: 2, writes: true, counter: true, integer: 1 },
  sismember: { args: 1 }, scard: { args: 0 }, sadd: { args: 1, writes: true }, srem: { args: 1, writes: true },
  zscore: { args: 1 }, zcard: { args: 0 }, zadd: { args: 2, writes: true, score: 0 }, zrem: { args: 1, writes: true },
  zincrby: { args: 2, writes: true, score: 0 },
  llen: { args: 0 }, lpush: { args: 1, writes: true }, rpush: { args: 1, writes: true },
} as const satisfies Record<string, { args: 0 | 1 | 2; writes?: boolean; counter?: boolean; integer?: 0 | 1; score?: 0 }>;

export type RedisTxCommand = keyof typeof COMMANDS;
export const REDIS_TX_COMMANDS = Object.keys(COMMANDS) as RedisTxCommand[];

/** Most commands and guards in one Redis step (as lua/redis-step.lua's REDIS_STEP_MAX_COMMANDS). */
export const REDIS_STEP_MAX_COMMANDS = 64;
const MAX_KEY_BYTES = 1024;
/** Integers the step's counters may carry (as lua/redis-step.lua's is_integer_text): 18 digits. */
const MAX_COUNTER = 999_999_999_999_999_999n;

export interface RedisTxPlan {
  /** The keys, each once, in the order first named (KEYS[2..] of the call). */
  keys: string[];
  /** ARGV from its 6th element: the guards, then the commands (see lua/redis-step.lua). */
  args: string[];
  /** Bytes of keys and values: checked against maxPayloadBytes. */
  bytes: number;
}

interface Where {
  /** The run's shard root, '{prefix:queue:partition}': the hash tag of every engine key of the run. */
  shardRoot: string;
  prefix: string;
  cluster: boolean;
  maxPayloadBytes: number;
  step: string;
}

/** Collects what a Redis step's function queues; `plan()` checks it whole and encodes it for the call. */
export class RedisTxBuilder {
  readonly tx: RedisTx;
  private readonly guards: { key: string; value: string | null }[] = [];
  private readonly commands: { name: RedisTxCommand; key: string; args: string[] }[] = [];

  constructor(private readonly where: Where) {
    const tx: Record<string, unknown> = {
      key: (name: string) => {
        if (typeof name !== 'string' || name === '') throw this.invalid(`tx.key() needs a non-empty name, got ${describe(name)}.`);
        return `${name}:${where.shardRoot}`;
      },
      expect: (key: string, value: RedisTxValue | null) => {
        this.guards.push({ key: this.checkKey(key, 'expect'), value: value === null ? null : this.text(value, 'expect') });
        return tx;
      },
    };
    for (const name of REDIS_TX_COMMANDS) {
      tx[name] = (key: string, ...args: RedisTxValue[]) => {
        const spec = COMMANDS[name] as { args: number };
        if (args.length !== spec.args) throw this.invalid(`tx.${name}() takes a key and ${spec.args} argument(s), got ${args.length}.`);
        this.commands.push({ name, key: this.checkKey(key, name), args: args.map((arg) => this.text(arg, name)) });
        return tx;
      };
    }
    this.tx = tx as unknown as RedisTx;
  }

  plan(): RedisTxPlan {
    const count = this.guards.length + this.commands.length;
    if (this.commands.length === 0) throw this.invalid('it queued no command: queue at least one on tx (tx.decrby(key, 1), tx.get(key), ...).');
    if (count > REDIS_STEP_MAX_COMMANDS) {
      throw this.invalid(`it queued ${count} commands and guards; a Redis step carries at most ${REDIS_STEP_MAX_COMMANDS}. Split it into several steps.`);
    }
    const keys: string[] = [];
    const index = new Map<string, number>();
    const keyIndex = (key: string) => {
      let at = index.get(key);
      if (at === undefined) {
        at = keys.push(key) + 1; // KEYS[1] is the shard root
        index.set(key, at);
      }
      return String(at);
    };
    const args: string[] = [String(this.guards.length)];
    let bytes = 0;
    for (const guard of this.guards) {
      args.push(keyIndex(guard.key), guard.value === null ? 'n' : 'v', guard.value ?? '');
      bytes += Buffer.byteLength(guard.key) + Buffer.byteLength(guard.value ?? '');
    }
    args.push(String(this.commands.length));
    const setInThisStep = new Set<string>();
    for (const command of this.commands) {
      const spec = COMMANDS[command.name] as { counter?: boolean; integer?: number; score?: number };
      if (spec.integer !== undefined) this.checkInteger(command.name, command.args[spec.integer]);
      if (spec.score !== undefined && !Number.isFinite(Number(command.args[spec.score]))) {
        throw this.invalid(`tx.${command.name}() needs a finite number as its score, got ${JSON.stringify(command.args[spec.score])}.`);
      }
      // A counter on a value this step set itself could fail in Redis after earlier writes: refused here.
      const target = command.name === 'hincrby' ? `${command.key}\n${command.args[0]}` : command.key;
      if (spec.counter && setInThisStep.has(target)) {
        throw this.invalid(`tx.${command.name}() on ${JSON.stringify(command.key)}, which this step sets earlier: queue the counter first, or set the final value.`);
      }
      if (command.name === 'set') setInThisStep.add(command.key);
      if (command.name === 'hset') setInThisStep.add(`${command.key}\n${command.args[0]}`);
      args.push(command.name, keyIndex(command.key), ...command.args);
      bytes += Buffer.byteLength(command.key) + command.args.reduce((sum, arg) => sum + Buffer.byteLength(arg), 0);
    }
    if (bytes > this.where.maxPayloadBytes) {
      throw this.invalid(`its keys and values take ${bytes} bytes, more than maxPayloadBytes (${this.where.maxPayloadBytes}).`);
    }
    return { keys, args, bytes };
  }

  /** The commands queued, as `[command, key, ...arguments]` (for runInline's overrides). */
  queued(): string[][] {
    return this.commands.map((c) => [c.name, c.key, ...c.args]);
  }

  private checkKey(key: unknown, command: string): string {
    if (typeof key !== 'string' || key === '') throw this.invalid(`tx.${command}() needs a key (a non-empty string), got ${describe(key)}.`);
    if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw this.invalid(`tx.${command}(): a key is at most ${MAX_KEY_BYTES} bytes.`);
    const { prefix, shardRoot } = this.where;
    if (key.startsWith(`{${prefix}:`) || key.startsWith(`${prefix}:`)) {
      throw this.invalid(`tx.${command}(${JSON.stringify(key)}): keys under the prefix '${prefix}' belong to the workflow engine and cannot be written by a step.`);
    }
    if (this.where.cluster && hashTag(key) !== shardRoot.slice(1, -1)) {
      throw this.invalid(
        `tx.${command}(${JSON.stringify(key)}): on a Redis Cluster a Redis step's keys must be in its run's hash slot; build them with tx.key(${JSON.stringify(key)}), which gives ${JSON.stringify(`${key}:${shardRoot}`)}.`,
      );
    }
    return key;
  }

  private text(value: unknown, command: string): string {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    throw this.invalid(`tx.${command}() takes strings and finite numbers as values, got ${describe(value)}.`);
  }

  private checkInteger(command: string, text: string): void {
    if (!/^-?\d{1,18}$/.test(text) || BigInt(text) > MAX_COUNTER || BigInt(text) < -MAX_COUNTER) {
      throw this.invalid(`tx.${command}() needs a whole number of at most 18 digits, got ${JSON.stringify(text)}.`);
    }
  }

  private invalid(message: string): InvalidArgumentError {
    return new InvalidArgumentError(`Redis step '${this.where.step}': ${message} Nothing was written.`);
  }
}

/** The part of a key Redis Cluster hashes: the text between the first '{' and the next '}', when not empty. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  return close === -1 || close === open + 1 ? key : key.slice(open + 1, close);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'number' ? String(value) : typeof value;
}
