import { Cluster, Command } from 'ioredis';
import type { Writable } from 'node:stream';
import type { RedisClient } from './redis-connections.js';

/**
 * How the FCALLs of one event-loop turn are written. Concurrent calls share socket writes, and several
 * batches may be in flight at once.
 *
 * ioredis auto-pipelining collects the commands of one event-loop turn into one write, but keeps only
 * one such pipeline in flight per connection: the next batch waits until every reply of the previous
 * one has arrived, so Redis and this process take turns instead of working at the same time. On a
 * standalone Redis the call is therefore written at once (ioredis matches replies in order, as for any
 * command) into a socket corked until the end of this turn: the turn's calls still leave in one write,
 * and the next turn's calls leave while Redis is still answering this one's. On a cluster ioredis
 * auto-pipelining (per node) is used as it is.
 *
 * Step commits go one step further: those of one turn on one shard share one FCALL (wf1_many, see
 * batched). Every call of the store passes here: plain promises, no async.
 */
export class TurnBatcher {
  constructor(private readonly client: RedisClient) {}

  write(fn: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    const client = this.client;
    if (client.status !== 'ready') return client.fcall(fn, keys.length, ...keys, ...args);
    if (BATCHED_ARGS[fn] === args.length && keys.length === 1) return this.batched(fn, keys[0], args);
    return this.writeNow(fn, keys, args);
  }

  /** `calls`: how many calls the FCALL carries (a wf1_many carries several). */
  private writeNow(fn: string, keys: string[], args: (string | number)[], calls = 1): Promise<unknown> {
    const client = this.client;
    if (client instanceof Cluster || !client.options.enableAutoPipelining) {
      return client.fcall(fn, keys.length, ...keys, ...args);
    }
    this.corkForThisTurn((client as unknown as { stream: Writable }).stream, calls);
    return client.sendCommand(new Command('fcall', commandArguments(fn, keys, args), { replyEncoding: 'utf8' })) as Promise<unknown>;
  }

  /**
   * Calls of one function on one shard collected in this turn, by function and shard root. A new Map each
   * turn: a long-lived one keeps the entries it dropped reachable from old space until a full GC (see
   * worker/executing-runs.ts), and the batches' callbacks reach the runs that made the calls.
   */
  private batches?: Map<string, Batch>;

  /**
   * Joins the call to this turn's batch of its function on its shard. The batch leaves at the end of the
   * turn (or once it is full) as one FCALL of wf1_many, or as the plain call when it holds only one. Each
   * caller gets its own call's reply; when the batch as a whole fails, each call is sent again alone
   * (a step commit is safe to repeat: it stores the same record again).
   */
  private batched(fn: string, root: string, args: (string | number)[]): Promise<unknown> {
    const key = `${fn}\u0000${root}`;
    const batches = (this.batches ??= new Map());
    let batch = batches.get(key);
    if (!batch) {
      batch = { fn, root, calls: [] };
      batches.set(key, batch);
      this.endTurnSoon();
    }
    const calls = batch.calls;
    const reply = new Promise((resolve, reject) => calls.push({ args, resolve, reject }));
    if (calls.length >= MAX_BATCH) {
      batches.delete(key);
      this.sendBatch(batch);
    }
    return reply;
  }

  private sendBatch(batch: Batch): void {
    const { fn, root, calls } = batch;
    if (calls.length === 1) {
      const [call] = calls;
      this.writeNow(fn, [root], call.args).then(call.resolve, call.reject);
      return;
    }
    const args: (string | number)[] = [BATCHED_NAMES[fn], BATCHED_ARGS[fn]];
    for (const call of calls) for (const arg of call.args) args.push(arg);
    this.writeNow('wf1_many', [root], args, calls.length).then(
      (replies) => {
        for (let i = 0; i < calls.length; i += 1) calls[i].resolve((replies as unknown[])[i]);
      },
      // Each call again on its own, so that each gets its own outcome: a call that Redis refused (an
      // error in one call ends the FCALL there) does not fail the others. A lost connection or library
      // fails them alone too, and their callers retry or reload as for any call.
      () => {
        for (const call of calls) this.writeNow(fn, [root], call.args).then(call.resolve, call.reject);
      },
    );
  }

  private turnEndScheduled = false;

  private endTurnSoon(): void {
    if (this.turnEndScheduled) return;
    this.turnEndScheduled = true;
    setImmediate(() => this.endTurn());
  }

  /** The end of the turn: this turn's batches are written, then the corked socket sends everything at once. */
  private endTurn(): void {
    const batches = this.batches;
    this.batches = undefined;
    if (batches) for (const batch of batches.values()) this.sendBatch(batch);
    this.turnEndScheduled = false;
    const stream = this.corkedStream;
    if (stream) {
      this.corkedStream = undefined;
      stream.uncork();
    }
  }

  private corkedStream?: Writable;

  private corkedCalls = 0;

  private corkForThisTurn(stream: Writable | undefined, calls: number): void {
    if (!stream) return;
    if (this.corkedStream === stream) {
      // Long turns (many replies read at once) send in parts, so that Redis starts on them meanwhile.
      this.corkedCalls += calls;
      if (this.corkedCalls >= FLUSH_EVERY) {
        this.corkedCalls = 0;
        stream.uncork();
        stream.cork();
      }
      return;
    }
    if (this.corkedStream) this.corkedStream.uncork(); // a reconnect replaced the stream
    this.corkedStream = stream;
    this.corkedCalls = calls;
    stream.cork();
    this.endTurnSoon();
  }
}

/**
 * FCALL's arguments as one array that answers `flat()` with itself. ioredis copies every command's
 * arguments with Array.prototype.flat, which V8 (Node 20) runs at about 100 ns per element: 2 µs for a
 * completion's 19 arguments, 6 µs for a park that starts 3 children, more than all the rest of making
 * the command (bench/NOTES.md, seventh round). Ours hold no nested arrays, so the copy is not needed.
 * A subclass rather than an own `flat` property on a plain array: the property's backing store made
 * every command in flight larger, and a burst's commands are in flight long enough to be promoted to old
 * space (the worker-memory probe went from about 1,000 to 1,800 bytes per run).
 */
function commandArguments(fn: string, keys: string[], args: (string | number)[]): (string | number)[] {
  const all = new FcallArguments(2 + keys.length + args.length);
  all[0] = fn;
  all[1] = keys.length;
  let at = 2;
  for (const key of keys) all[at++] = key;
  for (const arg of args) all[at++] = arg;
  return all;
}

class FcallArguments extends Array<string | number> {
  override flat(): never {
    return this as never;
  }
}

interface Batch {
  fn: string;
  root: string;
  calls: { args: (string | number)[]; resolve: (reply: unknown) => void; reject: (error: unknown) => void }[];
}

/**
 * The functions wf1_many batches: their name there and how many arguments each call has (lua/many.lua).
 * Step commits only: batching emits as well made a producer's burst promote ~500 B more per run to old
 * space (test/support/worker-memory.probe.ts) for a few percent of throughput (bench/NOTES.md, sixth round).
 */
const BATCHED_NAMES: Record<string, string> = { wf1_commit_step: 'commit_step' };
const BATCHED_ARGS: Record<string, number> = { wf1_commit_step: 8 };
/** Calls per wf1_many: a full batch leaves at once, so that Redis starts on it while this turn goes on. */
const MAX_BATCH = 16;

/** Calls per socket write within one long turn (measured: 8-16 best for 50 concurrent one-step runs, bench/NOTES.md). */
const FLUSH_EVERY = 16;
