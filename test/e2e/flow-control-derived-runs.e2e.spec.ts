/**
 * Flow control of runs made from other runs inside Redis (docs/flow-control.md, "Runs made from other
 * runs"): the successor of ctx.continueAsNew, a fork, a retried run, a run woken from a park, a canceled
 * run's compensations and a graph's nodes take a slot of their flow key as an emit of it would, so a
 * `concurrency` limit of 1 never sees two runs of the key executing at once (side-effect counters in Redis).
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { NonRetriableError, Workflow, type WorkflowContext } from '../../lib/index.js';
import { createHash } from 'node:crypto';
import { sleep, uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';
import { flowKeysLeft } from '../support/flow-keys.js';

const suite = useSuiteRedis();
let log = '';
/** Tags of runs of 'dr-job' that fail (until taken out: the fix). */
const failing = new Set<string>();

/** Records `label` entering its key (and an overlap if another run of the key is in), in Redis. */
async function enter(key: string, label: string): Promise<void> {
  if ((await suite.direct.hincrby(`${log}:active`, key, 1)) > 1) await suite.direct.incr(`${log}:overlaps`);
  await suite.direct.rpush(`${log}:trace`, `${label}:in`);
}
async function leave(key: string, label: string): Promise<void> {
  await suite.direct.rpush(`${log}:trace`, `${label}:out`);
  await suite.direct.hincrby(`${log}:active`, key, -1);
}
async function hold(key: string, label: string, ms: number): Promise<void> {
  await enter(key, label);
  await sleep(ms);
  await leave(key, label);
}
const trace = () => suite.direct.lrange(`${log}:trace`, 0, -1);
const overlaps = async () => Number(await suite.direct.get(`${log}:overlaps`));

type LoopInput = { key: string; tag: string; i: number; until: number; holdMs: number };

@Workflow('dr-loop', { concurrency: { key: (input: LoopInput) => input.key, limit: 1 } })
@Injectable()
class Loop {
  async execute(ctx: WorkflowContext<LoopInput>) {
    await hold(ctx.input.key, `${ctx.input.tag}${ctx.input.i}`, ctx.input.holdMs);
    if (ctx.input.i < ctx.input.until) return ctx.continueAsNew({ ...ctx.input, i: ctx.input.i + 1 });
    return ctx.input.tag;
  }
}

type JobInput = { key: string; tag: string; holdMs: number };

@Workflow('dr-job', { concurrency: { key: (input: JobInput) => input.key, limit: 1 }, maxAttempts: 1 })
@Injectable()
class Job {
  async execute(ctx: WorkflowContext<JobInput>) {
    await ctx.step.run('prep', () => ctx.input.tag);
    await hold(ctx.input.key, ctx.input.tag, ctx.input.holdMs);
    if (failing.has(ctx.input.tag)) throw new NonRetriableError(`${ctx.input.tag} fails`);
    return ctx.input.tag;
  }
}

type NapInput = { key: string; tag: string; beforeMs: number; napMs: number; afterMs: number };

@Workflow('dr-nap', { concurrency: { key: (input: NapInput) => input.key, limit: 1 } })
@Injectable()
class Nap {
  async execute(ctx: WorkflowContext<NapInput>) {
    const { key, tag } = ctx.input;
    await ctx.step.run('before', () => hold(key, `${tag}:before`, ctx.input.beforeMs));
    if (ctx.input.napMs) await ctx.step.sleep('nap', ctx.input.napMs);
    await ctx.step.run('after', () => hold(key, `${tag}:after`, ctx.input.afterMs));
  }
}

/** Executions per tag of 'dr-flaky': its first fails, and the run is retried after a backoff. */
const executions = new Map<string, number>();

@Workflow('dr-flaky', { concurrency: { key: (input: JobInput) => input.key, limit: 1 }, maxAttempts: 2, backoff: { type: 'fixed', delayMs: 200 } })
@Injectable()
class Flaky {
  async execute(ctx: WorkflowContext<JobInput>) {
    const n = (executions.get(ctx.input.tag) ?? 0) + 1;
    executions.set(ctx.input.tag, n);
    await hold(ctx.input.key, `${ctx.input.tag}#${n}`, ctx.input.holdMs);
    if (n === 1 && ctx.input.tag === 'flaky') throw new Error('first attempt fails');
    return n;
  }
}

@Workflow('dr-saga', { concurrency: { key: (input: { key: string }) => input.key, limit: 1 } })
@Injectable()
class Saga {
  async execute(ctx: WorkflowContext<{ key: string; tag: string; holdMs: number }>) {
    const { key, tag } = ctx.input;
    await ctx.step.run('book', () => hold(key, `${tag}:book`, ctx.input.holdMs), { compensate: () => hold(key, `${tag}:comp`, 300) });
    await ctx.step.sleep('nap', 60_000);
  }
}

@Workflow('dr-graph', { maxAttempts: 1 })
@Injectable()
class GraphParent {
  async execute(ctx: WorkflowContext<{ key: string; nodes: string[]; workflow?: string }>) {
    const nodes = Object.fromEntries(
      ctx.input.nodes.map((tag) => [tag, { workflow: ctx.input.workflow ?? 'dr-job', input: { key: ctx.input.key, tag, holdMs: 300, user: tag } }]),
    );
    const results = await ctx.step.graph('nodes', nodes);
    return Object.keys(results).sort();
  }
}

@Workflow('dr-debounced', { debounce: { key: (input: { user: string }) => input.user, periodMs: 100 } })
@Injectable()
class Debounced {
  async execute() {}
}

// A queue of two partitions: a graph's node runs in its parent's partition, its key may hash to the other.
@Workflow('dr-part-job', { queue: 'dr-parts', concurrency: { key: (input: JobInput) => input.key, limit: 1 } })
@Injectable()
class PartJob {
  async execute() {}
}

@Workflow('dr-part-graph', { queue: 'dr-parts', maxAttempts: 1 })
@Injectable()
class PartGraph {
  async execute(ctx: WorkflowContext<{ keys: string[] }>) {
    await ctx.step.graph('nodes', Object.fromEntries(ctx.input.keys.map((key) => [key, { workflow: PartJob, input: { key, tag: key, holdMs: 0 } }])));
  }
}

async function started(app: Promise<TestApp>): Promise<TestApp> {
  const a = await app;
  suite.apps.push(a);
  return a;
}
const workerOptions = (prefix: string) => ({ connection: suite.redis.url, prefix, worker: { concurrency: 4, reaperIntervalMs: 20 } });
const traceHas = (label: string) => waitFor(async () => (await trace()).includes(label), 10_000);

describe('flow control of runs made from other runs (e2e, real Redis)', () => {
  it('the successor of ctx.continueAsNew keeps its flow key and waits behind the key\'s held run', async () => {
    const prefix = uniquePrefix('dr-can');
    log = prefix;
    const producer = await started(startApp({ connection: suite.redis.url, prefix, worker: false }, [Loop]));
    const a = await producer.client.emit(Loop, { key: 'k', tag: 'a', i: 0, until: 2, holdMs: 300 });
    const b = await producer.client.emit(Loop, { key: 'k', tag: 'b', i: 0, until: 0, holdMs: 300 });
    expect((await producer.client.getRun(b.id))?.delayedBy).toBe('concurrency');
    await started(startApp(workerOptions(prefix), [Loop]));
    expect(await a.result({ timeoutMs: 20_000 })).toBe('a');
    expect(await b.result({ timeoutMs: 5_000 })).toBe('b');
    expect(await overlaps()).toBe(0);
    // a0 gave its slot to b (held first), its successor a1 waited for b; a2 found the key free
    expect(await trace()).toEqual(['a0:in', 'a0:out', 'b0:in', 'b0:out', 'a1:in', 'a1:out', 'a2:in', 'a2:out']);
    const successor = (await producer.client.getRun((await producer.client.getRun(a.id))!.continuedAs!))!;
    expect(successor).toMatchObject({ flowKey: 'k', continuedFrom: a.id, status: 'succeeded' });
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('a fork (in one call or in chunks), a retry and a retry from a step of a failed run wait for the key\'s slot', async () => {
    const prefix = uniquePrefix('dr-fork');
    log = prefix;
    const app = await started(startApp(workerOptions(prefix), [Job]));
    const failed = [];
    for (const tag of ['f1', 'f2', 'f3', 'f4']) {
      failing.add(tag);
      const run = await app.client.emit(Job, { key: 'k', tag, holdMs: 10 });
      await expect(run.result({ timeoutMs: 10_000 })).rejects.toThrow(`${tag} fails`);
      failed.push(run);
    }
    for (const tag of ['f1', 'f2', 'f3', 'f4']) failing.delete(tag);
    const long = await app.client.emit(Job, { key: 'k', tag: 'long', holdMs: 1500 });
    await traceHas('long:in');
    const fork = await app.client.forkRun(failed[0].id);
    const retried = await app.client.retryRun(failed[1].id);
    const fromStep = await app.client.retryRun(failed[2].id, { fromStep: 'prep' });
    // a fork whose records come in more than one call (wf1_fork, then wf1_fork_more): sent here by hand
    const source = failed[3].id;
    const root = `{${prefix}:default:0}`;
    const chunked = `${source.slice(0, 10)}CHNKEDFRKRN00000.${source.split('.').slice(1).join('.')}`;
    const input = JSON.stringify({ key: 'k', tag: 'f4', holdMs: 10 });
    await suite.direct.call('FCALL', 'wf1_fork', 1, root, chunked, source, input, '1', '0', '0');
    expect(await suite.direct.hmget(`${root}:r:${chunked}`, 'st', 'fk')).toEqual(['scheduled', 'k']);
    await suite.direct.call('FCALL', 'wf1_fork_more', 1, root, chunked, '1', '0', '0');
    for (const id of [fork.id, retried.id, fromStep.id, chunked]) {
      expect(await app.client.getRun(id)).toMatchObject({ status: 'queued', flowKey: 'k', delayedBy: 'concurrency' });
    }
    expect(await long.result({ timeoutMs: 10_000 })).toBe('long');
    for (const id of [fork.id, retried.id, fromStep.id, chunked]) expect(await app.client.handle(id).result({ timeoutMs: 10_000 })).toMatch(/^f[1-4]$/);
    expect(await overlaps()).toBe(0);
    const t = await trace();
    for (const tag of ['f1', 'f2', 'f3', 'f4']) expect(t.lastIndexOf(`${tag}:in`)).toBeGreaterThan(t.indexOf('long:out'));
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 40_000);

  it('a run woken from a park waits for the key\'s slot', async () => {
    const prefix = uniquePrefix('dr-park');
    log = prefix;
    const producer = await started(startApp({ connection: suite.redis.url, prefix, worker: false }, [Nap]));
    const napper = await producer.client.emit(Nap, { key: 'n', tag: 'napper', beforeMs: 10, napMs: 200, afterMs: 10 });
    const long = await producer.client.emit(Nap, { key: 'n', tag: 'long', beforeMs: 1500, napMs: 0, afterMs: 10 });
    await started(startApp(workerOptions(prefix), [Nap]));
    await traceHas('long:before:in');
    // the napper gave its slot to 'long' when it parked; woken, it waits for that slot
    await waitFor(async () => (await producer.client.getRun(napper.id))?.status === 'queued', 5_000);
    expect(await producer.client.getRun(napper.id)).toMatchObject({ flowKey: 'n', delayedBy: 'concurrency' });
    await napper.result({ timeoutMs: 10_000 });
    await long.result({ timeoutMs: 1_000 });
    const t = await trace();
    expect(t.indexOf('napper:after:in')).toBeGreaterThan(t.indexOf('long:after:out'));
    expect(await overlaps()).toBe(0);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('a run retried after a backoff waits for the key\'s slot', async () => {
    const prefix = uniquePrefix('dr-backoff');
    log = prefix;
    const producer = await started(startApp({ connection: suite.redis.url, prefix, worker: false }, [Flaky]));
    const flaky = await producer.client.emit(Flaky, { key: 'r', tag: 'flaky', holdMs: 10 });
    const long = await producer.client.emit(Flaky, { key: 'r', tag: 'long', holdMs: 1500 });
    await started(startApp(workerOptions(prefix), [Flaky]));
    await traceHas('long#1:in');
    // its backoff (200 ms) ends while 'long' holds the slot it gave back
    await waitFor(async () => (await producer.client.getRun(flaky.id))?.status === 'queued', 5_000);
    expect(await producer.client.getRun(flaky.id)).toMatchObject({ flowKey: 'r', delayedBy: 'concurrency', attempt: 2 });
    expect(await flaky.result({ timeoutMs: 10_000 })).toBe(2);
    expect(await long.result({ timeoutMs: 1_000 })).toBe(1);
    expect(await trace()).toEqual(['flaky#1:in', 'flaky#1:out', 'long#1:in', 'long#1:out', 'flaky#2:in', 'flaky#2:out']);
    expect(await overlaps()).toBe(0);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('the compensations of a parked run canceled wait for the key\'s slot', async () => {
    const prefix = uniquePrefix('dr-saga');
    log = prefix;
    const app = await started(startApp(workerOptions(prefix), [Saga]));
    const parked = await app.client.emit(Saga, { key: 's', tag: 'parked', holdMs: 10 });
    await waitFor(async () => (await app.client.getRun(parked.id))?.status === 'waiting');
    const busy = await app.client.emit(Saga, { key: 's', tag: 'busy', holdMs: 1500 });
    await traceHas('busy:book:in');
    await app.client.cancelRun(parked.id);
    expect(await app.client.getRun(parked.id)).toMatchObject({ status: 'compensating', flowKey: 's' });
    await expect(parked.result({ timeoutMs: 10_000 })).rejects.toThrow();
    await app.client.cancelRun(busy.id);
    await expect(busy.result({ timeoutMs: 10_000 })).rejects.toThrow();
    await traceHas('busy:book:out');
    const t = await trace();
    // 'busy' parked after its step, giving its slot to the compensations
    expect(t.indexOf('parked:comp:in')).toBeGreaterThan(t.indexOf('busy:book:out'));
    expect(await overlaps()).toBe(0);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('a graph\'s nodes of a flow-controlled workflow take slots of their key; debounce and keys of another partition are refused', async () => {
    const prefix = uniquePrefix('dr-graph');
    log = prefix;
    // the partition of a flow key, as the client computes it (lib/client/emit-targets.ts, pickShard)
    const parts = (key: string) => createHash('sha1').update(`dr-part-job\0flow\0${key}`).digest().readUInt32BE(0) % 2;
    const keys = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
    const split = [keys.find((k) => parts(k) === 0)!, keys.find((k) => parts(k) === 1)!];
    expect(split.every(Boolean)).toBe(true);
    const app = await started(
      startApp({ ...workerOptions(prefix), queues: { 'dr-parts': { partitions: 2 } } } as never, [Job, GraphParent, Debounced, PartJob, PartGraph]),
    );
    const parent = await app.client.emit(GraphParent, { key: 'g', nodes: ['a', 'b', 'c'] });
    expect(await parent.result({ timeoutMs: 20_000 })).toEqual(['a', 'b', 'c']);
    expect(await overlaps()).toBe(0);
    const nodes = (await app.client.listRuns({ workflow: 'dr-job' })).runs;
    expect(nodes.map((r) => [r.flowKey, r.parentId])).toEqual([
      ['g', parent.id],
      ['g', parent.id],
      ['g', parent.id],
    ]);

    const debounced = await app.client.emit(GraphParent, { key: 'g', nodes: ['d'], workflow: 'dr-debounced' });
    await expect(debounced.result({ timeoutMs: 10_000 })).rejects.toThrow(/graph node 'd': Workflow 'dr-debounced' has debounce.*step\.runWorkflow/);
    const spread = await app.client.emit(PartGraph, { keys: split });
    await expect(spread.result({ timeoutMs: 10_000 })).rejects.toThrow(/has flow control, whose key 'p\d' lives in partition \d of queue 'dr-parts'.*step\.runWorkflow/);
    expect((await app.client.listRuns({ workflow: 'dr-part-job' })).runs).toHaveLength(0);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 40_000);
});
