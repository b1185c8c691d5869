/**
 * The README and the guides cannot drift from the code: their code blocks are compiled against the
 * package as a user installs it, and the quick start is run as the README says.
 *
 * - The library is built (tsconfig.build.json) into a package directory with the repository's package.json
 *   fields, so 'nestjs-redis-workflows' resolves to what `npm pack` ships: dist/lib with its types.
 * - The README's quick start becomes an app: its `src/` files, its tsconfig.json and jest.config.js as
 *   shown, and its test script. `tsc` builds it; `node dist/main.js` runs against a private redis-server
 *   and the README's POST is sent to it; its jest config runs a spec that imports the quick start.
 * - Every ```ts block of docs/*.md is type-checked (skipped ones carry a reason, see test/support/doc-blocks.ts).
 * - Relative links and their #anchors resolve; paths the code map of docs/internals.md names exist.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { anchorsOf, fileOfBlock, namedBlock, projectFiles, readDocBlocks, type DocBlock } from '../support/doc-blocks.js';
import { getFreePort, startRedis, type RedisServerHandle } from '../support/redis-server.js';
import { waitFor } from '../support/workflow-app.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const guides = readdirSync(path.join(repo, 'docs'))
  .filter((file) => file.endsWith('.md'))
  .map((file) => `docs/${file}`);
const documents = ['README.md', 'bench/README.md', 'bench/NOTES.md', ...guides];
const TSC = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const JEST = path.join(repo, 'node_modules', 'jest', 'bin', 'jest.js');

interface Exit {
  code: number | null;
  output: string;
}

/** Runs a command to its end; its output (stdout and stderr) is kept for the failure message. */
async function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Exit> {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

function expectSuccess(what: string, exit: Exit): void {
  if (exit.code !== 0) throw new Error(`${what} failed (exit ${exit.code}):\n${exit.output}`);
}

describe('docs: code blocks compile and the quick start runs', () => {
  let work: string;
  let redis: RedisServerHandle | undefined;
  const readme = readDocBlocks(repo, 'README.md');

  beforeAll(async () => {
    work = await mkdtemp(path.join(repo, '.docs-check-'));
    // The package as installed: dist/lib built from lib/, and package.json's name, type and exports.
    const pkg = path.join(work, 'package');
    expectSuccess(
      'building lib/',
      await run(process.execPath, [TSC, '-p', 'tsconfig.build.json', '--outDir', path.join(pkg, 'dist'), '--sourceMap', 'false', '--declarationMap', 'false'], repo),
    );
    const manifest = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as Record<string, unknown>;
    const { name, type, main, types, exports } = manifest;
    await writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name, version: '0.0.0-docs', type, main, types, exports }, null, 2));
  }, 180_000);

  afterAll(async () => {
    await redis?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A project directory whose node_modules has the built package (other packages come from the repo's). */
  async function project(dir: string): Promise<string> {
    const root = path.join(work, dir);
    await mkdir(path.join(root, 'node_modules'), { recursive: true });
    await symlink(path.join(work, 'package'), path.join(root, 'node_modules', 'nestjs-redis-workflows'), 'dir');
    return root;
  }

  it('every ```ts block is compiled or skipped with a reason', () => {
    for (const doc of documents) {
      for (const block of readDocBlocks(repo, doc)) {
        if (block.lang !== 'ts') continue;
        if (block.directive?.startsWith('skip')) {
          expect({ at: `${doc}:${block.line}`, reason: /^skip \(.+\)$/.test(block.directive) }).toEqual({ at: `${doc}:${block.line}`, reason: true });
        } else {
          expect(fileOfBlock(block)).toBeDefined();
        }
      }
    }
  });

  it('the quick start builds with the README tsconfig, serves the README request, and its jest config runs a spec', async () => {
    const app = await project('quickstart');
    const tsconfig = namedBlock(readme, 'tsconfig').code;
    const jestConfig = namedBlock(readme, 'jest-config').code;
    const scripts = JSON.parse(`{${namedBlock(readme, 'package-scripts').code}}`) as { scripts: Record<string, string> };
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'docs-quickstart', private: true, type: 'module', ...scripts }, null, 2));
    await writeFile(path.join(app, 'tsconfig.json'), tsconfig);
    await writeFile(path.join(app, 'jest.config.js'), jestConfig);
    const files = projectFiles(readme);
    expect([...files.keys()].sort()).toEqual(['src/app.module.ts', 'src/checkout.workflow.ts', 'src/main.ts', 'src/orders.controller.ts', 'src/payments.service.ts']);
    for (const [file, code] of files) {
      await mkdir(path.dirname(path.join(app, file)), { recursive: true });
      await writeFile(path.join(app, file), code);
    }
    // `npx tsc`, as the README's "Try it" says.
    expectSuccess('tsc of the quick start', await run(process.execPath, [TSC, '-p', app], app));

    // `node dist/main.js` against a private Redis, then the README's POST and GET.
    redis = await startRedis();
    const port = await getFreePort();
    const server: ChildProcess = spawn(process.execPath, ['dist/main.js'], {
      cwd: app,
      env: { ...process.env, PORT: String(port), REDIS_URL: redis.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let serverOutput = '';
    server.stdout!.on('data', (chunk) => (serverOutput += chunk));
    server.stderr!.on('data', (chunk) => (serverOutput += chunk));
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`${base}/orders/none`).catch(() => undefined)) !== undefined, 30_000, 100).catch(() => {
        throw new Error(`The quick start did not start listening:\n${serverOutput}`);
      });
      const tryIt = readme.find((b) => b.lang === 'bash' && b.code.includes('curl'));
      const body = /-d '(\{.*\})'/.exec(tryIt?.code ?? '')?.[1];
      expect(body).toBeDefined();
      const created = await fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(created.status).toBe(201);
      const { runId } = (await created.json()) as { runId: string };
      // A resent POST is the same run: the order id is the idempotency key.
      const again = await fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(((await again.json()) as { runId: string }).runId).toBe(runId);
      let status: { status?: string; output?: { chargeId?: string; receiptSentAt?: string } } = {};
      await waitFor(
        async () => {
          status = (await (await fetch(`${base}/orders/${runId}`)).json()) as typeof status;
          return status.status === 'succeeded' || status.status === 'failed';
        },
        30_000,
        100,
      );
      expect(status.status).toBe('succeeded');
      expect(status.output?.chargeId).toBe(`ch_${(JSON.parse(body!) as { orderId: string }).orderId}`);
      expect(Number.isNaN(Date.parse(status.output?.receiptSentAt ?? ''))).toBe(false);
      expect((await fetch(`${base}/orders/nope`)).status).toBe(404);
    } finally {
      if (server.exitCode === null && server.signalCode === null) {
        const exited = once(server, 'exit');
        server.kill('SIGTERM');
        await exited;
      }
    }
    expect(serverOutput).toContain('charging');

    // The README's jest settings: a spec in the app that imports the quick start, run by its test script.
    await writeFile(
      path.join(app, 'src', 'checkout.workflow.spec.ts'),
      [
        "import { describe, expect, it } from '@jest/globals';",
        "import { runInline } from 'nestjs-redis-workflows';",
        "import { CheckoutWorkflow } from './checkout.workflow.js';",
        "import { PaymentsService } from './payments.service.js';",
        '',
        "describe('CheckoutWorkflow', () => {",
        "  it('charges, then sends the receipt', async () => {",
        "    const result = await runInline(new CheckoutWorkflow(new PaymentsService()), { input: { orderId: 'J-1', amountCents: 5, email: 'j@example.com' } });",
        "    expect(result.output).toMatchObject({ chargeId: 'ch_J-1' });",
        "    expect(result.steps.map((s) => s.name)).toEqual(['charge-card', 'before-receipt', 'send-receipt']);",
        '  });',
        '});',
        '',
      ].join('\n'),
    );
    await mkdir(path.join(app, 'test'), { recursive: true });
    // The test script is `[NAME=value …] jest`, run here as npm would run it.
    const script = /^((?:\w+=\S+\s+)*)jest$/.exec(scripts.scripts.test);
    if (!script) throw new Error(`The README's test script is not '[NAME=value …] jest': ${scripts.scripts.test}`);
    const env = Object.fromEntries(script[1].trim().split(/\s+/).filter(Boolean).map((a) => a.split('=') as [string, string]));
    expectSuccess('jest with the README config', await run(process.execPath, [JEST, '--ci'], app, env));
  }, 240_000);

  it('every guide block type-checks against the package', async () => {
    const root = await project('guides');
    const options = (JSON.parse(namedBlock(readme, 'tsconfig').code) as { compilerOptions: Record<string, unknown> }).compilerOptions;
    const { rootDir: _rootDir, outDir: _outDir, ...compilerOptions } = options;
    await writeFile(path.join(root, 'package.json'), JSON.stringify({ type: 'module' }));
    await writeFile(path.join(root, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, noEmit: true }, include: ['**/*.ts'], exclude: ['node_modules'] }, null, 2));
    const blocks: DocBlock[] = guides.flatMap((doc) => readDocBlocks(repo, doc));
    let written = 0;
    for (const doc of guides) {
      for (const [file, code] of projectFiles(blocks.filter((b) => b.doc === doc))) {
        const target = path.join(root, path.basename(doc, '.md'), file);
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, code);
        written += 1;
      }
    }
    expect(written).toBeGreaterThan(10);
    const exit = await run(process.execPath, [TSC, '-p', root], root);
    // tsc names the files by their place in the guide's project: docs/<guide>.md, file <name>.
    expectSuccess('tsc of the guides', exit);
  }, 180_000);

  it('relative links and their anchors resolve', () => {
    const problems: string[] = [];
    for (const doc of documents) {
      const text = readFileSync(path.join(repo, doc), 'utf8').replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue;
        const [file, anchor] = target.split('#');
        const resolved = file === '' ? path.join(repo, doc) : path.resolve(path.dirname(path.join(repo, doc)), file);
        if (!existsSync(resolved)) problems.push(`${doc}: ${target} (no such file)`);
        else if (anchor && resolved.endsWith('.md') && !anchorsOf(readFileSync(resolved, 'utf8')).has(anchor)) problems.push(`${doc}: ${target} (no such heading)`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('the README lists every module option and every error', () => {
    const text = readFileSync(path.join(repo, 'README.md'), 'utf8');
    const source = (file: string) => readFileSync(path.join(repo, file), 'utf8');
    const fieldsOf = (code: string, name: string) =>
      [...(new RegExp(`interface ${name} [^{]*\\{([\\s\\S]*?)\\n\\}`).exec(code)?.[1] ?? '').matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]);
    const options = source('lib/interfaces/module-options.interface.ts');
    const expected = [...fieldsOf(options, 'WorkflowModuleOptions'), ...fieldsOf(options, 'WorkerOptions').map((f) => `worker.${f}`)];
    expect(expected).toEqual(expect.arrayContaining(['connection', 'maxStepsPerRun', 'tracing', 'worker.leaseMs']));
    // Errors: the exported classes, and the names the Lua library stores for errors of its own.
    const errors = [...source('lib/errors/workflow.errors.ts').matchAll(/^export class (\w+) extends/gm)].map((m) => m[1]);
    const stored = readdirSync(path.join(repo, 'lua', 'includes')).flatMap((f) => [...source(`lua/includes/${f}`).matchAll(/"name":"(\w+Error)"/g)].map((m) => m[1]));
    expect(stored).toContain('CorruptedRunError');
    const missing = [...expected, ...errors.filter((e) => e !== 'WorkflowError'), ...stored].filter((name) => !text.includes(`| \`${name}\``));
    expect(missing).toEqual([]);
    expect(text).not.toMatch(/\(Roadmap\)/i);
  });

  it("the paths docs/internals.md names exist", () => {
    const text = readFileSync(path.join(repo, 'docs', 'internals.md'), 'utf8');
    const named = [...text.matchAll(/`((?:lib|lua|test|bench|sample)\/[\w./-]*)`/g)].map((m) => m[1]);
    expect(named.length).toBeGreaterThan(40);
    expect(named.filter((p) => !existsSync(path.join(repo, p)))).toEqual([]);
  });
});
