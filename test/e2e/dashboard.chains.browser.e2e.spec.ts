import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { chromium, type Browser } from 'playwright-core';
import { Workflow, WorkflowClient, WorkflowDashboardModule, WorkflowModule, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';

const CHROMIUM = '/usr/bin/chromium';

@Workflow('dch-loop', { maxAttempts: 1 })
@Injectable()
class LoopWorkflow {
  async execute(ctx: WorkflowContext<{ i: number; fail?: boolean }>) {
    await ctx.step.run('work', () => ctx.input.i);
    if (ctx.input.i < 1) return ctx.continueAsNew({ i: ctx.input.i + 1, fail: ctx.input.fail });
    if (ctx.input.fail) throw new Error('bug');
    return ctx.input.i;
  }
}

/** The run page links a chain made by continueAsNew both ways, and a fork to its original, in a real browser. */
describe('dashboard in a browser: continued-from/as and forked-from links (e2e, chromium, real Redis)', () => {
  let redis: TestRedis;
  let app: INestApplication;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does.`);
    redis = await redisUrlForTests();
    const moduleRef = await Test.createTestingModule({
      imports: [
        WorkflowModule.forRoot({ connection: redis.url, prefix: uniquePrefix('dash-chains'), worker: { reaperIntervalMs: 20 } }),
        WorkflowDashboardModule.forRoot({ path: '/workflows', guard: { canActivate: () => true } }),
      ],
      providers: [LoopWorkflow],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await redis?.stop();
  });

  it('the first run links the next, the next links back; a fork links its original', async () => {
    const client = app.get(WorkflowClient);
    const first = await client.emit(LoopWorkflow, { i: 0, fail: true });
    await expect(first.result({ timeoutMs: 20_000 })).rejects.toThrow('bug');
    const second = (await client.getRun(first.id))!.continuedAs!;
    const fork = await client.forkRun(second, { fromStep: 'work', input: { i: 1 } });
    await fork.result({ timeoutMs: 20_000 });

    const page = await browser.newPage();
    const base = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/workflows`;
    await page.goto(`${base}#/runs/${first.id}`);
    await page.locator('a.continued-as-link', { hasText: second }).click();
    await page.locator('a.continued-from-link', { hasText: first.id }).waitFor();
    await page.goto(`${base}#/runs/${fork.id}`);
    await page.locator('a.forked-from-link', { hasText: second }).click();
    await page.locator('a.continued-from-link', { hasText: first.id }).waitFor();
    await page.close();
  }, 60_000);
});
