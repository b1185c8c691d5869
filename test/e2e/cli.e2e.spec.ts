/**
 * The CLI as users run it: lib/ is built (tsconfig.build.json) into a package directory with the
 * repository's package.json `bin`, and that file is spawned with node against a private redis-server
 * where a Nest app made runs of every kind. Each case checks the output people read (tables), the JSON
 * scripts parse, and the exit code.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Workflow, type RunInfo, type RunPage, type WorkflowContext, type WorkflowMeta, type WorkflowStats } from '../../lib/index.js';
import { buildCliBin, removeCliBin, runCliBin, type CliExit } from '../support/cli-runner.js';
import { uniquePrefix } from '../support/redis-server.js';
import { startCluster, type RedisClusterHandle } from '../support/redis-cluster.js';
import { startApp, useSuiteRedis, waitFor, type TestApp } from '../support/workflow-app.js';


/** Flipped by the retry test: the same run, executed again, then passes. */
let partnerDown = true;

@Workflow('cli-ok', { queue: 'cli', cron: [{ id: 'nightly', expression: '0 3 * * *', timezone: 'UTC' }] })
@Injectable()
class OkWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('double', () => ctx.input.n * 2);
  }
}

@Workflow('cli-partner', { queue: 'cli', maxAttempts: 1 })
@Injectable()
class PartnerWorkflow {
  async execute(ctx: WorkflowContext<{ order: string }>) {
    await ctx.step.run('reserve', () => `reserved ${ctx.input.order}`);
    return ctx.step.run('call-partner', () => {
      if (partnerDown) throw new Error('partner API answered 503');
      return { confirmed: ctx.input.order };
    });
  }
}

@Workflow('cli-sleep', { queue: 'cli' })
@Injectable()
class SleepWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    await ctx.step.sleep('nap', 3_600_000);
    return ctx.input.n;
  }
}

@Workflow('cli-graph-node', { queue: 'cli' })
@Injectable()
class GraphNodeWorkflow {
  execute(ctx: WorkflowContext<{ name: string }>) {
    return ctx.input.name;
  }
}

@Workflow('cli-graph', { queue: 'cli' })
@Injectable()
class GraphWorkflow {
  async execute(ctx: WorkflowContext) {
    await ctx.step.graph('pipeline', {
      fetch: { workflow: GraphNodeWorkflow, input: { name: 'fetch' } },
      persist: { workflow: GraphNodeWorkflow, input: { name: 'persist' }, after: ['fetch'] },
    });
    return 'done';
  }
}

afterAll(removeCliBin);

/**
 * Runs the built bin (test/support/cli-runner.ts); REDIS_URL is removed from the environment unless `env`
 * sets it. With CLI_TRANSCRIPT=<file>, each command and its output is appended there (docs/cli.md's transcripts).
 */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliExit> {
  return runCliBin(args, env, 20_000);
}

describe('CLI: npx nestjs-redis-workflows (the built bin, against a private Redis)', () => {
  const suite = useSuiteRedis();
  const prefix = uniquePrefix('cli');
  const ids = { ok: [] as string[], failed: [] as string[], waiting: '', canceled: '' };
  const conn = () => ['--redis', suite.redis.url, '--prefix', prefix];
  async function json<T>(args: string[]): Promise<T> {
    const exit = await cli([...args, ...conn(), '--json']);
    if (exit.code !== 0) throw new Error(`${args.join(' ')} exited ${exit.code}: ${exit.stderr}`);
    return JSON.parse(exit.stdout) as T;
  }

  beforeAll(async () => {
    await buildCliBin();
    const app = await startApp({ connection: suite.redis.url, prefix, cron: false, worker: { reaperIntervalMs: 20 } }, [OkWorkflow, PartnerWorkflow, SleepWorkflow]);
    suite.apps.push(app);
    const ok = await Promise.all([1, 2, 3].map((n) => app.client.emit(OkWorkflow, { n })));
    await Promise.all(ok.map((h) => h.result({ timeoutMs: 10_000 })));
    const failed = await Promise.all(['A-1', 'A-2'].map((order) => app.client.emit(PartnerWorkflow, { order })));
    await Promise.all(failed.map((h) => h.result({ timeoutMs: 10_000 }).catch(() => undefined)));
    const sleeping = await Promise.all([1, 2].map((n) => app.client.emit(SleepWorkflow, { n })));
    await waitFor(async () => (await Promise.all(sleeping.map((h) => h.getState()))).every((r) => r.status === 'waiting'));
    ids.ok = ok.map((h) => h.id);
    ids.failed = failed.map((h) => h.id);
    [ids.waiting, ids.canceled] = sleeping.map((h) => h.id);
    await app.client.cancelRun(ids.canceled, { reason: 'set up by the test' });
  }, 180_000);

  it('runs list: a table of the newest runs, and the same page as JSON', async () => {
    const table = await cli(['runs', 'list', ...conn()]);
    expect(table).toMatchObject({ code: 0, stderr: '' });
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+WORKFLOW\s+STATUS\s+ATTEMPT\s+CREATED\s+DETAIL$/);
    expect(lines.slice(1, 8).map((line) => line.split(/\s+/)[0])).toEqual([ids.canceled, ids.waiting, ...[...ids.failed].reverse(), ...[...ids.ok].reverse()]);
    expect(table.stdout).toMatch(new RegExp(`${ids.failed[0]}\\s+cli-partner\\s+failed\\s+1/1\\s+\\d+s ago\\s+Error: partner API answered 503`));
    expect(table.stdout).toContain('7 run(s).');

    const page = await json<RunPage>(['runs', 'list']);
    expect(page.runs.map((r) => r.id)).toEqual(lines.slice(1, 8).map((line) => line.split(/\s+/)[0]));
    expect(page.runs.find((r) => r.id === ids.ok[0])).toMatchObject({ status: 'succeeded', output: 2, input: { n: 1 } });
  });

  it('runs list filters by workflow and status, and pages with --cursor', async () => {
    const failed = await json<RunPage>(['runs', 'list', '--workflow', 'cli-partner', '--status', 'failed']);
    expect(failed.runs.map((r) => r.id).sort()).toEqual([...ids.failed].sort());
    const first = await json<RunPage>(['runs', 'list', '--workflow', 'cli-ok', '--limit', '2']);
    expect(first.runs.map((r) => r.id)).toEqual([ids.ok[2], ids.ok[1]]);
    expect(first.cursor).toBe(ids.ok[1]);
    const table = await cli(['runs', 'list', '--workflow', 'cli-ok', '--limit', '2', ...conn()]);
    expect(table.stdout).toContain(`More runs: add --cursor ${ids.ok[1]}`);
    const second = await json<RunPage>(['runs', 'list', '--workflow', 'cli-ok', '--limit', '2', '--cursor', first.cursor!]);
    expect(second).toEqual({ runs: [expect.objectContaining({ id: ids.ok[0] })] });
  });

  it('runs show: the run, its steps and its history; JSON has the three as the client returns them', async () => {
    const id = ids.failed[0];
    const shown = await cli(['runs', 'show', id, ...conn()]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^Run:\\s+${id}\\nWorkflow:\\s+cli-partner\\nQueue:\\s+cli\\nStatus:\\s+failed\\n`));
    expect(shown.stdout).toMatch(/Input:\s+\{"order":"A-1"\}/);
    expect(shown.stdout).toMatch(/Error:\s+Error: partner API answered 503/);
    expect(shown.stdout).toMatch(/Steps \(2\)\nSTEP\s+KIND\s+STATUS\s+ATTEMPTS\s+TOOK\s+RESULT\nreserve\s+step\s+succeeded\s+1\s+\S+\s+"reserved A-1"\ncall-partner\s+step\s+failed/);
    expect(shown.stdout).toMatch(/History \(\d+\)\nAT\s+SINCE CREATED\s+EVENT/);
    expect(shown.stdout).toMatch(/\+\S+\s+created\s/);
    expect(shown.stdout.split('\n').filter((line) => line !== line.trimEnd())).toEqual([]);

    const detail = await json<{ run: RunInfo; steps: unknown[]; history: { type: string }[] }>(['runs', 'show', id]);
    expect(detail.run).toMatchObject({ id, workflow: 'cli-partner', status: 'failed', error: { message: 'partner API answered 503' } });
    expect(detail.steps).toHaveLength(2);
    expect(detail.history.map((e) => e.type)).toEqual(expect.arrayContaining(['created', 'claimed', 'failed']));
  });

  it("runs show: a graph step's nodes, level by level, with their status and run", async () => {
    const graphPrefix = uniquePrefix('cli-graph');
    const app = await startApp({ connection: suite.redis.url, prefix: graphPrefix, cron: false, worker: { reaperIntervalMs: 20 } }, [GraphNodeWorkflow, GraphWorkflow]);
    suite.apps.push(app);
    const handle = await app.client.emit(GraphWorkflow, {});
    await handle.result({ timeoutMs: 10_000 });
    const nodes = (await app.client.getRunGraphs(handle.id))[0].nodes;
    const shown = await cli(['runs', 'show', handle.id, '--redis', suite.redis.url, '--prefix', graphPrefix]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/Graph pipeline \(2 nodes, succeeded\)\nLEVEL\s+NODE\s+STATUS\s+AFTER\s+RUN\n/);
    expect(shown.stdout).toMatch(new RegExp(`0\\s+fetch\\s+succeeded\\s+${nodes[0].runId}\\n\\s*1\\s+persist\\s+succeeded\\s+fetch\\s+${nodes[1].runId}`));
    const detail = JSON.parse((await cli(['runs', 'show', handle.id, '--redis', suite.redis.url, '--prefix', graphPrefix, '--json'])).stdout) as { graphs: unknown[] };
    expect(detail.graphs).toEqual([expect.objectContaining({ step: 'pipeline', size: 2, status: 'succeeded' })]);
  });

  it('long payloads are cut in tables, never in --json', async () => {
    const long = 'x'.repeat(500);
    const handle = await suite.apps[0].client.emit(OkWorkflow, { n: 5, note: long } as never);
    await handle.result({ timeoutMs: 10_000 });
    const shown = await cli(['runs', 'show', handle.id, ...conn()], { COLUMNS: '100' });
    const input = shown.stdout.split('\n').find((line) => line.startsWith('Input:'))!;
    expect(input.endsWith('…')).toBe(true);
    expect(input.length).toBeLessThanOrEqual(100);
    const detail = await json<{ run: RunInfo }>(['runs', 'show', handle.id]);
    expect(detail.run.input).toEqual({ n: 5, note: long });
  });

  it('runs cancel: cancels a waiting run (exit 0), then refuses the finished run (exit 1)', async () => {
    const canceled = await cli(['runs', 'cancel', ids.waiting, '--reason', 'partner outage', ...conn()]);
    expect(canceled).toMatchObject({ code: 0, stdout: `Canceled run ${ids.waiting}.\n`, stderr: '' });
    const run = (await json<{ run: RunInfo }>(['runs', 'show', ids.waiting])).run;
    expect(run).toMatchObject({ status: 'canceled', error: { name: 'CanceledError', message: 'The run was canceled: partner outage' } });
    const again = await cli(['runs', 'cancel', ids.waiting, ...conn()]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`error: Run ${ids.waiting} is canceled: only a run that has not finished can be canceled. Nothing was changed.\n`);
  });

  it('runs retry: the failed run runs again under its id and succeeds; a succeeded run is refused (exit 1)', async () => {
    partnerDown = false;
    const id = ids.failed[1];
    const retried = await cli(['runs', 'retry', id, ...conn(), '--json']);
    expect(retried.code).toBe(0);
    expect(JSON.parse(retried.stdout)).toMatchObject({ retried: true, run: { id, attempt: 1 } });
    await waitFor(async () => (await json<{ run: RunInfo }>(['runs', 'show', id])).run.status === 'succeeded', 15_000, 200);
    expect((await json<{ run: RunInfo }>(['runs', 'show', id])).run.output).toEqual({ confirmed: 'A-2' });
    const refused = await cli(['runs', 'retry', ids.ok[0], ...conn()]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`Run ${ids.ok[0]} is succeeded; only failed or canceled runs can be retried. Nothing was changed.`);
  });

  it('a run that does not exist: exit 1, saying where to look', async () => {
    const missing = '01JZZZZZZZZZZZZZZZZZZZZZZZ.cli.0';
    for (const verb of ['show', 'cancel', 'retry']) {
      const exit = await cli(['runs', verb, missing, ...conn()]);
      expect({ verb, code: exit.code, stdout: exit.stdout }).toEqual({ verb, code: 1, stdout: '' });
      expect(exit.stderr).toContain(`error: No run ${missing} under prefix '${prefix}'`);
    }
    expect((await cli(['runs', 'show', 'not-a-run-id', ...conn()])).code).toBe(1);
  });

  it('stats: counts, queue depth and workers per workflow and queue', async () => {
    const stats = await json<WorkflowStats>(['stats']);
    const byName = Object.fromEntries(stats.workflows.map((w) => [w.name, w]));
    expect(byName['cli-ok'].counts).toMatchObject({ succeeded: 4, failed: 0 });
    expect(byName['cli-sleep'].counts).toMatchObject({ canceled: 2, waiting: 0 });
    expect(stats.workers.alive).toBe(1);
    const table = await cli(['stats', ...conn()]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^Workflows\nWORKFLOW\s+QUEUE\s+STATE\s+DEPTH\s+OLDEST QUEUED\s+WORKERS\s+HELD BACK\s+SCHEDULED\s+QUEUED\s+RUNNING\s+WAITING\s+COMPENSATING\s+SUCCEEDED\s+FAILED\s+CANCELED\s+EXPIRED LEASES\n/);
    expect(table.stdout).toMatch(/\ncli-ok\s+cli\s+active\s+0\s+-\s+1\s+-\s+0\s+0\s+0\s+0\s+0\s+4\s+0\s+0\s+0\n/);
    expect(table.stdout).toMatch(/\nWorkers alive \(1\)\nWORKER\s+HOST\s+PID/);
  });

  it('workflows list and show; schedules list; an unknown workflow is exit 1', async () => {
    const list = await json<WorkflowMeta[]>(['workflows', 'list']);
    expect(list.map((w) => w.name)).toEqual(['cli-ok', 'cli-partner', 'cli-sleep']);
    const table = await cli(['workflows', 'list', ...conn()]);
    expect(table.stdout).toMatch(/\ncli-partner\s+cli\s+active\s+1\s+0\s+/);
    const shown = await cli(['workflows', 'show', 'cli-partner', ...conn()]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^Workflow:\s+cli-partner\nQueue:\s+cli\nState:\s+active\nMax attempts:\s+1\nMax concurrency:\s+unlimited\n/);
    expect((await json<WorkflowMeta>(['workflows', 'show', 'cli-ok'])).cron).toEqual([{ id: 'nightly', expression: '0 3 * * *', timezone: 'UTC' }]);
    const unknown = await cli(['workflows', 'show', 'nope', ...conn()]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("No workflow 'nope' is registered");

    // cron: false in this app: no instance ticks, so no next or last tick is known (test/e2e/cli-schedules.e2e.spec.ts has them).
    expect(await json(['schedules', 'list'])).toEqual([{ workflow: 'cli-ok', id: 'nightly', expression: '0 3 * * *', timezone: 'UTC', catchUp: 'none', paused: false, workers: 1 }]);
    expect((await cli(['schedules', 'list', ...conn()])).stdout).toMatch(/^WORKFLOW\s+ID\s+EXPRESSION\s+TIMEZONE\s+PAUSED\s+NEXT\s+LAST\s+WORKERS\ncli-ok\s+nightly\s+0 3 \* \* \*\s+UTC\s+no\s+-\s+-\s+1\n$/);
  });

  it('reads REDIS_URL when --redis is absent', async () => {
    const exit = await cli(['runs', 'list', '--prefix', prefix, '--workflow', 'cli-partner', '--json'], { REDIS_URL: suite.redis.url });
    expect(exit.code).toBe(0);
    expect((JSON.parse(exit.stdout) as RunPage).runs).toHaveLength(2);
  });

  it('a wrong prefix shows nothing, and says what to check', async () => {
    const runs = await cli(['runs', 'list', '--redis', suite.redis.url, '--prefix', 'not_this_one']);
    expect(runs).toMatchObject({ code: 0, stdout: 'No runs match.\n' });
    const stats = await cli(['stats', '--redis', suite.redis.url, '--prefix', 'not_this_one']);
    expect(stats.stdout).toContain("No workflow is registered under prefix 'not_this_one'");
    expect(JSON.parse((await cli(['workflows', 'list', '--redis', suite.redis.url, '--prefix', 'not_this_one', '--json'])).stdout)).toEqual([]);
  });

  it('usage errors exit 2 without connecting: unknown command, unknown option, bad values', async () => {
    const cases = [
      ['runz', 'list'],
      ['runs', 'lst'],
      ['runs', 'list', '--colour'],
      ['runs', 'list', '--status', 'broken'],
      ['runs', 'list', '--limit', '0'],
      ['runs', 'list', '--cursor', 'nope'],
      ['runs', 'show'],
      ['runs', 'list', '--prefix', 'a:b'],
      ['runs', 'list', '--redis', 'localhost:6379'],
      [],
    ];
    for (const args of cases) {
      const exit = await cli(args.length > 0 ? [...args, '--connect-timeout', '100'] : args);
      expect({ args, code: exit.code, stdout: exit.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(exit.stderr).not.toBe('');
    }
    expect((await cli(['runs', 'list', '--colour'])).stderr).toMatch(/unknown option '--colour'[\s\S]*--help/);
    expect((await cli(['--help'])).code).toBe(0);
  });

  it('Redis unreachable or refusing the credentials: exit 3, saying what to fix', async () => {
    const down = await cli(['stats', '--redis', 'redis://127.0.0.1:1']);
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/^error: Cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(.*ECONNREFUSED.*\): check --redis \(or REDIS_URL\)/);
    await suite.direct.call('ACL', 'SETUSER', 'cli-operator', 'on', '>right-password', '~*', '+@all');
    const url = new URL(suite.redis.url);
    const wrong = await cli(['stats', '--redis', `redis://cli-operator:wrong-password@${url.host}`, '--prefix', prefix]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain(`Redis at redis://cli-operator:***@${url.host} refused the credentials`);
    expect(wrong.stderr).not.toContain('wrong-password');
    const right = await cli(['stats', '--redis', `redis://cli-operator:right-password@${url.host}`, '--prefix', prefix, '--json']);
    expect(right.code).toBe(0);
  });

  // last: it adds runs that the counts above do not expect
  it('runs fork and runs retry --from-step: a failed run finishes on today\'s code; runs show links the fork; an unknown step is exit 1', async () => {
    partnerDown = false;
    const id = ids.failed[0];
    const unknown = await cli(['runs', 'retry', id, '--from-step', 'nope', ...conn()]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(`Run ${id} has no step named "nope"; its steps are "reserve", "call-partner"`);
    const badInput = await cli(['runs', 'fork', id, '--input', '{oops', ...conn()]);
    expect(badInput.code).toBe(2);
    const forked = await cli(['runs', 'fork', id, '--from-step', 'call-partner', '--input', '{"order":"A-9"}', ...conn(), '--json']);
    expect(forked.code).toBe(0);
    const forkId = (JSON.parse(forked.stdout) as { run: RunInfo }).run.id;
    await waitFor(async () => (await json<{ run: RunInfo }>(['runs', 'show', forkId])).run.status === 'succeeded', 15_000, 200);
    const shown = await cli(['runs', 'show', forkId, ...conn()]);
    expect(shown.stdout).toMatch(new RegExp(`\\nForked from:\\s+${id}\\n`));
    expect((await json<{ run: RunInfo }>(['runs', 'show', forkId])).run.output).toEqual({ confirmed: 'A-9' });
    const retried = await cli(['runs', 'retry', id, '--from-step', 'call-partner', ...conn(), '--json']);
    expect(retried.code).toBe(0);
    await waitFor(async () => (await json<{ run: RunInfo }>(['runs', 'show', id])).run.status === 'succeeded', 15_000, 200);
  }, 90_000);
});

describe('CLI against a Redis Cluster (3 primaries): detected from one node, or --cluster with seeds', () => {
  let cluster: RedisClusterHandle;
  let app: TestApp;
  const prefix = uniquePrefix('cli_cluster');
  let runIds: string[] = [];

  beforeAll(async () => {
    await buildCliBin();
    cluster = await startCluster({ primaries: 3 });
    app = await startApp({ connection: { nodes: cluster.nodes }, prefix, cron: false, queues: { cli: { partitions: 3 } }, worker: { reaperIntervalMs: 20 } } as never, [OkWorkflow]);
    const handles = await Promise.all([1, 2, 3, 4].map((n) => app.client.emit(OkWorkflow, { n })));
    await Promise.all(handles.map((h) => h.result({ timeoutMs: 10_000 })));
    runIds = handles.map((h) => h.id);
  }, 180_000);

  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  });

  it('lists, shows and counts runs spread over the nodes', async () => {
    const node = (i: number) => `redis://${cluster.nodes[i].host}:${cluster.nodes[i].port}`;
    const detected = await cli(['runs', 'list', '--redis', node(1), '--prefix', prefix, '--json']);
    expect(detected.code).toBe(0);
    expect((JSON.parse(detected.stdout) as RunPage).runs.map((r) => r.id).sort()).toEqual([...runIds].sort());
    const seeds = `${node(0)},${node(2)}`;
    const shown = await cli(['runs', 'show', runIds[3], '--redis', seeds, '--cluster', '--prefix', prefix, '--json']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ run: { id: runIds[3], status: 'succeeded', output: 8 } });
    const stats = await cli(['stats', '--redis', node(0), '--prefix', prefix, '--json']);
    expect((JSON.parse(stats.stdout) as WorkflowStats).workflows.find((w) => w.name === 'cli-ok')?.counts.succeeded).toBe(4);
  });
});
