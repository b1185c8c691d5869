import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

// Priority keeps working with flow control (README "Flow control"): a key's held runs wait in the order of
// the ready set (priority, then time), and fairness takes turns between keys within a priority.
const suite = useSuiteRedis();
let log = '';

@Workflow('prio-keyed', { concurrency: { key: (input: { customer: string }) => input.customer, limit: 1 } })
@Injectable()
class PrioKeyed {
  async execute(ctx: WorkflowContext<{ customer: string; n: number }>) {
    await suite.direct.rpush(`${log}:order`, String(ctx.input.n));
  }
}

@Workflow('prio-fair', { concurrency: { key: (input: { customer: string }) => input.customer, limit: 100 }, fairness: true })
@Injectable()
class PrioFair {
  async execute(ctx: WorkflowContext<{ customer: string; n: number }>) {
    await suite.direct.rpush(`${log}:order`, `${ctx.input.customer}${ctx.input.n}`);
  }
}

describe('flow control with priorities (e2e, real Redis)', () => {
  it("a key's held runs start highest priority first, then in emit order", async () => {
    const prefix = uniquePrefix('prio');
    log = prefix;
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [PrioKeyed]);
    suite.apps.push(producer);
    // run 0 takes the key's slot; the others wait in its held set
    const priorities = [0, 0, 5, 0, 10, 5];
    const handles = [];
    for (const [n, priority] of priorities.entries()) handles.push(await producer.client.emit(PrioKeyed, { customer: 'acme', n }, { priority }));
    expect((await producer.client.getRun(handles[4].id))?.delayedBy).toBe('concurrency');
    const worker = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 4 } }, [PrioKeyed]);
    suite.apps.push(worker);
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 10_000 })));
    expect(await suite.direct.lrange(`${prefix}:order`, 0, -1)).toEqual(['0', '4', '2', '5', '1', '3']);
  });

  it("with fairness, a key's higher priority run is its next turn and goes ahead of other keys' runs", async () => {
    const prefix = uniquePrefix('prio-fair');
    log = prefix;
    const producer = await startApp({ connection: suite.redis.url, prefix, worker: false }, [PrioFair]);
    suite.apps.push(producer);
    const handles = [];
    for (let n = 0; n < 4; n++) handles.push(await producer.client.emit(PrioFair, { customer: 'a', n }));
    for (let n = 0; n < 4; n++) handles.push(await producer.client.emit(PrioFair, { customer: 'b', n }));
    // b's last run, urgent: admitted when b0 is claimed (a fair key has one run in the ready set at a time),
    // then claimed before a1, which was admitted earlier at priority 0
    handles.push(await producer.client.emit(PrioFair, { customer: 'b', n: 9 }, { priority: 10 }));
    const worker = await startApp({ connection: suite.redis.url, prefix, worker: { concurrency: 1 } }, [PrioFair]);
    suite.apps.push(worker);
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 10_000 })));
    const order = await suite.direct.lrange(`${prefix}:order`, 0, -1);
    // a key's runs keep their emit order among equal priorities; the keys take turns
    expect(order.filter((o) => o.startsWith('a'))).toEqual(['a0', 'a1', 'a2', 'a3']);
    expect(order.indexOf('b9')).toBeLessThan(3);
    const turns = order.filter((o) => o !== 'b9').map((o) => o[0]).join('');
    expect(turns).toMatch(/^(ab){4}$|^(ba){4}$/);
  });
});
