import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { ulid } from 'ulid';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { WorkflowRedis } from '../../lib/redis/workflow-redis.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

// Early events: an event sent in the same millisecond as the run's creation, or as the event before it,
// is neither missed nor reordered (ARCHITECTURE.md section 4; the log orders events by a per-(event, key)
// sequence, not by the clock).

@Workflow('ev-unblock', { queue: 'ev-runs' })
@Injectable()
class UnblockWorkflow {
  async execute(ctx: WorkflowContext<{ key: string }>) {
    return ctx.step.waitForEvent('unblock', { event: 'unblock', key: ctx.input.key, timeoutMs: 4_000 });
  }
}

@Workflow('ev-recv-twice', { queue: 'ev-runs' })
@Injectable()
class ReceiveTwiceWorkflow {
  async execute(ctx: WorkflowContext<{ key: string }>) {
    const first = await ctx.step.waitForEvent('first', { event: 'msg', key: ctx.input.key, timeoutMs: 4_000 });
    const second = await ctx.step.waitForEvent('second', { event: 'msg', key: ctx.input.key, timeoutMs: 4_000 });
    return [first, second];
  }
}

@Workflow('ev-parked', { queue: 'ev-runs' })
@Injectable()
class ParkedWaitWorkflow {
  async execute(ctx: WorkflowContext<{ event: string; key: string }>) {
    return ctx.step.waitForEvent('approval', { event: ctx.input.event, key: ctx.input.key });
  }
}

@Workflow('ev-timeout-then-again', { queue: 'ev-runs' })
@Injectable()
class TimeoutThenAgainWorkflow {
  async execute(ctx: WorkflowContext<{ key: string }>) {
    const first = await ctx.step.waitForEvent('first', { event: 'late', key: ctx.input.key, timeoutMs: 2_000 });
    const second = await ctx.step.waitForEvent('second', { event: 'late', key: ctx.input.key, timeoutMs: 3_000 });
    return [first, second];
  }
}

let loneStepRuns = 0;

@Workflow('ev-lone-step', { queue: 'ev-runs' })
@Injectable()
class LoneSurrogateStepWorkflow {
  async execute(ctx: WorkflowContext<{ name: string }>) {
    const value = await ctx.step.run(ctx.input.name, () => {
      loneStepRuns += 1;
      return 'once';
    });
    await ctx.step.sleep('replay', 10); // the run parks and is replayed: the step must come from its record
    return value;
  }
}

const ROUNDS = 20;
const RUNS_PER_ROUND = 10; // 200 of each scenario, 10 at once

/** Each run is emitted and its events sent in one pipeline write: they reach Redis within a millisecond. */
async function unblockScenario(app: TestApp, tag: string): Promise<void> {
  const handles = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const pairs = await Promise.all(
      Array.from({ length: RUNS_PER_ROUND }, (_, i) => {
        const key = `${tag}-u-${round}-${i}`;
        return Promise.all([app.client.emit(UnblockWorkflow, { key }), app.client.sendEvent('unblock', key, { key })]);
      }),
    );
    handles.push(...pairs.map(([handle]) => handle));
  }
  const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
  // null: the wait timed out, the event was missed
  const missed = outputs.filter((output) => output === null).length;
  expect({ missed, of: outputs.length }).toEqual({ missed: 0, of: ROUNDS * RUNS_PER_ROUND });
}

async function receiveTwiceScenario(app: TestApp, tag: string): Promise<void> {
  const handles = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const sent = await Promise.all(
      Array.from({ length: RUNS_PER_ROUND }, (_, i) => {
        const key = `${tag}-r-${round}-${i}`;
        return Promise.all([
          app.client.emit(ReceiveTwiceWorkflow, { key }),
          app.client.sendEvent('msg', 'a', { key }),
          app.client.sendEvent('msg', 'b', { key }),
        ]);
      }),
    );
    handles.push(...sent.map(([handle]) => handle));
  }
  const outputs = await Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
  const wrong = outputs.filter((o) => JSON.stringify(o) !== '["a","b"]');
  expect({ wrong: wrong.length, examples: wrong.slice(0, 3) }).toEqual({ wrong: 0, examples: [] });
}

function sameMillisecondTests(appOf: () => TestApp, tag: string): void {
  it('emit then sendEvent at once (0 waiters): the run still receives the event, 200 times over', async () => {
    await unblockScenario(appOf(), tag);
  }, 60_000);

  it('emit, send "a", send "b" at once: the run receives "a" then "b", 200 times over', async () => {
    await receiveTwiceScenario(appOf(), tag);
  }, 60_000);
}

describe('events sent in the same millisecond as the emit and as each other (single Redis)', () => {
  let redis: TestRedis;
  let app: TestApp;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    app = await startApp(
      { connection: redis.url, prefix: uniquePrefix('evo'), queues: { 'ev-runs': { partitions: 3 } }, worker: { concurrency: 50, reaperIntervalMs: 20 } } as never,
      [UnblockWorkflow, ReceiveTwiceWorkflow, ParkedWaitWorkflow, TimeoutThenAgainWorkflow, LoneSurrogateStepWorkflow],
    );
  }, 30_000);

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });

  sameMillisecondTests(() => app, 'single');

  it('an event sent well before the run was created is not received', async () => {
    await app.client.sendEvent('unblock', 'stale', { key: 'before-creation' });
    await new Promise((resolve) => setTimeout(resolve, 30));
    const handle = await app.client.emit(UnblockWorkflow, { key: 'before-creation' });
    await waitFor(async () => (await handle.getState()).status === 'waiting');
    expect(await app.client.sendEvent('unblock', 'fresh', { key: 'before-creation' })).toBe(1);
    expect(await handle.result({ timeoutMs: 10_000 })).toBe('fresh');
  });

  it('an event whose delivery lost the race with the wait\'s timeout goes to the next wait for it', async () => {
    const handle = await app.client.emit(TimeoutThenAgainWorkflow, { key: 'late-1' });
    await waitFor(async () => (await handle.getState()).status === 'waiting');
    // Sent before the first wait's deadline, but its hand-off to the run is held back (as by a crash of the
    // sender) until after the timeout: the first wait times out, the second receives the event.
    const { handoffs } = await app.moduleRef.get(WorkflowRedis).store.sendEvent(ulid(), 'late', 'late-1', '"late"', 60_000);
    expect(handoffs).toHaveLength(1);
    expect(await handle.result({ timeoutMs: 10_000 })).toEqual([null, 'late']);
  });

  it('a step whose name holds a lone surrogate is replayed from its record, not run again', async () => {
    const name = JSON.parse('"step-\\ud800"') as string;
    expect(await app.client.run(LoneSurrogateStepWorkflow, { name }, { timeoutMs: 10_000 })).toBe('once');
    expect(loneStepRuns).toBe(1);
  });

  it('a parked wait whose key holds a lone surrogate is woken by sendEvent with that key', async () => {
    const key = JSON.parse('"o-\\ud800"') as string;
    const handle = await app.client.emit(ParkedWaitWorkflow, { event: 'order.approved', key });
    await waitFor(async () => (await handle.getState()).status === 'waiting', 5_000);
    expect(await app.client.sendEvent('order.approved', { by: 'alice' }, { key })).toBe(1);
    expect(await handle.result({ timeoutMs: 5_000 })).toEqual({ by: 'alice' });
  });

  it('event names and keys in odd Unicode (astral, combining, quotes, controls, "|", ":") round-trip', async () => {
    const cases = [
      { event: 'évènement.承認', key: '𝒪𝓇𝒹𝑒𝓇-🧾-1' },
      { event: 'e"v\\n\u0001', key: 'k|with:separators|\u0000nul' },
      { event: 'combining-e\u0301', key: 'e\u0301' },
      { event: 'same-key-as-name', key: JSON.parse('"\\udfff-lone-low"') as string },
      { event: JSON.parse('"lone-\\ud800-in-the-name"') as string, key: 'k' },
    ];
    const handles = await Promise.all(cases.map((c) => app.client.emit(ParkedWaitWorkflow, c)));
    await waitFor(async () => (await Promise.all(handles.map((h) => h.getState()))).every((s) => s.status === 'waiting'), 5_000);
    for (const [i, c] of cases.entries()) expect(await app.client.sendEvent(c.event, { i }, { key: c.key })).toBe(1);
    expect(await Promise.all(handles.map((h) => h.result({ timeoutMs: 5_000 })))).toEqual(cases.map((_, i) => ({ i })));
    // an early event (logged before the wait) with such a key is found by the wait too
    const early = { event: 'évènement.承認', key: 'early-𝒪-\u0000' };
    const [handle] = await Promise.all([app.client.emit(ParkedWaitWorkflow, early), app.client.sendEvent(early.event, 'early', { key: early.key })]);
    expect(await handle.result({ timeoutMs: 5_000 })).toBe('early');
  });
});

describe('events in another node than the run (Redis Cluster, 3 primaries)', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    app = await startApp(
      {
        connection: { nodes: cluster.nodes },
        prefix: uniquePrefix('evc'),
        queues: { 'ev-runs': { partitions: 6 } },
        worker: { concurrency: 50, reaperIntervalMs: 20 },
      } as never,
      [UnblockWorkflow, ReceiveTwiceWorkflow, ParkedWaitWorkflow],
    );
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  sameMillisecondTests(() => app, 'cluster');
});
