/**
 * A burst of runs leaves nothing behind in old space (see test/support/worker-memory.probe.ts): the probe
 * runs in a jest process of its own, so that what other suites' apps allocate in a shared jest worker
 * does not count, and fails there with the bytes per run it measured.
 */
import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function runProbe(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [path.join(root, 'node_modules/jest/bin/jest.js'), '--ci', '--selectProjects', 'default', '--testMatch', '<rootDir>/test/support/worker-memory.probe.ts'],
      { cwd: root, env: { ...process.env, NODE_OPTIONS: '--experimental-vm-modules' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('worker memory over a burst of runs (e2e, own jest process, private redis-server)', () => {
  it('parked and finished runs are not promoted to old space', async () => {
    const { code, output } = await runProbe();
    const measured = output.split('\n').filter((line) => line.includes('worker-memory probe:'));
    if (code !== 0) throw new Error(`the probe failed (exit ${code}):\n${output.slice(-4000)}`);
    // each workflow measured (a burst measured again prints a line more)
    expect(['mem-sleep', 'mem-one'].filter((name) => measured.some((line) => line.includes(`probe: ${name}:`)))).toHaveLength(2);
  }, 180_000);
});
