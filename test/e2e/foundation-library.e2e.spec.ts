/**
 * The versioned Function library: loaded on init only when the loaded build is older (never
 * downgraded), reloaded after FUNCTION FLUSH by the next call; Redis older than 7.0 and bad options
 * fail init with one clear error and leave no connection open; several apps work side by side.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, WorkflowConfigurationError, type WorkflowContext } from '../../lib/index.js';
import { FunctionLoader } from '../../lib/redis/function-loader.js';
import { KeySpace } from '../../lib/redis/keys.js';
import { libraryHash, loadLuaLibrary } from '../../lib/redis/lua-library.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { startFakeOldRedis } from '../support/fake-old-redis.js';
import { monitorCommands, type MonitoredCommand } from '../support/redis-monitor.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('lib-wf')
@Injectable()
class LibraryWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const doubled = await ctx.step.run('double', async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return ctx.input.n * 2;
    });
    return { doubled };
  }
}

@Workflow('two\nlines')
@Injectable()
class NewlineNameWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('add', () => ctx.input.n + 1);
  }
}

@Workflow('lib-wf')
@Injectable()
class DuplicateNameWorkflow {
  async execute() {
    return 1;
  }
}

async function clientCount(redis: Redis): Promise<number> {
  return String(await redis.call('CLIENT', 'LIST')).trim().split('\n').length;
}

async function loadedLibraries(redis: Redis): Promise<{ name: string; functions: string[]; code: string }[]> {
  const list = (await redis.call('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][];
  return list.map((entry) => {
    const fields = new Map<string, unknown>();
    for (let i = 0; i < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1]);
    const functions = (fields.get('functions') as unknown[][]).map((f) => String(f[1]));
    return { name: String(fields.get('library_name')), functions, code: String(fields.get('library_code')) };
  });
}

async function functionLoads(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  return Number(/cmdstat_function\|load:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describe('Function library and module init (e2e, real Redis)', () => {
  let redis: TestRedis;
  let direct: Redis;
  const apps: TestApp[] = [];
  const library = loadLuaLibrary();
  const app = async (prefix: string, worker: false | { concurrency?: number } = { concurrency: 5 }) => {
    const started = await startApp({ connection: redis.url, prefix, worker: worker && { ...worker, reaperIntervalMs: 20 } }, [LibraryWorkflow]);
    apps.push(started);
    return started;
  };
  /** wf1_emit called directly: run `id` of `workflow`, queued at once in the shard `root` (no priority, delay, key or parent). */
  const emitDirect = (root: string, id: string, workflow: string, input = '{}') =>
    direct.call('FCALL', 'wf1_emit', 1, root, id, workflow, 'default', input, 0, '', '', '', '', '', '', '');

  beforeAll(async () => {
    redis = await redisUrlForTests();
    direct = redisFor(redis.url);
  });

  afterAll(async () => {
    for (const a of apps) await a.close();
    direct?.disconnect();
    await redis?.stop();
  });

  it('loads the versioned library on init: library wf1, every function wf1_*, wf1_version = the build', async () => {
    await direct.call('FUNCTION', 'FLUSH');
    const a = await app(uniquePrefix('lib'));
    const [loaded] = await loadedLibraries(direct);
    expect(loaded.name).toBe('wf1');
    expect(loaded.functions.length).toBeGreaterThanOrEqual(10);
    for (const fn of loaded.functions) expect(fn).toMatch(/^wf1_/);
    expect(loaded.functions).toEqual(expect.arrayContaining(['wf1_version', 'wf1_emit', 'wf1_claim', 'wf1_commit_step', 'wf1_complete', 'wf1_fail', 'wf1_heartbeat', 'wf1_release', 'wf1_tick']));
    expect(Number(await direct.call('FCALL_RO', 'wf1_version', 0))).toBe(library.build);
    expect(library.build).toBeGreaterThanOrEqual(1);
    await a.close();
  });

  it('loads only when the loaded build is older: same build is kept, an older one replaced, a newer one never downgraded', async () => {
    await app(uniquePrefix('lib'), false);
    const loadsBefore = await functionLoads(direct);
    await app(uniquePrefix('lib'), false);
    expect(await functionLoads(direct)).toBe(loadsBefore);

    const withBuild = (build: number) => library.code.replace(/local BUILD = \d+/, `local BUILD = ${build}`);
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', withBuild(library.build - 1));
    await app(uniquePrefix('lib'), false);
    expect(Number(await direct.call('FCALL_RO', 'wf1_version', 0))).toBe(library.build);

    // loaded by a newer release of the same app, which records its code's hash (see security-library)
    const newer = withBuild(library.build + 100);
    const prefix = uniquePrefix('lib');
    await new FunctionLoader(direct, new KeySpace(prefix), { library: { ...library, build: library.build + 100, code: newer, hash: libraryHash(newer) } }).ensureLoaded();
    const loadsWithNewer = await functionLoads(direct);
    const b = await app(prefix);
    expect(Number(await direct.call('FCALL_RO', 'wf1_version', 0))).toBe(library.build + 100);
    expect((await loadedLibraries(direct))[0].code).toBe(newer);
    expect(await functionLoads(direct)).toBe(loadsWithNewer);
    // A newer build serves this older package too (same wf1 schema).
    expect(await b.client.run(LibraryWorkflow, { n: 2 }, { timeoutMs: 10_000 })).toEqual({ doubled: 4 });
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', library.code);
  });

  it('after FUNCTION FLUSH the next call reloads the library and succeeds, from emit and from the worker', async () => {
    const a = await app(uniquePrefix('lib'));
    expect(await a.client.run(LibraryWorkflow, { n: 1 }, { timeoutMs: 10_000 })).toEqual({ doubled: 2 });

    await direct.call('FUNCTION', 'FLUSH');
    expect(await loadedLibraries(direct)).toEqual([]);
    expect(await a.client.run(LibraryWorkflow, { n: 3 }, { timeoutMs: 10_000 })).toEqual({ doubled: 6 });
    expect((await loadedLibraries(direct))[0].name).toBe('wf1');

    // A delayed run: the library vanishes before it is due, so the worker's own calls must reload it.
    const delayed = await a.client.emit(LibraryWorkflow, { n: 4 }, { delayMs: 300 });
    await direct.call('FUNCTION', 'FLUSH');
    expect(await delayed.result({ timeoutMs: 10_000 })).toEqual({ doubled: 8 });
    expect(Number(await direct.call('FCALL_RO', 'wf1_version', 0))).toBe(library.build);
  });

  it('refuses a Redis older than 7.0 with one clear error and closes the connections it opened', async () => {
    const fake = await startFakeOldRedis('6.2.0');
    try {
      const error = await startApp({ connection: fake.url, prefix: uniquePrefix('old') }, [LibraryWorkflow]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkflowConfigurationError);
      expect((error as Error).message).toMatch(/Redis 6\.2\.0 .* too old: .*needs Redis 7\.0 or newer/);
      expect(fake.totalConnections()).toBeGreaterThanOrEqual(1);
      await waitFor(() => fake.openConnections() === 0, 3_000);
      expect(fake.commands.some((c) => /^FUNCTION|^FCALL/i.test(c))).toBe(false);
    } finally {
      await fake.close();
    }
  });

  it('a failed init (bad options, duplicate workflow names) throws a clear error and leaves no connection open', async () => {
    const baseline = await clientCount(direct);
    await expect(startApp({ connection: redis.url, prefix: 'bad prefix!' }, [LibraryWorkflow])).rejects.toThrow(/Invalid prefix "bad prefix!"/);
    await expect(startApp({ connection: redis.url, prefix: uniquePrefix('bad'), worker: { concurrency: 0 } }, [LibraryWorkflow])).rejects.toThrow(
      /worker.concurrency must be a number >= 1/,
    );
    await expect(startApp({ connection: 'http://localhost:6379', prefix: uniquePrefix('bad') }, [LibraryWorkflow])).rejects.toThrow(/not a redis:\/\//);
    const duplicate = await startApp({ connection: redis.url, prefix: uniquePrefix('bad') }, [LibraryWorkflow, DuplicateNameWorkflow]).catch((e: unknown) => e);
    expect(duplicate).toBeInstanceOf(WorkflowConfigurationError);
    expect((duplicate as Error).message).toMatch(/Two providers declare workflow 'lib-wf'/);
    await waitFor(async () => (await clientCount(direct)) === baseline, 3_000);
  });

  it('several apps with the module in one process work side by side, each with its own connections', async () => {
    const prefix = uniquePrefix('side');
    const baseline = await clientCount(direct);
    const a = await app(prefix, { concurrency: 2 });
    const b = await app(prefix, { concurrency: 2 });
    expect(await clientCount(direct)).toBe(baseline + 6); // each: commands, pub/sub, the worker's transitions
    const handles = await Promise.all(Array.from({ length: 12 }, (_, n) => (n % 2 ? a : b).client.emit(LibraryWorkflow, { n })));
    const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 })));
    expect(outputs).toEqual(Array.from({ length: 12 }, (_, n) => ({ doubled: n * 2 })));
    const workers = new Set<string>();
    for (const h of handles) for (const e of await a.client.getRunHistory(h.id)) if (e.type === 'claimed') workers.add(e.workerId!);
    expect(workers.size).toBe(2);

    await a.close();
    expect(await clientCount(direct)).toBe(baseline + 3);
    expect(await b.client.run(LibraryWorkflow, { n: 50 }, { timeoutMs: 10_000 })).toEqual({ doubled: 100 });
  });

  it('a claim asked for packed entries gets them; a caller of an older build (a bare count) gets the entries it always got', async () => {
    await app(uniquePrefix('lib'), false); // loads this build
    const root = `{${uniquePrefix('pk')}:default:0}`;
    const workflow = 'odd\nname'; // a newline in the name: it is the head's last part
    const emit = (id: string) => emitDirect(root, id, workflow, '{"n":1}');
    await emit('run-a');
    await emit('run-b');
    const claim = (count: string, claimId: string) =>
      direct.call('FCALL', 'wf1_claim', 1, root, 'w1', count, 30_000, claimId, 86_400_000, workflow, 0, 3, 0) as Promise<unknown[]>;

    const [, packed] = await claim('1p', 'c1');
    const [head, ...rest] = packed as [string, ...unknown[]];
    // id, token, parent, finalizing, attempt, maxAttempts, createdAt, epoch, then the workflow
    expect(head.split('\n')).toEqual(['run-a', '1:c1', '', '', '1', '3', expect.stringMatching(/^\d{13}$/), '0', 'odd', 'name']);
    expect(rest).toEqual(['{"n":1}', '', []]);

    // The worker reads the packed head back: a workflow whose name has a newline runs.
    const named = await startApp({ connection: redis.url, prefix: uniquePrefix('nl'), worker: { concurrency: 2 } }, [NewlineNameWorkflow]);
    apps.push(named);
    expect(await named.client.run(NewlineNameWorkflow, { n: 1 }, { timeoutMs: 10_000 })).toBe(2);
    const [, unpacked] = await claim('1', 'c2');
    expect(unpacked).toEqual(['run-b', workflow, '{"n":1}', 1, 3, '1:c2', expect.any(Number), '', '', '', [], 0]);
  });

  it('a claim asked for flat entries gets them in the reply itself, as does a completion that refills its slot, after its hand-off and the hand-off\'s length', async () => {
    await app(uniquePrefix('lib'), false); // loads this build
    const root = `{${uniquePrefix('fl')}:default:0}`;
    const parentRoot = `{${uniquePrefix('fp')}:default:0}`;
    const workflow = 'flat-wf';
    await emitDirect(root, 'run-a', workflow, '{"n":1}');
    await emitDirect(root, 'run-b', workflow, '{"n":2}');
    const claimArgs = (count: string, claimId: string) => ['w1', count, 30_000, claimId, 86_400_000, `0,3,0,${workflow.length}:${workflow}`];
    const head = (id: string, token: string) => `${id}\n${token}\n\n\n1\n3\n`;

    // server now, then per run: head, input, error, how many step elements follow, the steps
    const claimed = (await direct.call('FCALL', 'wf1_claim', 1, root, ...claimArgs('1f', 'c1'))) as unknown[];
    expect(claimed).toEqual([expect.any(Number), expect.stringContaining(head('run-a', '1:c1')), '{"n":1}', '', 0]);

    // a completion that refills its slot: done, no hand-off (0), server now, then the runs claimed
    const refilled = (await direct.call('FCALL', 'wf1_complete', 1, root, 'run-a', '1:c1', '"done"', 86_400_000, 0, ...claimArgs('2f', 'c2'))) as unknown[];
    expect(refilled).toEqual([1, 0, expect.any(Number), expect.stringContaining(head('run-b', '1:c2')), '{"n":2}', '', 0]);
    expect(await direct.hget(`${root}:r:run-a`, 'st')).toBe('succeeded');

    // a run claimed again after a step: its steps come with their count
    await direct.call('FCALL', 'wf1_commit_step', 1, root, 'run-b', '1:c2', '0:s', 'S', '{"k":"s","a":1,"st":1,"r":2}', '0', '', '');
    await direct.call('FCALL', 'wf1_release', 1, root, 'test', 'run-b', '1:c2');
    const again = (await direct.call('FCALL', 'wf1_claim', 1, root, ...claimArgs('1f', 'c3'))) as unknown[];
    expect(again).toEqual([expect.any(Number), expect.stringContaining(head('run-b', '2:c3')), '{"n":2}', '', 2, '0:s', expect.stringMatching(/^\d+\|S\|\{"k":"s"/)]);

    // a child whose parent waits in another shard: the hand-off's six fields come first, with their count
    await direct.call('FCALL', 'wf1_emit', 1, root, 'child-1', workflow, 'default', '{}', 0, '', '', '', 'parent-1', '0:child', parentRoot, '');
    await direct.call('FCALL', 'wf1_complete', 1, root, 'run-b', '2:c3', '2', 86_400_000, 0);
    const child = (await direct.call('FCALL', 'wf1_claim', 1, root, ...claimArgs('1f', 'c4'))) as unknown[];
    expect(child[1]).toEqual(expect.stringContaining('child-1\n1:c4\nparent-1\n'));
    const handedOff = (await direct.call('FCALL', 'wf1_complete', 1, root, 'child-1', '1:c4', '7', 86_400_000, 0, ...claimArgs('1f', 'c5'))) as unknown[];
    expect(handedOff).toEqual([1, 6, parentRoot, 'parent-1', '0:child', 'S', expect.stringContaining('"r":7'), 'child-1', expect.any(Number)]);
  });

  it('a claim takes from the workflows in the order given: a limited one up to its room, the others from the first with runs', async () => {
    await app(uniquePrefix('lib'), false);
    const root = `{${uniquePrefix('cl')}:default:0}`;
    const emit = (id: string, workflow: string) => emitDirect(root, id, workflow);
    for (const id of ['b1', 'b2']) await emit(id, 'limited');
    for (const id of ['c1', 'c2', 'c3']) await emit(id, 'plain-c');
    await emit('d1', 'plain-d');
    const claim = (count: number, claimId: string, groups: (string | number)[]) =>
      direct.call('FCALL', 'wf1_claim', 1, root, 'w1', count, 30_000, claimId, 86_400_000, ...groups) as Promise<unknown[]>;
    const ids = (reply: unknown[]) => reply.slice(1).map((run) => (run as unknown[])[0]);
    const group = (name: string, limit = 0) => [name, limit, 1, 0];

    // an empty workflow first, then one limited to 1 run at a time, then two more
    const first = await claim(4, 'k1', [...group('empty-a'), ...group('limited', 1), ...group('plain-c'), ...group('plain-d')]);
    expect(ids(first)).toEqual(['b1', 'c1', 'c2', 'c3']);
    // 'limited' is at its limit; 'plain-d' comes before 'plain-c' now
    const second = await claim(2, 'k2', [...group('limited', 1), ...group('plain-d'), ...group('empty-a'), ...group('plain-c')]);
    expect(ids(second)).toEqual(['d1']);
    expect(await direct.zcard(`${root}:q:limited`)).toBe(1);

    // Empty ready sets cost no call of their own: one pop looks at all of them.
    await emit('c4', 'plain-c');
    let third: unknown[] = [];
    const seen = await monitorCommands(redis.url, async () => {
      third = await claim(1, 'k3', [...group('empty-a'), ...group('empty-b'), ...group('plain-d'), ...group('plain-c')]);
    });
    expect(ids(third)).toEqual(['c4']);
    // (the workers of this file's other apps claim in the same Redis: only this root's pops are the claim's)
    const pops = seen.filter((c) => c.source === 'lua' && /^Z(M)?POP/i.test(c.args[0]) && c.args.some((arg) => arg.startsWith(root)));
    expect(pops.map((c) => c.args.slice(0, 2))).toEqual([['ZMPOP', '4']]);
  });

  it('a claim takes its workflows packed in one argument, names of any characters included, as it takes the groups of 4 of older builds; the worker sends them packed', async () => {
    const prefix = uniquePrefix('pw');
    const started = await app(prefix, false);
    const root = `{${uniquePrefix('pw')}:default:0}`;
    const names = ['lim,1:x', 'plain,é:|2', 'plain-3'];
    const emit = (id: string, workflow: string) => emitDirect(root, id, workflow);
    for (const id of ['a1', 'a2']) await emit(id, names[0]);
    await emit('b1', names[1]);
    for (const id of ['c1', 'c2']) await emit(id, names[2]);
    // per workflow: maxConcurrency, maxAttempts, timeoutMs, the name's length in bytes, ':', the name
    const packed = (specs: [string, number, number][]) =>
      specs.map(([name, limit, attempts]) => `${limit},${attempts},0,${Buffer.byteLength(name)}:${name}`).join('');
    const claim = async (count: number, claimId: string, workflows: string) => {
      const reply = (await direct.call('FCALL', 'wf1_claim', 1, root, 'w1', count, 30_000, claimId, 86_400_000, workflows)) as unknown[][];
      return reply.slice(1).map((run) => [run[0], run[1], run[4]]);
    };

    // the limited workflow up to its room, then the others from the first with runs; maxAttempts as given
    expect(await claim(3, 'k1', packed([[names[0], 1, 4], [names[1], 0, 2], [names[2], 0, 3]]))).toEqual([
      ['a1', names[0], 4],
      ['b1', names[1], 2],
      ['c1', names[2], 3],
    ]);
    // The same text again (its plan is kept by the library), then another order of the same workflows.
    expect(await claim(3, 'k2', packed([[names[0], 1, 4], [names[1], 0, 2], [names[2], 0, 3]]))).toEqual([['c2', names[2], 3]]);
    await emit('c3', names[2]);
    expect(await claim(3, 'k3', packed([[names[2], 0, 5], [names[0], 0, 1]]))).toEqual([
      ['c3', names[2], 5],
      ['a2', names[0], 1],
    ]);
    await expect(direct.call('FCALL', 'wf1_claim', 1, root, 'w1', 1, 30_000, 'k4', 86_400_000, '1,1,0,9:short')).rejects.toThrow(/malformed workflow specs/);

    // The worker's own claims and completions carry one argument for its workflows.
    const worker = await startApp({ connection: redis.url, prefix, worker: { concurrency: 2, reaperIntervalMs: 20 } }, [LibraryWorkflow]);
    apps.push(worker);
    const seen = await monitorCommands(redis.url, async () => {
      expect(await started.client.run(LibraryWorkflow, { n: 4 }, { timeoutMs: 10_000 })).toEqual({ doubled: 8 });
    });
    const claims = seen.filter((c) => c.source !== 'lua' && c.args[0].toLowerCase() === 'fcall' && c.args[1] === 'wf1_claim');
    expect(claims.length).toBeGreaterThan(0);
    for (const c of claims) expect(c.args.slice(9)).toEqual(['0,3,0,6:lib-wf']); // maxAttempts 3 by default
  });

  it("a shard's lease set and a workflow's running index stay skiplists, their sentinel seen by no count, listing, claim limit or tick", async () => {
    const prefix = uniquePrefix('sk');
    const started = await app(prefix, false);
    const { keys, store } = started.moduleRef.get(WorkflowRedis);
    const shard = { queue: 'default', partition: 0 };
    const root = keys.shardRoot(shard);
    for (const id of ['r1', 'r2', 'r3']) await emitDirect(root, id, 'lim');
    // 'lim' runs at most 2 at a time; claims ask for packed entries: '<id>\n<token>\n...'
    const claim = async (count: number, claimId: string) => {
      const reply = (await direct.call('FCALL', 'wf1_claim', 1, root, 'w1', `${count}p`, 30_000, claimId, 86_400_000, '2,1,0,3:lim')) as unknown[][];
      return reply.slice(1).map((run) => String(run[0]).split('\n').slice(0, 2));
    };
    const first = await claim(1, 'k1');
    expect(first.map(([id]) => id)).toEqual(['r1']);
    expect(await direct.object('ENCODING', `${root}:leases`)).toBe('skiplist');
    expect(await direct.object('ENCODING', `${root}:st:lim:running`)).toBe('skiplist');
    // One run of 2 is executing: the sentinel does not count as a second.
    const second = await claim(5, 'k2');
    expect(second.map(([id]) => id)).toEqual(['r2']);
    expect(await claim(5, 'k3')).toEqual([]);
    expect(await store.readStatusCounts(shard, 'lim', ['queued', 'running'])).toEqual({ queued: 1, running: 2 });
    expect(await store.readRunIds(shard, 'lim', 'running', undefined, 10)).toEqual(['r2', 'r1']);
    expect(await store.readRunIds(shard, 'lim', undefined, undefined, 10)).toEqual(['r3', 'r2', 'r1']);

    // Both released: the two sets hold only their sentinel, which no reader sees and no tick waits for.
    const runs = [...first, ...second].flat();
    expect(await direct.call('FCALL', 'wf1_release', 1, root, 'test', ...runs)).toBe(2);
    expect(await direct.zcard(`${root}:leases`)).toBe(1);
    expect((await store.readCounts(shard, 'lim', ['queued', 'running'])).counts).toEqual([3, 0]);
    expect(await store.readRunIds(shard, 'lim', 'running', undefined, 10)).toEqual([]);
    expect(await store.readRunIds(shard, 'lim', undefined, undefined, 10)).toEqual(['r3', 'r2', 'r1']);
    await direct.del(`${root}:q:lim`); // nothing left to do in the shard: the tick has no next due time
    const [, nextDue] = (await direct.call('FCALL', 'wf1_tick', 1, root, 100)) as number[];
    expect(nextDue).toBe(-1);
  });

  it('a park that starts children creates each once: a child that exists already is left as it is', async () => {
    await app(uniquePrefix('lib'), false);
    const root = `{${uniquePrefix('sp')}:default:0}`;
    const emit = (id: string) => emitDirect(root, id, 'parent');
    const claimOne = async (claimId: string) => {
      const [, run] = (await direct.call('FCALL', 'wf1_claim', 1, root, 'w1', 1, 30_000, claimId, 86_400_000, 'parent', 0, 1, 0)) as unknown[][];
      return { id: String(run[0]), token: String(run[5]) };
    };
    const park = (parent: { id: string; token: string }, children: string[]) => {
      const args: (string | number)[] = [parent.id, parent.token, JSON.stringify({ children })];
      children.forEach((child, k) => {
        args.push('spawn', `0:child-${k}`, `${child}||leaf`);
        args.push(child, 'leaf', 'default', `{"k":${k}}`, 0, '', '', '', parent.id, `0:child-${k}`, root, '');
      });
      return direct.call('FCALL', 'wf1_park', 1, root, ...args);
    };
    await emit('p1');
    await emit('p2');
    const p1 = await claimOne('k1');
    const p2 = await claimOne('k2');
    const inPark = await monitorCommands(redis.url, async () => {
      expect(await park(p1, ['x1', 'x2'])).toEqual([1, -1]);
    });
    // one call per index and per step-records operation, not one per child
    const calls = (name: string, key: string) => inPark.filter((c) => c.source === 'lua' && c.args[0].toUpperCase() === name && c.args[1] === key).length;
    // one EXISTS of the children's run keys (and one of the shard's paused set, per claim: not per child)
    expect(inPark.filter((c) => c.source === 'lua' && c.args[0].toUpperCase() === 'EXISTS' && c.args.slice(1).some((k) => k.includes(':r:')))).toHaveLength(1);
    expect(calls('ZADD', `${root}:q:leaf`)).toBe(1);
    expect(calls('ZADD', `${root}:st:leaf:queued`)).toBe(1);
    expect(calls('HMGET', `${root}:s:p1`)).toBe(1);
    expect(calls('HSET', `${root}:s:p1`)).toBe(1);
    expect(calls('SADD', `${root}:ch:p1`)).toBe(1);
    expect(calls('DEL', `${root}:aw:p1`)).toBe(0);
    expect(await direct.hmget(`${root}:r:x1`, 'par', 'pf', 'st', 'in')).toEqual(['p1', '0:child-0', 'queued', '{"k":0}']);
    expect(await direct.zrange(`${root}:q:leaf`, '0', '-1')).toEqual(['x1', 'x2']);
    expect(await direct.zrange(`${root}:st:leaf:queued`, '0', '-1')).toEqual(['x1', 'x2']);
    expect(await direct.hgetall(`${root}:s:p1`)).toEqual({
      '0:child-0': expect.stringMatching(/^\d{13}\|W\|\{"k":"child","f":"child:leaf","s":"waiting","id":"x1"\}$/),
      '0:child-1': expect.stringMatching(/^\d{13}\|W\|\{"k":"child","f":"child:leaf","s":"waiting","id":"x2"\}$/),
    });
    expect((await direct.smembers(`${root}:ch:p1`)).sort()).toEqual(['x1', 'x2']);
    expect((await direct.smembers(`${root}:aw:p1`)).sort()).toEqual(['0:child-0', '0:child-1']);
    expect(await direct.hmget(`${root}:r:p1`, 'st', 'wn', 'ws')).toEqual(['waiting', '2', '1']);

    // p2 names x2 (which exists) and a new x3: x2 keeps its parent, x3 is created, nothing is indexed twice
    expect(await park(p2, ['x2', 'x3'])).toEqual([1, -1]);
    expect(await direct.hmget(`${root}:r:x2`, 'par', 'in')).toEqual(['p1', '{"k":1}']);
    expect(await direct.hmget(`${root}:r:x3`, 'par', 'in')).toEqual(['p2', '{"k":1}']);
    expect(await direct.zrange(`${root}:q:leaf`, '0', '-1')).toEqual(['x1', 'x2', 'x3']);
    expect(await direct.zcard(`${root}:st:leaf:queued`)).toBe(3);

    // p1 waits for its children only: the last one wakes it without touching a set or timer it has not got
    const [, ...leaves] = (await direct.call('FCALL', 'wf1_claim', 1, root, 'w1', 3, 30_000, 'k3', 86_400_000, 'leaf', 0, 1, 0)) as unknown[][];
    const complete = (run: unknown[]) => direct.call('FCALL', 'wf1_complete', 1, root, String(run[0]), String(run[5]), '1', 86_400_000);
    const byId = new Map(leaves.map((run) => [String(run[0]), run]));
    await complete(byId.get('x1')!);
    expect(await direct.hget(`${root}:r:p1`, 'st')).toBe('waiting');
    let wake: MonitoredCommand[] = [];
    wake = await monitorCommands(redis.url, async () => {
      await complete(byId.get('x2')!);
    });
    expect(await direct.hmget(`${root}:r:p1`, 'st', 'wn', 'ws', 'wait')).toEqual(['queued', null, null, null]);
    expect(await direct.exists(`${root}:aw:p1`)).toBe(0);
    expect(await direct.zrange(`${root}:q:parent`, '0', '-1')).toEqual(['p1']);
    expect(wake.filter((c) => c.source === 'lua' && (c.args[0].toUpperCase() === 'DEL' || c.args[1] === `${root}:timers`))).toEqual([]);
  });

  it('a completion that refills its slot takes the parent it wakes, when the refill may take its workflow without a limit: leased at once, never queued', async () => {
    await app(uniquePrefix('lib'), false);
    const root = `{${uniquePrefix('ho')}:default:0}`;
    const spec = (name: string, limit = 0) => `${limit},3,0,${name.length}:${name}`;
    const claimArgs = (count: string, claimId: string, plan: string) => ['w1', count, 30_000, claimId, 86_400_000, plan];
    const both = spec('ho-leaf') + spec('ho-parent');
    /** Parent `id` claimed, parked with children `<id>-a` and `<id>-b` that it starts, and both children claimed. */
    const parkedWithChildren = async (id: string) => {
      await emitDirect(root, id, 'ho-parent');
      const claimed = (await direct.call('FCALL', 'wf1_claim', 1, root, ...claimArgs('1f', `${id}c`, spec('ho-parent')))) as string[];
      const token = claimed[1].split('\n')[1];
      const children = [`${id}-a`, `${id}-b`];
      const args: (string | number)[] = [id, token, JSON.stringify({ children })];
      children.forEach((child, k) => {
        args.push('spawn', `0:child-${k}`, `${child}||ho-leaf`);
        args.push(child, 'ho-leaf', 'default', '{}', 0, '', '', '', id, `0:child-${k}`, root, '');
      });
      expect(await direct.call('FCALL', 'wf1_park', 1, root, ...args)).toEqual([1, -1]);
      const leaves = (await direct.call('FCALL', 'wf1_claim', 1, root, ...claimArgs('2f', `${id}l`, spec('ho-leaf')))) as string[];
      return [leaves[1], leaves[5]].map((head) => head.split('\n').slice(0, 2));
    };
    const complete = (run: string[], ...refill: (string | number)[]) =>
      direct.call('FCALL', 'wf1_complete', 1, root, run[0], run[1], '1', 86_400_000, 0, ...refill) as Promise<unknown[]>;

    // the first child's completion wakes nothing; the last one's refill gets the parent, fenced anew
    const [a, b] = await parkedWithChildren('p1');
    expect(await complete(a, ...claimArgs('2f', 'r1', both))).toEqual([1, 0, expect.any(Number)]);
    expect(await direct.hget(`${root}:r:p1`, 'st')).toBe('waiting');
    let reply: unknown[] = [];
    const inCompletion = await monitorCommands(redis.url, async () => {
      reply = await complete(b, ...claimArgs('2f', 'r2', both));
    });
    expect(reply.slice(0, 4)).toEqual([1, 0, expect.any(Number), expect.stringMatching(/^p1\n2:r2\n/)]);
    // its input, error and both children's outcomes come with it
    expect(reply.slice(4, 7)).toEqual(['{}', '', 4]);
    expect(reply.slice(7).filter((_, i) => i % 2 === 1)).toEqual([expect.stringContaining('"s":"succeeded"'), expect.stringContaining('"s":"succeeded"')]);
    expect(reply).toHaveLength(11);
    expect(await direct.hmget(`${root}:r:p1`, 'st', 'tok', 'wk', 'wait', 'wn', 'ws')).toEqual(['running', '2:r2', 'w1', null, null, null]);
    expect(await direct.zcard(`${root}:q:ho-parent`)).toBe(0);
    expect(await direct.zrange(`${root}:st:ho-parent:running`, '0', '-1')).toEqual(['p1', expect.stringMatching(/^~/)]);
    expect(await direct.zcard(`${root}:st:ho-parent:waiting`)).toBe(0);
    expect(await direct.zcard(`${root}:st:ho-parent:queued`)).toBe(0);
    expect(await direct.zscore(`${root}:leases`, 'p1')).not.toBeNull();
    // nothing went through the ready set: no entry, no notice to the workers, no pop of the parent's set
    const lua = inCompletion.filter((c) => c.source === 'lua');
    expect(lua.filter((c) => c.args[1] === `${root}:q:ho-parent` || c.args[1] === `${root}:w`)).toEqual([]);
    const history = (await direct.lrange(`${root}:h:p1`, 0, -1)).map((entry) => JSON.parse(entry).type);
    expect(history).toEqual(['created', 'claimed', 'parked', 'woken', 'claimed']);
    // the parent's worker finishes it with the token it got
    expect(await direct.call('FCALL', 'wf1_complete', 1, root, 'p1', '2:r2', '"both"', 86_400_000, 0)).toEqual([1]);
    expect(await direct.hget(`${root}:r:p1`, 'st')).toBe('succeeded');

    // a refill that may not take the parent's workflow leaves it to its ready set
    const [c, d] = await parkedWithChildren('p2');
    await complete(c, ...claimArgs('2f', 'p2r1', spec('ho-leaf')));
    expect(await complete(d, ...claimArgs('2f', 'p2r2', spec('ho-leaf')))).toEqual([1, 0, expect.any(Number)]);
    expect(await direct.hget(`${root}:r:p2`, 'st')).toBe('queued');
    expect(await direct.zrange(`${root}:q:ho-parent`, '0', '-1')).toEqual(['p2']);
    expect(await direct.zrange(`${root}:st:ho-parent:queued`, '0', '-1')).toEqual(['p2']);
    const next = (await direct.call('FCALL', 'wf1_claim', 1, root, ...claimArgs('1f', 'p2w', spec('ho-parent')))) as string[];
    expect(next[1]).toMatch(/^p2\n2:p2w\n/);

    // so does one that may take it only within a limit: the limited claim counts its room and pops it from there
    const [e, f] = await parkedWithChildren('p3');
    await complete(e, ...claimArgs('2f', 'p3r1', spec('ho-parent', 5)));
    const limited = await monitorCommands(redis.url, async () => {
      reply = await complete(f, ...claimArgs('2f', 'p3r2', spec('ho-parent', 5)));
    });
    expect(reply[3]).toMatch(/^p3\n2:p3r2\n/);
    const popped = limited.filter((c) => c.source === 'lua' && c.args[1] === `${root}:q:ho-parent`).map((c) => c.args[0].toUpperCase());
    expect(popped.slice(0, 3)).toEqual(['ZADD', 'ZCARD', 'ZPOPMIN']);
    expect(await direct.zcard(`${root}:q:ho-parent`)).toBe(0);
  });
});
