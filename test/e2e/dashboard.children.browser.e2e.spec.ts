import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { chromium, type Browser } from 'playwright-core';
import { Workflow, WorkflowClient, WorkflowDashboardModule, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';

const CHROMIUM = '/usr/bin/chromium';

@Workflow('dc-child')
@Injectable()
class ChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.input.n;
  }
}

@Workflow('dc-parent')
@Injectable()
class ParentWorkflow {
  async execute(ctx: WorkflowContext<{ children: number }>) {
    return Promise.all(Array.from({ length: ctx.input.children }, (_, n) => ctx.step.runWorkflow(`child-${n}`, ChildWorkflow, { n })));
  }
}

/** A parent with more children than its page shows, under the app's global prefix, in a real browser. */
describe('dashboard in a browser: a parent with many children (e2e, chromium, real Redis)', () => {
  let redis: TestRedis;
  let app: INestApplication;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does.`);
    redis = await redisUrlForTests();
    const moduleRef = await Test.createTestingModule({
      imports: [
        WorkflowModule.forRoot({ connection: redis.url, prefix: uniquePrefix('dash-children'), worker: { reaperIntervalMs: 20 } }),
        WorkflowDashboardModule.forRoot({ path: '/workflows', guard: { canActivate: () => true } }),
      ],
      providers: [ChildWorkflow, ParentWorkflow],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    app.setGlobalPrefix('api');
    await app.listen(0, '127.0.0.1');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await redis?.stop();
  });

  it("shows the newest 50 children on the parent's page and pages through all of them from there", async () => {
    const client = app.get(WorkflowClient);
    const parent = await client.emit(ParentWorkflow, { children: 60 });
    await parent.result({ timeoutMs: 30_000 });

    const page = await browser.newPage();
    const base = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/api/workflows`;
    await page.goto(`${base}#/runs/${parent.id}`);
    await page.getByRole('heading', { name: 'Children (50+)' }).waitFor();
    await page.getByRole('link', { name: 'All children »' }).click();
    await page.getByText('Children of').waitFor();
    const rows = page.locator('tbody tr');
    await expect(rows.count()).resolves.toBe(25);
    await expect(rows.locator('td:nth-child(2)').allTextContents()).resolves.toEqual(Array(25).fill('dc-child'));
    const seen = new Set(await rows.locator('a.run-link').allTextContents());
    for (let pageNo = 2; pageNo <= 3; pageNo += 1) {
      const first = await rows.first().locator('a.run-link').textContent();
      await page.getByRole('link', { name: 'Next page »' }).click();
      for (let deadline = Date.now() + 10_000; (await rows.first().locator('a.run-link').textContent()) === first; ) {
        if (Date.now() > deadline) throw new Error(`page ${pageNo} of the children did not load`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      for (const id of await rows.locator('a.run-link').allTextContents()) seen.add(id);
    }
    expect(seen.size).toBe(60);
    await expect(page.getByRole('link', { name: 'Next page »' }).count()).resolves.toBe(0);
  }, 60_000);
});
