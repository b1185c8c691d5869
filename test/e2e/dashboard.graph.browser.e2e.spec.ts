import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { chromium, type Browser } from 'playwright-core';
import { Workflow, WorkflowClient, WorkflowDashboardModule, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';

const CHROMIUM = '/usr/bin/chromium';
const gates = new Map<string, () => void>();

@Workflow('dg-task')
@Injectable()
class TaskWorkflow {
  async execute(ctx: WorkflowContext<{ name: string; gated?: boolean }>) {
    if (ctx.input.gated) await new Promise<void>((resolve) => gates.set(ctx.input.name, resolve));
    return ctx.input.name;
  }
}

@Workflow('dg-parent')
@Injectable()
class ParentWorkflow {
  async execute(ctx: WorkflowContext) {
    return ctx.step.graph('pipeline', {
      fetchA: { workflow: TaskWorkflow, input: { name: 'fetchA' } },
      persistA: { workflow: TaskWorkflow, input: { name: 'persistA' }, after: ['fetchA'] },
      fetchB: { workflow: TaskWorkflow, input: { name: 'fetchB', gated: true } },
      persistB: { workflow: TaskWorkflow, input: { name: 'persistB' }, after: ['fetchB'] },
      report: { workflow: TaskWorkflow, input: { name: 'report' }, after: ['persistA', 'persistB'] },
    });
  }
}

/** The parent's page draws its graph level by level, each node with its status and a link to its run, under the dashboard's CSP. */
describe('dashboard in a browser: a graph of child runs (e2e, chromium, real Redis)', () => {
  let redis: TestRedis;
  let app: INestApplication;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does.`);
    redis = await redisUrlForTests();
    const moduleRef = await Test.createTestingModule({
      imports: [
        WorkflowModule.forRoot({ connection: redis.url, prefix: uniquePrefix('dash-graph'), worker: { reaperIntervalMs: 20 } }),
        WorkflowDashboardModule.forRoot({ path: '/workflows', guard: { canActivate: () => true } }),
      ],
      providers: [TaskWorkflow, ParentWorkflow],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  }, 60_000);

  afterAll(async () => {
    for (const open of gates.values()) open();
    await browser?.close();
    await app?.close();
    await redis?.stop();
  });

  it("draws the graph's state on the parent's page while it runs, and again once it is over", async () => {
    const client = app.get(WorkflowClient);
    const parent = await client.emit(ParentWorkflow, {});
    const deadline = Date.now() + 10_000;
    while (!gates.has('fetchB') || (await client.getRunGraphs(parent.id))[0]?.nodes.find((n) => n.name === 'persistA')?.status !== 'succeeded') {
      if (Date.now() > deadline) throw new Error('the graph did not get to persistA');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (message) => {
      // what the CSP refused (a favicon's 404 is no concern of this test)
      if (message.type() === 'error' && /Content Security Policy|Refused/i.test(message.text())) errors.push(message.text());
    });
    const base = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/workflows`;
    await page.goto(`${base}#/runs/${parent.id}`);
    await page.getByRole('heading', { name: 'Graph pipeline (5 nodes)' }).waitFor();
    const status = (node: string) => page.locator(`li.graph-node[data-node="${node}"] .badge`).textContent();
    await expect(status('fetchA')).resolves.toBe('succeeded');
    await expect(status('persistA')).resolves.toBe('succeeded');
    await expect(status('fetchB')).resolves.toBe('running');
    await expect(status('persistB')).resolves.toBe('pending');
    await expect(status('report')).resolves.toBe('pending');
    // levels: the roots first, report last
    const levels = await page.locator('li.graph-level').evaluateAll((items) =>
      items.map((item) => [...item.querySelectorAll('li.graph-node')].map((node) => node.getAttribute('data-node'))),
    );
    expect(levels).toEqual([['fetchA', 'fetchB'], ['persistA', 'persistB'], ['report']]);
    await expect(page.locator('li.graph-node[data-node="report"] .graph-after').textContent()).resolves.toBe('after persistA, persistB');
    // a started node links to its run
    const fetchB = (await client.getRunGraphs(parent.id))[0].nodes.find((n) => n.name === 'fetchB')!;
    await expect(page.locator('li.graph-node[data-node="fetchB"] a').getAttribute('href')).resolves.toBe(`#/runs/${fetchB.runId}`);

    gates.get('fetchB')!();
    await parent.result({ timeoutMs: 10_000 });
    // the page re-reads a live run: once it is over, every node shows succeeded
    await page.locator('li.graph-node[data-node="report"] .badge', { hasText: 'succeeded' }).waitFor({ timeout: 10_000 });
    await expect(page.locator('li.graph-node .badge').allTextContents()).resolves.toEqual(Array(5).fill('succeeded'));
    expect(errors).toEqual([]);
  }, 40_000);
});
