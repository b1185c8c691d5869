/**
 * getRunSteps lists a run's steps in the order the run made the calls, whatever the clocks say: an
 * emitted child (committed with the server's time) before the steps called after it (started by the
 * worker's clock, often in the same millisecond).
 */
import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Step, Workflow, type WorkflowContext } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

@Workflow('order-child')
@Injectable()
class OrderChild {
  async execute() {
    return 'child';
  }
}

@Injectable()
class OrderSteps {
  @Step({ name: 'stepOne' })
  async stepOne() {
    return 1;
  }

  @Step({ name: 'stepTwo' })
  async stepTwo() {
    return 2;
  }
}

@Workflow('order-parent')
@Injectable()
class OrderParent {
  constructor(private readonly steps: OrderSteps) {}

  async execute(ctx: WorkflowContext<unknown>) {
    await ctx.step.emitWorkflow('child', OrderChild, {});
    await this.steps.stepOne();
    await ctx.step.run('inline', () => 'x');
    await ctx.step.sleep('nap', 1);
    await this.steps.stepTwo();
    return 'done';
  }
}

describe('getRunSteps order (e2e, private redis-server)', () => {
  const suite = useSuiteRedis();

  it('lists 100 runs’ steps in call order', async () => {
    const app = await startApp({ connection: suite.redis.url, prefix: uniquePrefix('order'), worker: { concurrency: 20, reaperIntervalMs: 20 } }, [OrderChild, OrderSteps, OrderParent]);
    suite.apps.push(app);
    const handles = await Promise.all(Array.from({ length: 100 }, () => app.client.emit(OrderParent, {})));
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
    const orders = await Promise.all(handles.map(async (h) => (await app.client.getRunSteps(h.id)).map((s) => s.name).join(',')));
    const wrong = orders.filter((order) => order !== 'child,stepOne,inline,nap,stepTwo');
    expect(wrong).toEqual([]);
    // a first-attempt success still reports one attempt, in the steps and in the history
    const steps = await app.client.getRunSteps(handles[0].id);
    expect(steps.find((s) => s.name === 'stepOne')?.attempts).toBe(1);
    const history = await app.client.getRunHistory(handles[0].id);
    expect(history.find((e) => e.type === 'step-succeeded' && e.step === 'stepOne')?.attempt).toBe(1);
  }, 60_000);
});
