import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { compileFixtures } from '../support/worker-process.js';

/**
 * prom-client is an optional peer: an app that does not set `metrics` never imports it (installed or not),
 * and `metrics: true` without it fails at start with what to do. Real processes: one where prom-client
 * is installed, and ones where resolving it fails as for a missing package (test/fixtures/hide-prom-client.mjs).
 */
describe('metrics: loading prom-client (real processes)', () => {
  let redis: TestRedis;
  let script: string;

  beforeAll(async () => {
    redis = await redisUrlForTests();
    script = path.join(compileFixtures(), 'test', 'fixtures', 'metrics-app.js');
  }, 120_000);

  afterAll(async () => {
    await redis?.stop();
  });

  const runApp = (env: { METRICS?: string; WILLSOTO?: string }, withoutPromClient: boolean) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, [...(withoutPromClient ? ['--import', './test/fixtures/hide-prom-client.mjs'] : []), script], {
        cwd: path.resolve(path.dirname(script), '../../..'),
        env: { ...process.env, NODE_OPTIONS: '', REDIS_URL: redis.url, PREFIX: uniquePrefix('metrics_loading'), ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      child.on('exit', (code) => resolve({ code, output }));
    });

  it('an app that does not set metrics runs workflows without importing prom-client, though it is installed', async () => {
    const { code, output } = await runApp({}, false);
    expect(output).toContain('OUTPUT 42');
    expect(output).toContain('PROM_CLIENT_LOADED false');
    expect(code).toBe(0);
  }, 60_000);

  it('an app without prom-client that does not set metrics starts and runs workflows', async () => {
    const { code, output } = await runApp({}, true);
    expect(output).toContain('OUTPUT 42');
    expect(code).toBe(0);
  }, 60_000);

  it('metrics: true loads prom-client when it is installed', async () => {
    const { code, output } = await runApp({ METRICS: '1' }, false);
    expect(output).toContain('PROM_CLIENT_LOADED true');
    expect(code).toBe(0);
  }, 60_000);

  it('@willsoto/nestjs-prometheus serves the metrics on its /metrics (prom-client\'s global registry)', async () => {
    // In a real process: jest cannot load it (a CommonJS package that requires Nest 12's ES modules).
    const { code, output } = await runApp({ METRICS: '1', WILLSOTO: '1' }, false);
    expect(output).toContain('SCRAPE 200');
    expect(output).toContain('workflow_runs_started_total{workflow="metrics-loading",queue="loading"} 1');
    expect(output).toContain('workflow_runs_succeeded_total{workflow="metrics-loading",queue="loading"} 1');
    expect(output).toMatch(/workflow_runs\{workflow="metrics-loading",queue="loading",status="succeeded"\} 1/);
    expect(code).toBe(0);
  }, 60_000);

  it('metrics: true without prom-client fails at start, saying to install it', async () => {
    const { code, output } = await runApp({ METRICS: '1' }, true);
    expect(output).toMatch(/START_FAILED WorkflowConfigurationError: WorkflowModule option metrics is set, but prom-client could not be loaded \(Cannot find package 'prom-client'.*\): install it with `npm i prom-client`, or remove the metrics option\./);
    expect(output).not.toContain('OUTPUT');
    expect(code).toBe(1);
  }, 60_000);
});
