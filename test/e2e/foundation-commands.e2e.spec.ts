/**
 * Round trips, counted on a private redis-server: every run state change is one FCALL, a claim carries
 * everything a replay needs, concurrent runs share round trips (auto-pipelining), and result() waits
 * on one subscription instead of polling.
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { uniquePrefix } from '../support/redis-server.js';
import { monitorCommands } from '../support/redis-monitor.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';

@Workflow('counted')
@Injectable()
class CountedWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const a = await ctx.step.run('a', () => ctx.input.n + 1);
    const b = await ctx.step.run('b', () => a + 1);
    const c = await ctx.step.run('c', () => b + 1);
    return { c };
  }
}

@Workflow('instant')
@Injectable()
class InstantWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n;
  }
}

let openGate: () => void = () => undefined;
const gate = new Promise<void>((resolve) => (openGate = resolve));

@Workflow('gated')
@Injectable()
class GatedWorkflow {
  async execute(ctx: WorkflowContext<Record<string, never>>) {
    await ctx.step.run('wait', () => gate);
    return 'done';
  }
}

async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const stats = new Map<string, number>();
  for (const match of (await redis.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) stats.set(match[1], Number(match[2]));
  return stats;
}

function tally(items: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[item] = (counts[item] ?? 0) + 1;
  return counts;
}

describe('commands and round trips (e2e, private redis-server)', () => {
  const suite = useSuiteRedis();

  it('a 3-step run takes one FCALL per state change: 1 emit, 1 claim, 2 commit_step, 1 complete that commits the last step', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('count'), worker: { concurrency: 4 } }, [CountedWorkflow]);
    suite.apps.push(app);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await suite.direct.config('RESETSTAT');
    let runId = '';
    const seen = await monitorCommands(suite.redis.url, async () => {
      const handle = await app.client.emit(CountedWorkflow, { n: 0 });
      runId = handle.id;
      expect(await handle.result({ timeoutMs: 10_000 })).toEqual({ c: 3 });
    });
    const stats = await commandStats(suite.direct);

    const topLevel = seen.filter((c) => c.source !== 'lua');
    const inLua = seen.filter((c) => c.source === 'lua');
    const fcalls = tally(topLevel.filter((c) => /^fcall/i.test(c.args[0])).map((c) => c.args[1]));
    const others = tally(topLevel.filter((c) => !/^fcall/i.test(c.args[0])).map((c) => c.args[0].toLowerCase()));
    const stateChanges = ['wf1_emit', 'wf1_claim', 'wf1_commit_step', 'wf1_complete', 'wf1_fail', 'wf1_park', 'wf1_release', 'wf1_heartbeat'];
    const history = await app.client.getRunHistory(runId);

    const executed = [...stats].filter(([name]) => !/^(monitor|config|info)/.test(name)).reduce((sum, [, calls]) => sum + calls, 0);
    const stateChangeCalls = stateChanges.reduce((sum, name) => sum + (fcalls[name] ?? 0), 0);
    process.stdout.write(
      `3-step run: FCALLs ${JSON.stringify(fcalls)}; other top-level commands ${JSON.stringify(others)}; ` +
        `commands inside Lua ${inLua.length}; commands Redis executed (commandstats, Lua included) ${executed}\n`,
    );
    expect(fcalls.wf1_emit).toBe(1);
    // Steps a and b are committed before the next step starts; c, the last, lands with the completion.
    expect(fcalls.wf1_commit_step).toBe(2);
    expect(fcalls.wf1_complete).toBe(1);
    expect((await app.client.getRunSteps(runId)).map((s) => [s.name, s.status, s.result])).toEqual([
      ['a', 'succeeded', 1],
      ['b', 'succeeded', 2],
      ['c', 'succeeded', 3],
    ]);
    expect(fcalls.wf1_fail ?? 0).toBe(0);
    expect(fcalls.wf1_park ?? 0).toBe(0);
    expect(history.filter((e) => e.type === 'claimed')).toHaveLength(1);
    // The claim that took the run, plus at most one empty claim when its slot was freed.
    expect(fcalls.wf1_claim).toBeGreaterThanOrEqual(1);
    expect(fcalls.wf1_claim).toBeLessThanOrEqual(2);
    // Everything else the app sent reads or subscribes (result()); no state changes outside FCALL.
    // smembers: a queued run's read also reads whether its workflow is paused in its shard (getRun's delayedBy)
    const readsAndSubscriptions = ['hgetall', 'hget', 'hmget', 'lrange', 'zrange', 'zscore', 'smembers', 'ssubscribe', 'sunsubscribe', 'ping', 'info'];
    expect(Object.keys(others).filter((name) => !readsAndSubscriptions.includes(name))).toEqual([]);
    expect(Object.keys(fcalls).filter((name) => !stateChanges.includes(name) && name !== 'wf1_tick')).toEqual([]);

    expect(stateChangeCalls).toBeLessThanOrEqual(6);
    // Measured: 49-50 (38-39 of them inside Lua); the bound leaves room for one housekeeping tick.
    expect(executed).toBeLessThanOrEqual(70);
    await app.close();
  });

  it('a claim returns input, attempt, fencing token and every stored step result in one reply; a commit is one round trip', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('claim'), worker: false });
    suite.apps.push(app);
    const wr = app.moduleRef.get(WorkflowRedis);
    const shard = { queue: 'manual', partition: 0 };
    const spec = [{ name: 'manual-wf', maxConcurrency: 0, maxAttempts: 3, timeoutMs: 0 }];
    const runId = wr.keys.newRunId(shard);
    await wr.store.emit(shard, { runId, workflow: 'manual-wf', queue: 'manual', input: '{"order":[1,2.5,"x"]}', priority: 0 });
    const [first] = await wr.store.claim(shard, 'w1', 1, 30_000, 'a1a1a1a1a1a1', spec, 60_000);
    const commits = await monitorCommands(suite.redis.url, async () => {
      expect(await wr.store.commitStep(shard, runId, first.token, '0:one', 'S', '{"s":"succeeded","r":[]}')).toMatchObject({ ok: true });
    });
    expect(commits.filter((c) => c.source !== 'lua').map((c) => c.args.slice(0, 2))).toEqual([['fcall', 'wf1_commit_step']]);
    await wr.store.commitStep(shard, runId, first.token, '0:two', 'S', '{"s":"succeeded","r":12345678901234567}');
    await wr.store.release(shard, 'test', [{ id: runId, token: first.token }]);

    let claimed: Awaited<ReturnType<typeof wr.store.claim>> = [];
    const claims = await monitorCommands(suite.redis.url, async () => {
      claimed = await wr.store.claim(shard, 'w2', 5, 30_000, 'b2b2b2b2b2b2', spec, 60_000);
    });
    expect(claims.filter((c) => c.source !== 'lua').map((c) => c.args.slice(0, 2))).toEqual([['fcall', 'wf1_claim']]);
    expect(claimed).toHaveLength(1);
    const [run] = claimed;
    expect(run).toMatchObject({ id: runId, workflow: 'manual-wf', input: '{"order":[1,2.5,"x"]}', attempt: 1, maxAttempts: 3, token: '2:b2b2b2b2b2b2' });
    expect([...run.steps.keys()].sort()).toEqual(['0:one', '0:two']);
    // Payloads come back byte for byte (Lua never decodes them: [] stays [], big numbers keep their digits).
    expect(run.steps.get('0:one')).toMatch(/^\d+\|S\|\{"s":"succeeded","r":\[\]\}$/);
    expect(run.steps.get('0:two')).toMatch(/^\d+\|S\|\{"s":"succeeded","r":12345678901234567\}$/);
  });

  it('concurrent runs share round trips: the commands of one event-loop turn leave in one socket write, step commits in one FCALL', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('pipe'), worker: { concurrency: 50 } }, [CountedWorkflow]);
    suite.apps.push(app);
    type Socket = { _write: (...args: unknown[]) => void; _writev: (...args: unknown[]) => void; localPort: number };
    // The app's emits go over the command connection, the worker's transitions over its own.
    const { command, worker } = app.moduleRef.get(WorkflowRedis).connections as unknown as Record<'command' | 'worker', Redis & { stream: Socket }>;
    expect(command.options.enableAutoPipelining).toBe(true);
    expect(worker.options.enableAutoPipelining).toBe(true);
    const streams = [command.stream, worker.stream];
    const sources = new Set(streams.map((stream) => `127.0.0.1:${stream.localPort}`));
    // What reaches the sockets: one _write (one buffer) or _writev (several, one writev system call) per flush.
    let writes = 0;
    const originals = streams.map((stream) => ({ stream, write: stream._write.bind(stream), writev: stream._writev.bind(stream) }));
    for (const { stream, write, writev } of originals) {
      stream._write = (...args: unknown[]) => {
        writes += 1;
        return write(...args);
      };
      stream._writev = (...args: unknown[]) => {
        writes += 1;
        return writev(...args);
      };
    }
    let sent = 0;
    let transitions = 0;
    let commits = 0;
    let commitCalls = 0;
    try {
      const seen = await monitorCommands(suite.redis.url, async () => {
        const handles = await Promise.all(Array.from({ length: 50 }, (_, n) => app.client.emit(CountedWorkflow, { n })));
        await Promise.all(handles.map((h) => h.result({ timeoutMs: 15_000 })));
      });
      const ours = seen.filter((c) => sources.has(c.source));
      sent = ours.length;
      for (const { args } of ours) {
        // wf1_many root <function> <arguments per call> <calls' arguments...>
        const batched = /^wf1_many$/i.test(args[1] ?? '');
        const calls = batched ? (args.length - 6) / Number(args[5]) : 1;
        transitions += calls;
        if (batched || /^wf1_commit_step$/i.test(args[1] ?? '')) {
          commits += calls;
          commitCalls += 1;
        }
      }
    } finally {
      for (const { stream, write, writev } of originals) {
        stream._write = write;
        stream._writev = writev;
      }
    }
    process.stdout.write(
      `shared writes: 50 concurrent 3-step runs, ${transitions} calls in ${sent} commands (${commits} step commits in ${commitCalls}) in ${writes} socket writes\n`,
    );
    // Each run: emit, claim (shared), two step commits, completion.
    expect(transitions).toBeGreaterThanOrEqual(50 * 4);
    expect(commits).toBe(100);
    expect(commitCalls).toBeLessThan(commits / 4);
    expect(writes).toBeLessThan(sent / 2);
    await app.close();
  });

  it("the worker's transitions have a connection of their own: the app's busy connection does not hold up a run's completion", async () => {
    const prefix = uniquePrefix('own');
    const app = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 4 } }, [GatedWorkflow, InstantWorkflow]);
    suite.apps.push(app);
    // Reads the run over connections of its own while the app's command connection is held.
    const observer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [GatedWorkflow, InstantWorkflow]);
    suite.apps.push(observer);
    const gated = await app.client.emit(GatedWorkflow, {});
    await waitFor(async () => (await observer.client.getRun(gated.id))?.status === 'running');
    const { command, worker } = app.moduleRef.get(WorkflowRedis).connections;
    expect(worker).not.toBe(command);
    // A blocking read holds the app's command connection: Redis answers nothing queued behind it (the
    // burst of emits) until it returns. Timing-free, unlike racing a large burst against the completion.
    const releaseKey = `${prefix}:test-release`;
    let held = true;
    const commandId = await command.client('ID');
    const hold = command.blpop(releaseKey, 0).then(() => (held = false));
    await waitFor(async () => / cmd=blpop /.test(String(await suite.direct.call('CLIENT', 'LIST', 'ID', commandId))));
    let emitted = 0;
    const burst = Array.from({ length: 200 }, (_, n) => app.client.emit(InstantWorkflow, { n }).then(() => (emitted += 1)));
    openGate();
    try {
      await waitFor(async () => (await observer.client.getRun(gated.id))?.status === 'succeeded', 10_000);
      expect(held).toBe(true);
      expect(emitted).toBe(0);
    } finally {
      await suite.direct.lpush(releaseKey, 'go');
    }
    await hold;
    await Promise.all(burst);
    expect(emitted).toBe(200);
    expect(await gated.result({ timeoutMs: 10_000 })).toBe('done');
    await app.close();
    await observer.close();
  });

  it('1,000 concurrent result() waits share one subscriber connection and do not poll', async () => {
    const prefix = uniquePrefix('waits');
    const baseline = Number(/connected_clients:(\d+)/.exec(await suite.direct.info('clients'))![1]);
    const api = await startApp({ connection: suite.redis.url, prefix, worker: false }, [InstantWorkflow]);
    suite.apps.push(api);
    const handles = await Promise.all(Array.from({ length: 1000 }, (_, n) => api.client.emit(InstantWorkflow, { n })));
    const before = await commandStats(suite.direct);
    const results = Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
    // Each wait reads the run once after subscribing; then nothing happens until runs finish.
    await waitFor(async () => ((await commandStats(suite.direct)).get('hgetall') ?? 0) - (before.get('hgetall') ?? 0) >= 1000);
    const settled = await commandStats(suite.direct);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const later = await commandStats(suite.direct);
    expect(later.get('hgetall')).toBe(settled.get('hgetall'));
    expect((later.get('ssubscribe') ?? 0) - (before.get('ssubscribe') ?? 0)).toBe(1);
    expect(Number(/connected_clients:(\d+)/.exec(await suite.direct.info('clients'))![1])).toBe(baseline + 2);

    const worker = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 50 } }, [InstantWorkflow]);
    suite.apps.push(worker);
    expect(await results).toEqual(Array.from({ length: 1000 }, (_, n) => n));
  });
});
