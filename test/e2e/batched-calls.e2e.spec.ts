/**
 * Step commits made in one event-loop turn on one shard share one FCALL (wf1_many), and each caller still
 * gets its own call's outcome: a refused commit does not fail the others, and a batch that fails as a
 * whole is sent again call by call. Emits are not batched (see BATCHED_NAMES in lib/redis/turn-batcher.ts).
 */
import { describe, expect, it } from '@jest/globals';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { uniquePrefix } from '../support/redis-server.js';
import { monitorCommands, type MonitoredCommand } from '../support/redis-monitor.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

const suite = useSuiteRedis();
const shard = { queue: 'manual', partition: 0 };
const spec = [{ name: 'manual-wf', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }];

/** The FCALLs clients sent (not those made inside functions), by function name. */
function fcalls(seen: MonitoredCommand[]): string[] {
  return seen.filter((c) => c.source !== 'lua' && /^fcall$/i.test(c.args[0])).map((c) => c.args[1]);
}

async function producer() {
  const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('batch'), worker: false });
  suite.apps.push(app);
  return app.moduleRef.get(WorkflowRedis);
}

describe('batched calls (e2e, private redis-server)', () => {
  it('emits of one turn are not batched: each is its own FCALL', async () => {
    const wr = await producer();
    const ids = Array.from({ length: 3 }, () => wr.keys.newRunId(shard));
    const seen = await monitorCommands(suite.redis.url, async () => {
      await Promise.all(ids.map((runId) => wr.store.emit(shard, { runId, workflow: 'manual-wf', queue: 'manual', input: '{}', priority: 0 })));
    });
    expect(fcalls(seen)).toEqual(['wf1_emit', 'wf1_emit', 'wf1_emit']);
  });

  it("step commits of one turn share one FCALL; a refused one (stale token) does not fail the others", async () => {
    const wr = await producer();
    const ids = Array.from({ length: 3 }, () => wr.keys.newRunId(shard));
    await Promise.all(ids.map((runId) => wr.store.emit(shard, { runId, workflow: 'manual-wf', queue: 'manual', input: '{}', priority: 0 })));
    const claimed = await wr.store.claim(shard, 'w1', 3, 30_000, 'cccccccccccc', spec, 60_000);
    const token = new Map(claimed.map((run) => [run.id, run.token]));
    let results: Awaited<ReturnType<typeof wr.store.commitStep>>[] = [];
    const seen = await monitorCommands(suite.redis.url, async () => {
      results = await Promise.all([
        wr.store.commitStep(shard, ids[0], token.get(ids[0])!, '0:a', 'S', '{"r":0}'),
        wr.store.commitStep(shard, ids[1], '9:stalestale00', '0:a', 'S', '{"r":1}'),
        wr.store.commitStep(shard, ids[2], token.get(ids[2])!, '0:a', 'S', '{"r":2}'),
      ]);
    });
    expect(fcalls(seen)).toEqual(['wf1_many']);
    expect(results[0]).toMatchObject({ ok: true, committedAt: expect.any(Number) });
    expect(results[1]).toEqual({ ok: false, reason: 'STALE_TOKEN' });
    expect(results[2]).toMatchObject({ ok: true, committedAt: expect.any(Number) });
    const root = wr.keys.shardRoot(shard);
    expect(await suite.direct.hget(wr.keys.steps(root, ids[0]), '0:a')).toMatch(/\|S\|\{"r":0\}$/);
    expect(await suite.direct.hget(wr.keys.steps(root, ids[1]), '0:a')).toBeNull();
    expect(await suite.direct.hget(wr.keys.steps(root, ids[2]), '0:a')).toMatch(/\|S\|\{"r":2\}$/);
  });

  it('a batch that fails as a whole (the library was flushed) is sent again call by call, after the library is loaded again', async () => {
    const wr = await producer();
    const ids = Array.from({ length: 4 }, () => wr.keys.newRunId(shard));
    await Promise.all(ids.map((runId) => wr.store.emit(shard, { runId, workflow: 'manual-wf', queue: 'manual', input: '{}', priority: 0 })));
    const claimed = await wr.store.claim(shard, 'w1', 4, 30_000, 'dddddddddddd', spec, 60_000);
    await suite.direct.call('FUNCTION', 'FLUSH');
    let results: { ok: boolean }[] = [];
    const seen = await monitorCommands(suite.redis.url, async () => {
      results = await Promise.all(claimed.map((run) => wr.store.commitStep(shard, run.id, run.token, '0:a', 'S', '{"r":1}')));
    });
    expect(results.map((r) => r.ok)).toEqual([true, true, true, true]);
    const sent = fcalls(seen);
    expect(sent[0]).toBe('wf1_many');
    expect(sent.filter((name) => name === 'wf1_commit_step').length).toBeGreaterThanOrEqual(4);
    const root = wr.keys.shardRoot(shard);
    for (const run of claimed) expect(await suite.direct.hget(wr.keys.steps(root, run.id), '0:a')).toMatch(/\|S\|\{"r":1\}$/);
  });

  it('wf1_many refuses a function it does not batch, or arguments that do not divide into calls', async () => {
    const wr = await producer();
    const root = wr.keys.shardRoot(shard);
    await expect(suite.direct.call('FCALL', 'wf1_many', '1', root, 'emit', '12', ...Array(12).fill('x'))).rejects.toThrow(/cannot batch emit/);
    await expect(suite.direct.call('FCALL', 'wf1_many', '1', root, 'commit_step', '8', 'a', 'b')).rejects.toThrow(/cannot batch commit_step/);
  });
});
