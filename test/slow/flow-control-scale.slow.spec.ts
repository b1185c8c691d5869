/**
 * Flow control (docs/flow-control.md) at the size issue 29 names: 100,000 runs over 10,000 keys with
 * `concurrency: { key, limit: 1 }`, emitted with no worker, then drained by one worker (concurrency 50).
 * The held runs wait outside the ready set (10,000 ready, 90,000 held), a key's state costs the bytes the
 * doc states, a claim does the same Redis commands with 90,000 runs held as with a backlog of 10, no key
 * ever runs two at once, every run finishes, no key's state is left behind, and no FCALL runs over 5 ms
 * during the emits and the drain (SLOWLOG is the judge).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { fcallsWithWork, monitorCommands } from '../support/redis-monitor.js';
import { sleep, uniquePrefix } from '../support/redis-server.js';
import { fcallProfile, prioritize, startSlowlog, unexplainedSlowFcalls } from '../support/slowlog.js';
import { startApp, statusIndexSize, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

const N = Number(process.env.FLOW_SCALE_N ?? 100_000);
const KEYS = Number(process.env.FLOW_SCALE_KEYS ?? 10_000);
const PER_KEY = N / KEYS;
/** FLOW_SCALE_PROFILE=1: every FCALL is logged and the times by function are printed instead of asserting none was slow. */
const PROFILE = process.env.FLOW_SCALE_PROFILE === '1';
const CHUNK = 2_000;
/** Bytes a key adds (docs/flow-control.md, "Memory per key"): with one run, and with ten (one admitted,
 *  nine held), against the same runs without flow control, emitted in this order (where the keyspace's table
 *  doubles moves the second figure by about 40 bytes). Measured stable within a few bytes. */
const DOC_BYTES_PER_KEY_ONE_RUN = 185;
const DOC_BYTES_PER_KEY_TEN_RUNS = -180;
const BYTES_PER_KEY_TOLERANCE = 40;

const suite = useSuiteRedis();
/** The probe the handler writes its side effects with (set before the drain). */
let effects: Redis;
let log = '';

/** Runs of key `floor(i / PER_KEY)` are emitted one after the other: a second run of a key let into the
 *  ready set next to its first is claimed with it, and the overlap check sees it. */
const keyOf = (i: number) => `k${Math.floor(i / PER_KEY)}`;

@Workflow('scale-keyed', { concurrency: { key: (input: { k: string }) => input.k, limit: 1 } })
@Injectable()
class Keyed {
  async execute(ctx: WorkflowContext<{ k: string }>) {
    // executing runs of the key, and the most ever seen: the limit is 1
    if ((await effects.hincrby(`${log}:active`, ctx.input.k, 1)) > 1) await effects.incr(`${log}:overlaps`);
    await sleep(1);
    await effects.hincrby(`${log}:active`, ctx.input.k, -1);
    await effects.incr(`${log}:ran`);
  }
}

@Workflow('scale-plain')
@Injectable()
class Plain {
  async execute() {}
}

const usedMemory = async (redis: Redis) => Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1]);

/** Emits `count` runs in chunks of CHUNK, returning Redis's used memory before and after. */
async function emitAll(emit: (i: number) => Promise<unknown>, count: number): Promise<{ bytes: number; ms: number }> {
  const before = await usedMemory(suite.direct);
  const started = Date.now();
  for (let at = 0; at < count; at += CHUNK) {
    await Promise.all(Array.from({ length: Math.min(CHUNK, count - at) }, (_, j) => emit(at + j)));
  }
  return { bytes: (await usedMemory(suite.direct)) - before, ms: Date.now() - started };
}

/** Emits `count` runs of `workflow` with input `{ k: key(i) }` from an app of its own under `prefix`. */
async function emitInto(prefix: string, workflow: typeof Keyed | typeof Plain, count: number, key: (i: number) => string) {
  const app = await startApp({ connection: suite.redis.url, prefix, worker: false, cron: false }, [workflow]);
  suite.apps.push(app);
  try {
    return await emitAll((i) => app.client.emit(workflow, { k: key(i) }), count);
  } finally {
    await app.close();
  }
}

/** The bytes a key adds to its runs: `count` runs over `count` keys against the same runs without flow control. */
async function bytesPerKeyOver(count: number, key: (i: number) => string): Promise<number> {
  const plain = await emitInto(uniquePrefix('flowplain1'), Plain, count, key);
  const keyed = await emitInto(uniquePrefix('flowkeyed1'), Keyed, count, key);
  return (keyed.bytes - plain.bytes) / count;
}

async function expectNoSlowFcall(): Promise<void> {
  if (PROFILE) {
    console.log(JSON.stringify(await fcallProfile(suite.direct), null, 1));
    return;
  }
  expect((await unexplainedSlowFcalls(suite.direct)).map((entry) => `${entry.args[1]} ${entry.micros} µs`)).toEqual([]);
}

/** Keys of a prefix matching `pattern` (SCAN: the keyspace holds 100,000 runs). */
async function scanKeys(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await suite.direct.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000);
    found.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

/** The flow-control state left under a prefix: key state, held sets, rate logs, and held counts other than 0. */
async function flowStateLeft(prefix: string): Promise<string[]> {
  const left = [...(await scanKeys(`{${prefix}:*}:f:*`)), ...(await scanKeys(`{${prefix}:*}:fh:*`)), ...(await scanKeys(`{${prefix}:*}:fr:*`))];
  for (const key of await scanKeys(`{${prefix}:*}:hb:*`)) {
    const counts = await suite.direct.hgetall(key);
    if (Object.values(counts).some((v) => Number(v) !== 0)) left.push(`${key} ${JSON.stringify(counts)}`);
  }
  return left;
}

/**
 * The Redis commands each of `runs` claims of 10 runs does inside its FCALL (MONITOR lists them after the
 * call), claimed as a worker of 'scale-keyed' claims them and given back at once (wf1_release keeps their slots).
 */
async function claimCommands(root: string, runs: number): Promise<number[]> {
  const spec = `0f,3,0,${'scale-keyed'.length}:scale-keyed`;
  const seen = await monitorCommands(
    suite.redis.url,
    async () => {
      for (let i = 0; i < runs; i += 1) {
        const reply = (await suite.direct.fcall('wf1_claim', 1, root, 'probe', '10f', 30_000, `probe${i}`, 86_400_000, spec)) as unknown[];
        // flat: server time, then per run its head (id, token, ...), input, error, n and n step elements
        const tokens: string[] = [];
        for (let at = 1; at < reply.length; at += 4 + Number(reply[at + 3])) tokens.push(...String(reply[at]).split('\n').slice(0, 2));
        expect(tokens).toHaveLength(20);
        expect(await suite.direct.fcall('wf1_release', 1, root, 'probe', ...tokens)).toBe(10);
      }
    },
    (commands) => fcallsWithWork(commands).filter((call) => call.fn === 'wf1_release').length === runs,
  );
  return fcallsWithWork(seen).filter((call) => call.fn === 'wf1_claim').map((call) => call.commands);
}

describe(`flow control at ${N.toLocaleString('en-US')} runs over ${KEYS.toLocaleString('en-US')} keys (limit 1)`, () => {
  const prefix = uniquePrefix('flowscale');
  const root = `{${prefix}:default:0}`;
  let producer: TestApp;

  beforeAll(async () => {
    if (suite.redis.server) prioritize(suite.redis.server.pid);
    Logger.overrideLogger(['error']);
    effects = suite.direct;
    log = prefix;
    producer = await startApp({ connection: suite.redis.url, prefix, worker: false, cron: false }, [Keyed, Plain]);
    suite.apps.push(producer);
  }, 60_000);

  afterAll(() => {
    Logger.overrideLogger(false);
  });

  it(`emitted with no worker: ${KEYS.toLocaleString('en-US')} runs ready, the rest held, a key's state within the doc's bytes, no FCALL over 5 ms`, async () => {
    await startSlowlog(suite.direct, PROFILE ? 0 : 5_000);
    // Each keyed emit against the same runs with the same inputs and no flow control, in a prefix of their
    // own: what flow control adds. First a key with one run (its state alone), then the suite's 10 runs a key.
    const one = await bytesPerKeyOver(KEYS, (i) => `o${i}`);
    const plain = await emitInto(uniquePrefix('flowplain'), Plain, N, keyOf);
    const keyed = await emitAll((i) => producer.client.emit(Keyed, { k: keyOf(i) }), N);
    await expectNoSlowFcall();

    expect(await suite.direct.zcard(`${root}:q:scale-keyed`)).toBe(KEYS);
    expect(await statusIndexSize(suite.direct, root, 'scale-keyed', 'queued')).toBe(N);
    const stats = (await producer.client.getStats()).workflows.find((w) => w.name === 'scale-keyed');
    // queueDepth counts the ready set; a held run is 'queued' and counted under heldBack
    expect(stats).toMatchObject({ counts: { queued: N }, queueDepth: KEYS, heldBack: { concurrency: N - KEYS } });
    expect(await scanKeys(`${root}:f:scale-keyed:*`)).toHaveLength(KEYS);
    expect(await scanKeys(`${root}:fh:scale-keyed:*`)).toHaveLength(PER_KEY > 1 ? KEYS : 0);

    const perKey = (keyed.bytes - plain.bytes) / KEYS;
    console.log(
      `memory: ${KEYS} keys of 1 run: ${Math.round(one)} bytes a key more than as plain runs; ` +
        `${N} plain runs ${Math.round(plain.bytes / N)} bytes a run (emitted in ${plain.ms} ms), keyed ${Math.round(keyed.bytes / N)} (in ${keyed.ms} ms): ` +
        `a key of ${PER_KEY} runs (1 ready) ${Math.round(perKey)} bytes beyond its runs as plain runs`,
    );
    if (N === 100_000 && KEYS === 10_000) {
      expect(Math.abs(one - DOC_BYTES_PER_KEY_ONE_RUN)).toBeLessThanOrEqual(BYTES_PER_KEY_TOLERANCE);
      expect(Math.abs(perKey - DOC_BYTES_PER_KEY_TEN_RUNS)).toBeLessThanOrEqual(BYTES_PER_KEY_TOLERANCE);
    }
  }, 300_000);

  it(`a claim does the same Redis commands with ${(N - KEYS).toLocaleString('en-US')} runs held as with a backlog of 10`, async () => {
    const large = await claimCommands(root, 5);
    // a backlog of 10 runs over 10 keys, none held
    const smallPrefix = uniquePrefix('flowsmall');
    const smallRoot = `{${smallPrefix}:default:0}`;
    const smallApp = await startApp({ connection: suite.redis.url, prefix: smallPrefix, worker: false, cron: false }, [Keyed]);
    suite.apps.push(smallApp);
    await Promise.all(Array.from({ length: 10 }, (_, i) => smallApp.client.emit(Keyed, { k: `s${i}` })));
    const small = await claimCommands(smallRoot, 5);
    await smallApp.close();
    console.log(`commands inside a claim of 10 runs: ${large.join(', ')} with ${N - KEYS} held; ${small.join(', ')} with a backlog of 10`);
    expect(large).toHaveLength(5);
    // claim by claim (the first claim of a shard does one command more than the next ones)
    expect(large).toEqual(small);
  }, 60_000);

  it('one worker (concurrency 50) drains every run, never two of a key at once, leaving no key state, no FCALL over 5 ms', async () => {
    await startSlowlog(suite.direct, PROFILE ? 0 : 5_000);
    const started = Date.now();
    const worker = await startApp({ connection: suite.redis.url, prefix, cron: false, worker: { concurrency: 50, reaperIntervalMs: 100 } }, [Keyed]);
    suite.apps.push(worker);
    await waitFor(async () => (await statusIndexSize(suite.direct, root, 'scale-keyed', 'succeeded')) === N, 240_000, 250);
    const took = Date.now() - started;
    await worker.close();
    await expectNoSlowFcall();
    console.log(`drain: ${N} runs in ${took} ms (${Math.round((N / took) * 1000)} runs/s)`);

    expect(Number(await suite.direct.get(`${prefix}:ran`))).toBe(N);
    expect(Number(await suite.direct.get(`${prefix}:overlaps`))).toBe(0);
    expect(await suite.direct.zcard(`${root}:q:scale-keyed`)).toBe(0);
    expect(await flowStateLeft(prefix)).toEqual([]);
  }, 300_000);
});
