/**
 * The Function library is identified by its build and the hash of its code as Redis holds it: a library
 * loaded by someone else (same build with other code, or a newer build no process of this app recorded)
 * fails init and turns health down with what to do; a newer release of this app, side by side with older
 * processes (a rolling deploy), is trusted because it recorded its hash in the app's keyspace first.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Workflow, WorkflowConfigurationError, WorkflowHealthIndicator, type WorkflowContext } from '../../lib/index.js';
import { FunctionLoader } from '../../lib/redis/function-loader.js';
import { KeySpace } from '../../lib/redis/keys.js';
import { libraryHash, loadLuaLibrary, type LuaLibrary } from '../../lib/redis/lua-library.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { redisFor, startApp, waitFor, type TestApp } from '../support/workflow-app.js';

@Workflow('sl-echo')
@Injectable()
class EchoWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('echo', () => ctx.input.n);
  }
}

const own = loadLuaLibrary();
const withBuild = (code: string, build: number) => code.replace(/local BUILD = \d+/, `local BUILD = ${build}`);
/** A tenant's library: wf1_emit accepts every emit and stores nothing. */
const forged = (build: number) =>
  withBuild(own.code, build).replace("redis.register_function('wf1_emit', emit)", "redis.register_function('wf1_emit', function() return 1 end)");
const release = (build: number): LuaLibrary => {
  const code = withBuild(own.code, build);
  return { ...own, build, code, hash: libraryHash(code) };
};

describe('security: the Function library is identified by build and code hash', () => {
  let redis: TestRedis;
  let direct: Redis;
  const apps: TestApp[] = [];
  const start = async (prefix: string, extra: object = {}) => {
    const app = await startApp({ connection: redis.url, prefix, worker: { reaperIntervalMs: 20 }, ...extra }, [EchoWorkflow]);
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    redis = await redisUrlForTests();
    direct = redisFor(redis.url);
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    direct?.disconnect();
    await redis?.stop();
  });

  it('refuses at init a library with this build but other code, saying what to do', async () => {
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', forged(own.build));
    const error = await start(uniquePrefix('sl')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowConfigurationError);
    expect((error as Error).message).toContain(`has this package's build ${own.build} but other code`);
    expect((error as Error).message).toContain('FUNCTION DELETE wf1');
    expect((error as Error).message).toContain('controls every app');
    // it left the foreign library alone (it reports, it does not fight over it)
    expect(String(((await direct.call('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][])[0][7])).toBe(forged(own.build));
    await direct.call('FUNCTION', 'DELETE', 'wf1');
  });

  it('a running app whose library is replaced by a higher build of unknown code reports health down, and a new process refuses to start', async () => {
    const prefix = uniquePrefix('sl');
    const app = await start(prefix);
    const health = app.moduleRef.get(WorkflowHealthIndicator);
    await waitFor(async () => (await health.isHealthy()).workflows.status === 'up');

    await direct.call('FUNCTION', 'LOAD', 'REPLACE', forged(own.build + 1));
    const down = (await health.isHealthy()).workflows;
    expect(down.status).toBe('down');
    expect(String(down.message)).toContain(`is build ${own.build + 1}`);
    expect(String(down.message)).toContain('trustedLibraryHashes');
    const error = await start(prefix).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowConfigurationError);
    expect((error as Error).message).toContain(libraryHash(forged(own.build + 1)));

    // trusted only when listed: an operator who knows that code is a newer release's says so
    const listing = await start(uniquePrefix('sl'), { trustedLibraryHashes: [libraryHash(forged(own.build + 1))] });
    await waitFor(async () => (await listing.moduleRef.get(WorkflowHealthIndicator).isHealthy()).workflows.status === 'up');
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', own.code);
    expect((await health.isHealthy()).workflows.status).toBe('up');
  });

  it('rolling deploy: a newer release of the same app loads its library; the older processes verify it by the hash it recorded, run on it, and start again', async () => {
    const prefix = uniquePrefix('sl');
    const old = await start(prefix);
    expect(await old.client.run(EchoWorkflow, { n: 1 }, { timeoutMs: 10_000 })).toBe(1);

    const newer = release(own.build + 1);
    const newerProcess = redisFor(redis.url);
    try {
      await new FunctionLoader(newerProcess, new KeySpace(prefix), { library: newer }).ensureLoaded();
    } finally {
      newerProcess.disconnect();
    }
    expect(Number(await direct.call('FCALL_RO', 'wf1_version', 0))).toBe(own.build + 1);

    const oldHealth = (await old.moduleRef.get(WorkflowHealthIndicator).isHealthy()).workflows;
    expect(oldHealth).toMatchObject({ status: 'up', library: { status: 'up', loaded: [own.build + 1] } });
    expect(await old.client.run(EchoWorkflow, { n: 2 }, { timeoutMs: 10_000 })).toBe(2);
    const restarted = await start(prefix);
    expect(await restarted.client.run(EchoWorkflow, { n: 3 }, { timeoutMs: 10_000 })).toBe(3);
    expect(Number(await direct.call('FCALL_RO', 'wf1_version', 0))).toBe(own.build + 1);

    // another app on the same server (its own prefix) has no record of that code
    await expect(start(uniquePrefix('sl-other'))).rejects.toThrow(/no process of this app \(prefix '[^']*sl-other[^']*'\) recorded that code as its own/);
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', own.code);
  });

  it('refuses a malformed trustedLibraryHashes option', async () => {
    await expect(start(uniquePrefix('sl'), { trustedLibraryHashes: ['not-a-hash'] })).rejects.toThrow('trustedLibraryHashes must be an array of sha256 hashes');
  });
});
