import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getFreePort, rawCommand, startRedis, type RedisServerHandle } from '../../support/redis-server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PRIVATE_LINE = /^Nothing answers at (\S+): started a private redis-server at redis:\/\/127\.0\.0\.1:(\d+) \(in (.+)\); it stops when the sample does\.$/m;

interface Exit {
  code: number | null;
  output: string;
}

/** Runs a compiled sample script; `until` (a text of its output) is when `signal` is sent to it. */
function runSample(script: string, env: Record<string, string>, stopAt?: { until: string; signal: NodeJS.Signals }): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist-scripts/sample', script)], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let signaled = false;
    const collect = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (stopAt && !signaled && output.includes(stopAt.until)) {
        signaled = true;
        child.kill(stopAt.signal);
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
  });
}

async function isListening(port: number): Promise<boolean> {
  return rawCommand(port, 'PING', 500).then(
    () => true,
    () => false,
  );
}

/** `npm run sample` and `sample:serve` need no Redis of the user's: a private one when nothing answers. */
describe('the sample without a Redis of its own (e2e: compiled sample, real processes)', () => {
  let nothingThere: string;
  let existing: RedisServerHandle;

  beforeAll(async () => {
    const compiled = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.scripts.json'], { cwd: ROOT, encoding: 'utf8' });
    if (compiled.status !== 0) throw new Error(`tsc -p tsconfig.scripts.json failed:\n${compiled.stdout}${compiled.stderr}`);
    nothingThere = `redis://127.0.0.1:${await getFreePort()}`;
    existing = await startRedis();
  }, 120_000);

  afterAll(async () => {
    await existing?.stop();
  });

  it('npm run sample: starts a private redis-server, says so in one line, runs the demo and stops it on exit', async () => {
    const { code, output } = await runSample('main.js', { REDIS_URL: nothingThere });
    expect(output).toContain('Done: 4 orders succeeded');
    expect(code).toBe(0);
    const [, asked, port, dir] = PRIVATE_LINE.exec(output) ?? [];
    expect(asked).toBe(nothingThere);
    expect(output).toContain(`Redis redis://127.0.0.1:${port}`);
    expect(await isListening(Number(port))).toBe(false);
    expect(existsSync(dir)).toBe(false);
  }, 90_000);

  it('npm run sample:serve: Ctrl-C (SIGINT) closes the app and stops the private redis-server', async () => {
    const { code, output } = await runSample('serve.js', { REDIS_URL: nothingThere, PORT: '0' }, { until: 'Dashboard:', signal: 'SIGINT' });
    expect(code).toBe(130);
    const [, , port, dir] = PRIVATE_LINE.exec(output) ?? [];
    expect(port).toBeDefined();
    expect(await isListening(Number(port))).toBe(false);
    expect(existsSync(dir)).toBe(false);
  }, 90_000);

  it('uses the Redis that answers at REDIS_URL, and leaves it running', async () => {
    const { code, output } = await runSample('serve.js', { REDIS_URL: existing.url, PORT: '0' }, { until: 'Dashboard:', signal: 'SIGTERM' });
    expect(code).toBe(143);
    expect(output).not.toMatch(PRIVATE_LINE);
    expect(output).toContain(`Redis ${existing.url};`);
    expect(await isListening(existing.port)).toBe(true);
  }, 90_000);
});
