import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis, waitFor } from '../support/workflow-app.js';
import { flowKeysLeft } from '../support/flow-keys.js';

// A run admitted from its key's held set to the ready set (a key with a concurrency limit only) keeps the
// slot field it had while held (lua/includes/01-flow.lua, slot_of): these tests pin down that such a run is
// not shown as held back, that canceling it or releasing it after a claim gives its slot back, and that
// no flow state is left behind.
const suite = useSuiteRedis();

@Workflow('admitted-keyed', { concurrency: { key: (input: { customer: string }) => input.customer, limit: 1 } })
@Injectable()
class AdmittedKeyed {
  async execute(ctx: WorkflowContext<{ customer: string; tag: string; hang?: boolean }>) {
    await ctx.step.run('work', async (step) => {
      await suite.direct.rpush(`admitted:${ctx.input.customer}:starts`, ctx.input.tag);
      // a run told to hang waits for its execution to be aborted (its worker shutting down)
      if (ctx.input.hang && !(await suite.direct.exists(`admitted:${ctx.input.customer}:go`))) {
        await new Promise((resolve) => step.signal.addEventListener('abort', resolve, { once: true }));
      }
    });
    return ctx.input.tag;
  }
}

describe('flow control: runs admitted from their key\'s queue (e2e, real Redis)', () => {
  it('an admitted run not yet claimed is not held back; canceling it gives its slot to the next run, and the key ends empty', async () => {
    const prefix = uniquePrefix('admitted');
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [AdmittedKeyed]);
    suite.apps.push(producer);
    const emit = (tag: string) => producer.client.emit(AdmittedKeyed, { customer: 'acme', tag });
    const handles = [await emit('a'), await emit('b'), await emit('c')];
    const delayedBy = async (i: number) => (await producer.client.getRun(handles[i].id))?.delayedBy;
    const heldBack = async () => (await producer.client.getStats()).workflows.find((w) => w.name === 'admitted-keyed')?.heldBack;
    expect([await delayedBy(0), await delayedBy(1), await delayedBy(2)]).toEqual([undefined, 'concurrency', 'concurrency']);
    expect(await heldBack()).toEqual({ concurrency: 2 });

    // canceling the run with the slot admits b: it is queued in the ready set, no longer held back
    await producer.client.cancelRun(handles[0].id);
    expect((await producer.client.getRun(handles[1].id))?.status).toBe('queued');
    expect([await delayedBy(1), await delayedBy(2)]).toEqual([undefined, 'concurrency']);
    expect(await heldBack()).toEqual({ concurrency: 1 });
    const listed = (await producer.client.listRuns({ workflow: 'admitted-keyed', status: 'queued' })).runs;
    expect(listed.map((r) => [r.id, r.delayedBy])).toEqual(
      expect.arrayContaining([
        [handles[1].id, undefined],
        [handles[2].id, 'concurrency'],
      ]),
    );

    // canceling the admitted run gives its slot to c; canceling c leaves the key without state
    await producer.client.cancelRun(handles[1].id);
    expect(await delayedBy(2)).toBeUndefined();
    expect(await heldBack()).toBeUndefined();
    await producer.client.cancelRun(handles[2].id);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);

    // the key has room again: a new run is not held back, and runs once a worker starts
    const d = await producer.client.emit(AdmittedKeyed, { customer: 'acme', tag: 'd' });
    expect((await producer.client.getRun(d.id))?.delayedBy).toBeUndefined();
    suite.apps.push(await startApp({ connection: suite.redis.url, prefix }, [AdmittedKeyed]));
    expect(await d.result({ timeoutMs: 10_000 })).toBe('d');
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);

  it('an admitted run released by its worker\'s shutdown goes back to the ready set with its slot and runs on another worker', async () => {
    const prefix = uniquePrefix('admitted-release');
    await suite.direct.del('admitted:globex:starts', 'admitted:globex:go');
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [AdmittedKeyed]);
    suite.apps.push(producer);
    const first = await producer.client.emit(AdmittedKeyed, { customer: 'globex', tag: 'first' });
    const second = await producer.client.emit(AdmittedKeyed, { customer: 'globex', tag: 'second', hang: true });
    const third = await producer.client.emit(AdmittedKeyed, { customer: 'globex', tag: 'third' });
    expect((await producer.client.getRun(second.id))?.delayedBy).toBe('concurrency');

    // worker A runs the first run; its completion admits the second, which A claims and hangs in
    const workerA = await startApp({ connection: suite.redis.url, prefix, shutdownGraceMs: 200, worker: { leaseMs: 30_000, reaperIntervalMs: 20 } }, [AdmittedKeyed]);
    expect(await first.result({ timeoutMs: 10_000 })).toBe('first');
    await waitFor(async () => (await producer.client.getRun(second.id))?.status === 'running', 10_000);
    // A's shutdown releases it (long before its 30 s lease would expire)
    await workerA.close();
    const released = await producer.client.getRun(second.id);
    expect(released?.status).toBe('queued');
    expect(released?.delayedBy).toBeUndefined();
    expect((await producer.client.getRun(third.id))?.delayedBy).toBe('concurrency');

    await suite.direct.set('admitted:globex:go', '1');
    suite.apps.push(await startApp({ connection: suite.redis.url, prefix }, [AdmittedKeyed]));
    expect(await second.result({ timeoutMs: 10_000 })).toBe('second');
    expect(await third.result({ timeoutMs: 10_000 })).toBe('third');
    expect((await producer.client.getRunHistory(second.id)).map((e) => e.type)).toContain('released');
    // one at a time: the second ran twice (released, then run again), the third after it
    expect(await suite.direct.lrange('admitted:globex:starts', 0, -1)).toEqual(['first', 'second', 'second', 'third']);
    expect(await flowKeysLeft(suite.direct, prefix)).toEqual([]);
  }, 30_000);
});
