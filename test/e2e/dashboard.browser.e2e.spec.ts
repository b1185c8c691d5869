import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, Module, type CanActivate, type ExecutionContext, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WorkflowClient, WorkflowDashboardModule, WorkflowModule } from '../../lib/index.js';
import { AppModule } from '../../sample/app.module.js';
import { runDemo, type DemoReport } from '../../sample/demo.js';
import { CheckoutWorkflow } from '../../sample/orders/checkout.workflow.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';

// CHROMIUM_PATH, else where Debian's, Fedora's and Homebrew's packages put it (scripts/setup.sh installs it).
const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/Applications/Chromium.app/Contents/MacOS/Chromium'];
const CHROMIUM = CHROMIUM_CANDIDATES.find((candidate) => candidate && existsSync(candidate));
// The screenshot in docs/dashboard.md is rewritten only on request (UPDATE_SCREENSHOT=1 npm test), so that a test run
// leaves the work tree clean; otherwise the page is still captured, to a temporary file.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1'
  ? new URL('../../docs/dashboard-run.png', import.meta.url).pathname
  : path.join(os.tmpdir(), `dashboard-run-${process.pid}.png`);

/** The app's own auth, as a user would mount the dashboard behind it. */
@Injectable()
class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers.authorization === 'Bearer ops-secret';
  }
}

@Module({})
class GuardedOpsModule {}

/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core) against the sample app
 * with the dashboard mounted, on a free port, with a private redis-server.
 */
describe('dashboard in a browser (e2e, chromium, real Redis)', () => {
  let redis: TestRedis;
  let app: INestApplication;
  let guarded: INestApplication;
  let browser: Browser;
  let page: Page;
  let base: string;
  let guardedBase: string;
  let report: DemoReport;

  beforeAll(async () => {
    if (!CHROMIUM) throw new Error('chromium is missing: run bash scripts/setup.sh (Debian: apt-get install chromium), or set CHROMIUM_PATH.');
    redis = await redisUrlForTests();
    const prefix = uniquePrefix('dash');
    const moduleRef = await Test.createTestingModule({
      imports: [AppModule.register({ redisUrl: redis.url, prefix, dashboard: { path: '/workflows' } })],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    base = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/workflows`;

    // A second app on the same Redis: an API process (no worker) with a guarded, read-only dashboard.
    const guardedRef = await Test.createTestingModule({
      imports: [
        WorkflowModule.forRoot({ connection: redis.url, prefix, worker: false }),
        GuardedOpsModule,
        WorkflowDashboardModule.forRoot({ path: '/ops/workflows', guard: TokenGuard, readOnly: true }),
      ],
    }).compile();
    guarded = guardedRef.createNestApplication({ logger: false });
    await guarded.listen(0, '127.0.0.1');
    guardedBase = `${(await guarded.getUrl()).replace('[::1]', '127.0.0.1')}/ops/workflows`;

    // The failed import is left failed, to be retried from the dashboard.
    report = await runDemo(app, () => undefined, { retryFailedImport: false });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await guarded?.close();
    await app?.close();
    await redis?.stop();
  });

  it('overview → failed runs → a failed import: steps, history, children; retry makes it succeed', async () => {
    await page.goto(base);
    const workflows = page.locator('section', { has: page.getByRole('heading', { name: 'Workflows' }) });
    await workflows.getByRole('link', { name: 'import-catalog' }).waitFor();
    await expect(workflows.locator('tr', { hasText: 'checkout' }).locator('a.status-failed').textContent()).resolves.toBe('1');
    await page.getByRole('heading', { name: 'Workers (1 alive)' }).waitFor();

    await page.getByRole('link', { name: 'Runs', exact: true }).click();
    await page.locator('select[name="status"]').selectOption('failed');
    await page.waitForURL(/status=failed/);
    // The hash changes at once; the filtered list replaces the one on screen when it has loaded.
    // Polled through locators: a waitForFunction predicate is evaluated as a string, which the
    // dashboard's Content-Security-Policy (script-src 'self') refuses in recent Chromium builds.
    const rows = page.locator('tbody tr');
    for (let deadline = Date.now() + 10_000; ; ) {
      const shown = await rows.locator('.badge').allTextContents();
      if (shown.length > 0 && shown.every((status) => status === 'failed')) break;
      if (Date.now() > deadline) throw new Error(`the runs list still shows ${JSON.stringify(shown)} after filtering by failed`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const statuses = await rows.locator('.badge').allTextContents();
    expect(statuses.length).toBeGreaterThanOrEqual(3);
    expect(new Set(statuses)).toEqual(new Set(['failed']));

    const failedImport = report.imports.find((i) => i.firstStatus === 'failed');
    expect(failedImport).toBeDefined();
    await rows.filter({ hasText: 'import-catalog' }).locator('a.run-link').click();
    await page.waitForURL(new RegExp(`#/runs/${failedImport!.runId.replaceAll('.', '\\.')}$`));
    await expect(page.locator('h1 .badge').textContent()).resolves.toBe('failed');
    await page.getByText('ChildWorkflowError').first().waitFor();

    // The timeline: the download step, one child step per row and the XML import beside them.
    const steps = page.locator('li.step');
    await page.locator('li.step[data-step="download"]').waitFor();
    expect(await steps.count()).toBeGreaterThanOrEqual(5);
    await expect(page.locator('li.step', { hasText: 'import-xml' }).locator('a').count()).resolves.toBe(1);
    const history = page.locator('section', { has: page.getByRole('heading', { name: /^History/ }) });
    expect(await history.locator('tbody tr').count()).toBeGreaterThan(2);
    const children = page.locator('section', { has: page.getByRole('heading', { name: /^Children/ }) });
    expect(await children.locator('tbody tr').count()).toBe(5);

    await page.locator('button[data-action="retry"]').click();
    await page.locator('h1 .badge', { hasText: 'succeeded' }).waitFor({ timeout: 20_000 });
    await page.getByRole('heading', { name: 'Output' }).waitFor();
    await expect(page.locator('section', { hasText: 'Output' }).textContent()).resolves.toContain('"xmlProducts"');
    expect(await history.locator('tbody tr .event-type', { hasText: /^retried$/ }).count()).toBe(1);
    await expect(app.get(WorkflowClient).getRun(failedImport!.runId)).resolves.toMatchObject({ status: 'succeeded' });

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: false });

    // A child links back to its parent.
    await children.locator('a').first().click();
    await page.locator('a.parent-link', { hasText: failedImport!.runId }).waitFor();
  }, 60_000);

  it('overview charts runs started, succeeded and failed per minute over the last hour, per workflow, as Redis counts them', async () => {
    const violations: string[] = [];
    page.on('console', (message) => {
      if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text());
    });
    await page.goto(`${base}#/`);
    await page.getByRole('heading', { name: 'Runs per minute' }).waitFor();
    const chart = page.locator('svg.chart[data-workflow="checkout"]');
    await chart.waitFor();
    const keys = ['started', 'succeeded', 'failed'] as const;
    // The page re-reads every 2 s and runs of the demo may still be finishing: compare once both agree.
    let expected = await app.get(WorkflowClient).getThroughput();
    let checkout = expected.workflows.find((w) => w.name === 'checkout')!;
    const sum = (key: (typeof keys)[number]) => checkout.minutes.reduce((total, m) => total + m[key], 0);
    for (let deadline = Date.now() + 10_000; ; ) {
      const shown = await Promise.all(keys.map((key) => chart.getAttribute(`data-${key}`)));
      if (shown.every((value, i) => value === String(sum(keys[i])))) break;
      if (Date.now() > deadline) throw new Error(`the chart shows ${JSON.stringify(shown)}, getThroughput ${JSON.stringify(keys.map(sum))}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expected = await app.get(WorkflowClient).getThroughput();
      checkout = expected.workflows.find((w) => w.name === 'checkout')!;
    }
    expect(sum('started')).toBeGreaterThan(0);
    expect(sum('failed')).toBeGreaterThan(0);
    // One chart per workflow, each with a line per series and a hover target per minute.
    expect(await page.locator('svg.chart').count()).toBe(expected.workflows.length);
    for (const key of keys) expect(await chart.locator(`polyline.series-${key}`).count()).toBe(1);
    expect(await chart.locator('rect.minute').count()).toBe(60);
    const busiest = checkout.minutes.findIndex((m) => m.started > 0);
    await expect(chart.locator('rect.minute title').nth(busiest).textContent()).resolves.toContain(`started ${checkout.minutes[busiest].started}`);
    // The line is drawn: the started series rises above the baseline at that minute.
    const points = ((await chart.locator('polyline.series-started').getAttribute('points')) ?? '').split(' ').map((p) => Number(p.split(',')[1]));
    expect(points).toHaveLength(60);
    expect(Math.min(...points)).toBeLessThan(points[0]);
    expect(violations).toEqual([]);
  }, 30_000);

  it('search by idempotency key opens the declined checkout, with its compensated step', async () => {
    const declined = report.outcomes.find((o) => o.status === 'failed')!;
    await page.goto(`${base}#/`);
    await page.locator('input[name="q"]').fill(declined.orderId);
    await page.locator('#search button').click();
    await page.waitForURL(new RegExp(`#/runs/${declined.runId.replaceAll('.', '\\.')}$`));
    await page.locator('li.step[data-step="reserve-stock"] .badge', { hasText: 'compensated' }).waitFor();
    await page.locator('li.step[data-step="charge-payment"]', { hasText: 'PaymentDeclinedError' }).waitFor();
  }, 30_000);

  it('shows an HTML payload as text, and cuts a large one with a way to see the whole', async () => {
    const client = app.get(WorkflowClient);
    const markup = '<script>window.__injected = 1</script><img src="x" onerror="window.__injected = 2"><b id="injected">bold</b>';
    const html = await client.emit(CheckoutWorkflow, { orderId: markup, sku: 'mug', quantity: 1, amountCents: 100, paymentToken: 'tok_visa' });
    await html.result({ timeoutMs: 10_000 });
    await page.goto(`${base}#/runs/${encodeURIComponent(html.id)}`);
    const input = page.locator('section', { has: page.getByRole('heading', { name: 'Input' }) });
    await input.locator('.j-string', { hasText: '<script>window.__injected = 1</script>' }).waitFor();
    expect(await input.textContent()).toContain(JSON.stringify(markup));
    expect(await page.locator('#injected').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { __injected?: number }).__injected)).toBeUndefined();

    const longId = `L-${'0123456789'.repeat(800)}`;
    const large = await client.emit(CheckoutWorkflow, { orderId: longId, sku: 'mug', quantity: 1, amountCents: 100, paymentToken: 'tok_visa' });
    await large.result({ timeoutMs: 10_000 });
    await page.goto(`${base}#/runs/${encodeURIComponent(large.id)}`);
    const largeInput = page.locator('section', { has: page.getByRole('heading', { name: 'Input' }) });
    await largeInput.getByText('Truncated').waitFor();
    expect(await largeInput.textContent()).not.toContain(longId);
    await largeInput.getByRole('button', { name: 'Show all' }).click();
    expect(await largeInput.locator('pre').textContent()).toContain(longId);
  }, 30_000);

  it('a guarded dashboard answers 403 without credentials; read-only hides and refuses the actions', async () => {
    const anonymous = await browser.newPage();
    const refused = await anonymous.goto(guardedBase);
    expect(refused?.status()).toBe(403);
    for (const path of ['/api/stats', '/api/runs', '/assets/dashboard.js']) {
      expect((await fetch(`${guardedBase}${path}`)).status).toBe(403);
    }
    await anonymous.close();

    const failed = report.outcomes.find((o) => o.status === 'failed')!;
    const authorized = await browser.newPage({ extraHTTPHeaders: { authorization: 'Bearer ops-secret' } });
    const allowed = await authorized.goto(`${guardedBase}#/runs/${encodeURIComponent(failed.runId)}`);
    expect(allowed?.status()).toBe(200);
    await authorized.locator('h1 .badge', { hasText: 'failed' }).waitFor();
    expect(await authorized.locator('button[data-action]').count()).toBe(0);
    const retry = await fetch(`${guardedBase}/api/runs/${failed.runId}/retry`, {
      method: 'POST',
      headers: { authorization: 'Bearer ops-secret', 'x-workflow-dashboard': '1' },
    });
    expect(retry.status).toBe(403);
    expect(((await retry.json()) as { message: string }).message).toContain('read-only');
    await authorized.close();
  }, 30_000);
});
