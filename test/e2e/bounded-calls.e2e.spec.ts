/**
 * ARCHITECTURE.md section 7 past the chunking thresholds, at sizes that run in seconds (test/slow runs them
 * at 10,000): a fan-out of children, concurrent steps, an event to many waiters and a cancel of a parent with
 * many children complete with the right results, and no FCALL carries or does work that grows with them.
 * A crash between a park's chunks leaves no orphan and creates no child twice.
 */
import { describe, expect, it } from '@jest/globals';
import { KeySpace } from '../../lib/redis/keys.js';
import { uniquePrefix } from '../support/redis-server.js';
import { BusyWorkflow, FanWorkflow, SIZED_WORKFLOWS, StepsWorkflow, StuckFanWorkflow, WaiterWorkflow } from '../support/sized-workflows.js';
import { fcallsWithWork, monitorCommands, type MonitoredCall } from '../support/redis-monitor.js';
import { runsInShard, startApp, statusIndexSize, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';

/** Past every threshold: 32 waits per park call, 64 records per completion, 64 waiters or children per page. */
const N = 300;
const STEPS = 400;
/** Arguments plus commands run inside, for any one FCALL: a page of 32 children is about 560; on main a park
 *  of 300 children carried 4,500 arguments, and an event to 300 waiters ran 900 commands. */
const MAX_CALL_WORK = 700;

const suite = useSuiteRedis();
const sumOf = (n: number, factor: number) => (factor * n * (n - 1)) / 2;

async function startSuiteApp(prefix: string, succeededRetentionMs?: number): Promise<TestApp> {
  const app = await startApp(
    {
      connection: suite.redis.url,
      prefix,
      worker: { concurrency: 20, reaperIntervalMs: 20 },
      ...(succeededRetentionMs ? { retention: { succeededMs: succeededRetentionMs } } : {}),
    },
    SIZED_WORKFLOWS,
  );
  suite.apps.push(app);
  return app;
}

/** Runs `during` under MONITOR and returns the FCALL that did the most work. */
async function largestCall(during: () => Promise<void>): Promise<MonitoredCall> {
  const calls = fcallsWithWork(await monitorCommands(suite.redis.url, during));
  return calls.reduce((a, b) => (b.args + b.commands > a.args + a.commands ? b : a));
}

const work = (call: MonitoredCall) => `${call.fn}: ${call.args} arguments, ${call.commands} commands`;

describe('the common case below the thresholds', () => {
  it('a fan-out of 3 children parks in one call and its parent completes in the calls it always took', async () => {
    const prefix = uniquePrefix('bce-small');
    const app = await startSuiteApp(prefix);
    await app.client.run(FanWorkflow, { n: 3 }, { timeoutMs: 30_000 });
    let output: unknown;
    const seen = await monitorCommands(suite.redis.url, async () => {
      output = await app.client.run(FanWorkflow, { n: 3 }, { timeoutMs: 30_000 });
    });
    expect(output).toEqual({ count: 3, sum: 6 });
    const byFunction: Record<string, number> = {};
    const commands: Record<string, number> = {};
    for (const call of fcallsWithWork(seen)) {
      if (call.fn === 'wf1_tick' || call.fn === 'wf1_worker_beat') continue;
      byFunction[call.fn] = (byFunction[call.fn] ?? 0) + 1;
      commands[call.fn] = (commands[call.fn] ?? 0) + call.commands;
    }
    console.log(`fan-out of 3: FCALLs ${JSON.stringify(byFunction)}, commands run inside them ${JSON.stringify(commands)}`);
    expect(byFunction.wf1_park).toBe(1);
    expect(byFunction.wf1_park_stage).toBeUndefined();
    expect(byFunction.wf1_many).toBeUndefined();
  }, 60_000);
});

describe('bounded calls past the chunking thresholds', () => {
  it(`a Promise.all of ${N} children completes, each child created once, in calls of bounded work`, async () => {
    const prefix = uniquePrefix('bce-fan');
    const app = await startSuiteApp(prefix);
    let output: unknown;
    const largest = await largestCall(async () => {
      output = await app.client.run(FanWorkflow, { n: N }, { timeoutMs: 60_000 });
    });
    expect(output).toEqual({ count: N, sum: sumOf(N, 2) });
    expect(await runsInShard(suite.direct, `{${prefix}:default:0}`, 'sized-kid')).toBe(N);
    expect(args(largest)).toBeLessThanOrEqual(MAX_CALL_WORK);
  }, 90_000);

  // 400: on main the completion carried every record, 805 arguments
  it(`a Promise.all of ${STEPS} steps completes with every result, in calls of bounded work`, async () => {
    const prefix = uniquePrefix('bce-steps');
    const app = await startSuiteApp(prefix);
    let output: unknown;
    const largest = await largestCall(async () => {
      output = await app.client.run(StepsWorkflow, { n: STEPS }, { timeoutMs: 60_000 });
    });
    expect(output).toEqual({ count: STEPS, sum: sumOf(STEPS, 1) });
    expect(args(largest)).toBeLessThanOrEqual(MAX_CALL_WORK);
  }, 90_000);

  it(`an event reaches ${N} waiters, in calls of bounded work`, async () => {
    const prefix = uniquePrefix('bce-event');
    const app = await startSuiteApp(prefix);
    const handles = await Promise.all(Array.from({ length: N }, () => app.client.emit(WaiterWorkflow, { key: 'k' })));
    await waitFor(async () => (await statusIndexSize(suite.direct, `{${prefix}:default:0}`, 'sized-waiter', 'waiting')) === N, 30_000);
    let sent = 0;
    const largest = await largestCall(async () => {
      sent = await app.client.sendEvent('go', { ok: true }, { key: 'k' });
      await Promise.all(handles.map((handle) => handle.result({ timeoutMs: 30_000 })));
    });
    expect(sent).toBe(N);
    for (const handle of handles) expect(await handle.result()).toEqual({ ok: true });
    expect(args(largest)).toBeLessThanOrEqual(MAX_CALL_WORK);
  }, 90_000);

  it(`a large payload reaches ${N} waiters kept once in their shard, and goes with the last of them`, async () => {
    const prefix = uniquePrefix('bce-shared');
    const app = await startSuiteApp(prefix, 3_000);
    const root = `{${prefix}:default:0}`;
    const handles = await Promise.all(Array.from({ length: N }, () => app.client.emit(WaiterWorkflow, { key: 'big' })));
    await waitFor(async () => (await statusIndexSize(suite.direct, root, 'sized-waiter', 'waiting')) === N, 30_000);
    const payload = { blob: 'z'.repeat(4_000) };
    expect(await app.client.sendEvent('go', payload, { key: 'big' })).toBe(N);
    for (const handle of handles) expect(await handle.result({ timeoutMs: 30_000 })).toEqual(payload);
    const steps = await app.client.getRunSteps(handles[0].id);
    expect(steps.find((step) => step.name === 'go')?.result).toEqual(payload);
    // one copy in the shard; each run's record names it
    const shared = await keysMatching(`${root}:evp:*`);
    expect(shared).toHaveLength(1);
    const record = (await suite.direct.hvals(`${root}:s:${handles[0].id}`))[0];
    expect(record.length).toBeLessThan(1_000);
    // the runs expire after 3 s: the payload goes with the last of them
    await waitFor(async () => (await suite.direct.exists(shared[0])) === 0, 30_000, 200);
    expect(await suite.direct.hlen(`${root}:evr`)).toBe(0);
  }, 90_000);

  it('a worker executing 150 runs renews their leases in calls of at most 64 runs', async () => {
    const prefix = uniquePrefix('bce-leases');
    const app = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 150, leaseMs: 600, reaperIntervalMs: 20 } }, SIZED_WORKFLOWS);
    suite.apps.push(app);
    const seen = await monitorCommands(suite.redis.url, async () => {
      const handles = await Promise.all(Array.from({ length: 150 }, () => app.client.emit(BusyWorkflow, { ms: 1_000 })));
      for (const handle of handles) expect(await handle.result({ timeoutMs: 30_000 })).toBe(1_000);
    });
    const heartbeats = fcallsWithWork(seen).filter((call) => call.fn === 'wf1_heartbeat');
    expect(heartbeats.length).toBeGreaterThan(0);
    // FCALL, the function, the key count, the key, the lease, then an id and a token per run
    expect(Math.max(...heartbeats.map((call) => (call.args - 5) / 2))).toBeLessThanOrEqual(64);
  }, 60_000);

  it(`canceling a parent with ${N} children cancels every child`, async () => {
    const prefix = uniquePrefix('bce-cancel');
    const app = await startSuiteApp(prefix);
    const root = `{${prefix}:default:0}`;
    const parent = await app.client.emit(StuckFanWorkflow, { n: N });
    await waitFor(async () => (await statusIndexSize(suite.direct, root, 'sized-stuck-kid', 'waiting')) === N, 30_000);
    const largest = await largestCall(async () => {
      expect(await app.client.cancelRun(parent.id)).toBe(true);
    });
    expect(await statusIndexSize(suite.direct, root, 'sized-stuck-kid', 'canceled')).toBe(N);
    expect(await suite.direct.zcard(`${root}:cascade`)).toBe(0);
    expect(args(largest)).toBeLessThanOrEqual(MAX_CALL_WORK);
  }, 90_000);
});

async function keysMatching(pattern: string): Promise<string[]> {
  const found: string[] = [];
  for (let cursor = '0'; ; ) {
    const [next, page] = await suite.direct.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    found.push(...page);
    if ((cursor = next) === '0') return found;
  }
}

function args(call: MonitoredCall): number {
  if (call.args + call.commands > MAX_CALL_WORK) console.log(`largest call: ${work(call)}`);
  return call.args + call.commands;
}

describe('a park in chunks', () => {
  it('counts a child that finished while its parent was still staging, and wakes the parent after the last', async () => {
    const prefix = uniquePrefix('bce-staged');
    const keys = new KeySpace(prefix);
    const shard = { queue: 'default', partition: 0 };
    const root = keys.shardRoot(shard);
    const n = 40;
    const parentId = keys.newRunId(shard);
    await suite.direct.call('FUNCTION', 'LOAD', 'REPLACE', (await import('../../lib/redis/lua-library.js')).loadLuaLibrary().code);
    await suite.direct.fcall('wf1_emit', 1, root, parentId, 'sized-fan', 'default', JSON.stringify({ n }), 0, '', '', '', '', '', '', '');
    const claimed = (await suite.direct.fcall('wf1_claim', 1, root, 'a-worker', '1f', 30_000, 'c0', 1000, '0,3,0,9:sized-fan')) as string[];
    const token = claimed[1].split('\n')[1];
    const childId = (i: number) => keys.derivedRunId(parentId, `${parentId}|${i}:kid|0`, shard);
    const waits = (from: number, to: number) => {
      const args: (string | number)[] = [];
      for (let i = from; i < to; i += 1) {
        const field = `${i}:kid`;
        args.push('spawn', field, `${childId(i)}||sized-kid`, childId(i), 'sized-kid', 'default', JSON.stringify({ i }), 0, '', '', '', parentId, field, root, '');
      }
      return args;
    };
    // the way WorkflowStore.park sends 40 waits: 8 staged, then the park with the last 32
    expect(await suite.direct.fcall('wf1_park_stage', 1, root, parentId, token, ...waits(0, 8))).toEqual([1]);
    const record = JSON.stringify({ k: 'child', f: 'child:sized-kid', id: childId(0), s: 'succeeded', r: 0 });
    expect(await suite.direct.fcall('wf1_deliver', 1, root, parentId, '0:kid', 'S', record, 'child')).toBe(1);
    expect(await suite.direct.fcall('wf1_park', 1, root, parentId, token, '{}', 'staged', '', '', ...waits(8, n))).toEqual([1, -1]);
    expect(await suite.direct.hget(`${root}:r:${parentId}`, 'wn')).toBe(String(n - 1));
    const app = await startSuiteApp(prefix);
    expect(await app.client.handle(parentId).result({ timeoutMs: 30_000 })).toEqual({ count: n, sum: sumOf(n, 2) });
  }, 60_000);
});

describe('a crash between the chunks of a park', () => {
  it('leaves no orphan and creates no child twice: the next attempt stages every wait again', async () => {
    const prefix = uniquePrefix('bce-crash');
    const keys = new KeySpace(prefix);
    const shard = { queue: 'default', partition: 0 };
    const root = keys.shardRoot(shard);
    // A worker (played here with the library's own calls) claims the parent, stages its first 64 children in
    // two chunks, and dies before the rest and the park.
    const parentId = keys.newRunId(shard);
    await suite.direct.call('FUNCTION', 'LOAD', 'REPLACE', (await import('../../lib/redis/lua-library.js')).loadLuaLibrary().code);
    await suite.direct.fcall('wf1_emit', 1, root, parentId, 'sized-fan', 'default', JSON.stringify({ n: N }), 0, '', '', '', '', '', '', '');
    const claimed = (await suite.direct.fcall('wf1_claim', 1, root, 'crashed-worker', '1f', 300, 'c0', 1000, '0,3,0,9:sized-fan')) as string[];
    const token = claimed[1].split('\n')[1];
    const childId = (i: number) => keys.derivedRunId(parentId, `${parentId}|${i}:kid|0`, shard);
    for (const first of [0, 32]) {
      if (first === 32) {
        // child 0 finishes while its parent is still staging: its field leaves the awaited set and 'wn' counts it done
        const record = JSON.stringify({ k: 'child', f: 'child:sized-kid', id: childId(0), s: 'succeeded', r: 0 });
        expect(await suite.direct.fcall('wf1_deliver', 1, root, parentId, '0:kid', 'S', record, 'child')).toBe(1);
      }
      const args: (string | number)[] = [parentId, token];
      for (let i = first; i < first + 32; i += 1) {
        const field = `${i}:kid`;
        args.push('spawn', field, `${childId(i)}||sized-kid`, childId(i), 'sized-kid', 'default', JSON.stringify({ i }), 0, '', '', '', parentId, field, root, '');
      }
      expect(await suite.direct.fcall('wf1_park_stage', 1, root, ...args)).toEqual([1]);
      // a chunk sent again (ioredis resends a call whose reply was lost) creates and counts nothing twice
      expect(await suite.direct.fcall('wf1_park_stage', 1, root, ...args)).toEqual([1]);
    }
    expect(await runsInShard(suite.direct, root, 'sized-kid')).toBe(64);
    expect(await suite.direct.hget(`${root}:r:${parentId}`, 'wn')).toBe('63');
    // A live worker takes the parent over once its lease has expired.
    const app = await startSuiteApp(prefix);
    expect(await app.client.handle(parentId).result({ timeoutMs: 60_000 })).toEqual({ count: N, sum: sumOf(N, 2) });
    expect(await runsInShard(suite.direct, root, 'sized-kid')).toBe(N);
    expect(await statusIndexSize(suite.direct, root, 'sized-kid', 'succeeded')).toBe(N);
    // every run hash is a run of an index: N children and their parent
    expect(await keysMatching(`${root}:r:*`)).toHaveLength(N + 1);
    expect((await app.client.getRunHistory(parentId)).some((entry) => entry.type === 'lease-expired')).toBe(true);
  }, 90_000);
});
