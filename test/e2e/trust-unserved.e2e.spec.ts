/**
 * A run of a workflow that no live worker serves is listed and counted, the dashboard's data says the
 * workflow has no worker, and the emitting app warns once per workflow saying what to do (issue 24, item 7).
 */
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { chromium } from 'playwright-core';
import { OnFailure, Workflow, WorkflowClient, WorkflowDashboardModule, WorkflowModule } from '../../lib/index.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startApp, useSuiteRedis } from '../support/workflow-app.js';

@Workflow('trust-unserved', { queue: 'unserved-q', maxAttempts: 4 })
@Injectable()
class UnservedWorkflow {
  async execute() {
    return 'finally served';
  }

  @OnFailure()
  async failed() {}
}

describe('a workflow that no live worker serves (e2e, private redis-server)', () => {
  const suite = useSuiteRedis();

  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('is listed, counted and shown without a worker; the emitting app warns once', async () => {
    const prefix = uniquePrefix('unserved');
    const warnings: string[] = [];
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(function (this: Logger, message: unknown) {
      warnings.push(String(message));
    });
    // an API-only app emits by class; the class is a provider of no app
    const api = await startApp({ connection: suite.redis.url, prefix, worker: false });
    suite.apps.push(api);
    const first = await api.client.emit(UnservedWorkflow, {});
    const second = await api.client.emit(UnservedWorkflow, {});
    expect((await api.client.getRun(first.id))?.status).toBe('queued');

    // another app (a dashboard, an operator's) sees the runs and the workflow
    const other = await startApp({ connection: suite.redis.url, prefix, worker: false });
    suite.apps.push(other);
    const listed = await other.client.listRuns({ workflow: 'trust-unserved' });
    expect(listed.runs.map((r) => r.id).sort()).toEqual([first.id, second.id].sort());
    expect((await other.client.listRuns()).runs.map((r) => r.id)).toContain(first.id);
    const stats = await other.client.getStats();
    const entry = stats.workflows.find((w) => w.name === 'trust-unserved');
    expect(entry).toMatchObject({ queue: 'unserved-q', workers: 0 });
    expect(entry!.counts.queued).toBe(2);
    const workflows = await other.client.listWorkflows();
    const meta = workflows.find((w) => w.name === 'trust-unserved');
    expect(meta).toMatchObject({ queue: 'unserved-q', workers: [], options: { maxAttempts: 4 } });
    expect(meta!.counts.queued).toBe(2);

    const told = warnings.filter((w) => w.includes("'trust-unserved'"));
    expect(told).toEqual([
      "No live worker serves workflow 'trust-unserved': its runs wait in 'queued' (listed and counted, using no attempts) until one does. " +
        'Add UnservedWorkflow to the providers of an app that runs a worker (WorkflowModule.forRoot() without worker: false).',
    ]);

    // a worker that has the class starts: the runs execute, and its registration replaces the emitter's
    const worker = await startApp({ connection: suite.redis.url, prefix }, [UnservedWorkflow]);
    suite.apps.push(worker);
    expect(await first.result({ timeoutMs: 15_000 })).toBe('finally served');
    expect(await second.result({ timeoutMs: 15_000 })).toBe('finally served');
    const served = (await other.client.getStats()).workflows.find((w) => w.name === 'trust-unserved');
    expect(served?.workers).toBe(1);
    expect(served?.counts.succeeded).toBe(2);
  }, 40_000);

  it('the dashboard shows the workflow as having no worker', async () => {
    const prefix = uniquePrefix('unserveddash');
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const moduleRef = await Test.createTestingModule({
      imports: [WorkflowModule.forRoot({ connection: suite.redis.url, prefix, worker: false }), WorkflowDashboardModule.forRoot({ path: '/workflows' })],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
    try {
      await app.get(WorkflowClient).emit(UnservedWorkflow, {});
      const page = await browser.newPage({ viewport: { width: 1280, height: 700 } });
      await page.goto(`${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/workflows`);
      const row = page.locator('section', { has: page.getByRole('heading', { name: 'Workflows' }) }).locator('tr', { hasText: 'trust-unserved' });
      await row.locator('.badge.no-worker').waitFor({ timeout: 10_000 });
      await expect(row.locator('.badge.no-worker').textContent()).resolves.toBe('no worker');
      await expect(row.locator('.badge.no-worker').getAttribute('title')).resolves.toContain('Add its class to the providers of an app that runs a worker');
      if (process.env.UNSERVED_SCREENSHOT) await page.screenshot({ path: process.env.UNSERVED_SCREENSHOT });
    } finally {
      await browser.close();
      await app.close();
    }
  }, 40_000);
});
