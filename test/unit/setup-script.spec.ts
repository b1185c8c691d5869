import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SETUP = path.join(ROOT, 'scripts/setup.sh');

/**
 * scripts/setup.sh on a machine made of a PATH: only the tools each case gives it (node, coreutils, and
 * fakes of npm, apt-get and redis-server that record their calls), so it installs nothing for real.
 * chromium is whatever this machine has (CHROMIUM_PATH points at a fake one).
 */
describe('scripts/setup.sh (the contributors\' one command)', () => {
  let bin: string;
  let calls: string;

  const fake = (name: string, body: string) => {
    const file = path.join(bin, name);
    writeFileSync(file, `#!/bin/bash\necho "${name} $*" >> "${calls}"\n${body}\n`);
    chmodSync(file, 0o755);
  };
  const fakeRedisServer = (version: string) => `cat > "${bin}/redis-server" <<'SERVER'\n#!/bin/bash\necho "Redis server v=${version} sha=00000000:0 malloc=libc bits=64"\nSERVER\nchmod +x "${bin}/redis-server"`;
  const run = (env: Record<string, string> = {}) => {
    const result = spawnSync('/bin/bash', [SETUP], { env: { PATH: bin, CHROMIUM_PATH: path.join(bin, 'chromium'), ...env }, encoding: 'utf8' });
    return { status: result.status, output: `${result.stdout}${result.stderr}`, calls: existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : [] };
  };

  beforeEach(() => {
    bin = mkdtempSync(path.join(os.tmpdir(), 'nrw-setup-'));
    calls = path.join(bin, 'calls.log');
    symlinkSync(process.execPath, path.join(bin, 'node'));
    for (const tool of ['id', 'sed', 'cut', 'dirname', 'env', 'cat', 'chmod']) {
      const found = ['/usr/bin', '/bin'].map((dir) => path.join(dir, tool)).find((file) => existsSync(file));
      if (found) symlinkSync(found, path.join(bin, tool));
    }
    fake('npm', 'echo 11.0.0');
    fake('sudo', '"$@"');
    fake('chromium', '');
  });

  afterEach(() => {
    rmSync(bin, { recursive: true, force: true });
  });

  it('installs a missing redis-server through apt-get, then runs npm ci and the sample', () => {
    fake('apt-get', `if [ "$1" = install ]; then ${fakeRedisServer('7.2.4')}; fi`);
    const { status, output, calls: made } = run();
    expect(output).toContain('setup: installing redis-server');
    expect(status).toBe(0);
    expect(made.filter((call) => !call.startsWith('npm --version'))).toEqual([
      'apt-get update -qq',
      'apt-get install -y -qq --no-install-recommends redis-server',
      'npm ci',
      'npm run sample',
    ]);
  });

  it('SETUP_SKIP_SAMPLE=1 leaves out the sample', () => {
    fake('apt-get', `if [ "$1" = install ]; then ${fakeRedisServer('7.0.15')}; fi`);
    const { status, calls: made } = run({ SETUP_SKIP_SAMPLE: '1' });
    expect(status).toBe(0);
    expect(made).toContain('npm ci');
    expect(made).not.toContain('npm run sample');
  });

  it('without a package manager, says in one line what to install and stops before npm ci', () => {
    const { status, output, calls: made } = run();
    expect(status).toBe(1);
    expect(output).toMatch(/^setup: redis-server is missing: install Redis >= 7\.0 \(.*\)\.$/m);
    expect(made.filter((call) => call.startsWith('npm ci'))).toEqual([]);
  });

  it('refuses a redis-server older than 7, which has no Redis Functions', () => {
    writeFileSync(path.join(bin, 'install-old.sh'), fakeRedisServer('6.2.6'));
    spawnSync('/bin/bash', [path.join(bin, 'install-old.sh')], { env: { PATH: bin } });
    const { status, output } = run();
    expect(status).toBe(1);
    expect(output).toMatch(/^setup: redis-server 6\.2\.6 is too old \(Redis Functions need 7\.0\): install Redis >= 7\.0 from packages\.redis\.io/m);
  });
});
