/**
 * A least-privilege Redis user for one app: its keys and channels only, no @dangerous command but INFO.
 * Every kind of work runs through it; FUNCTION LOAD is not @dangerous, so a user that must not replace
 * the library (a tenant's) also loses FUNCTION LOAD, and then an admin loads the library first.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import request from 'supertest';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import {
  CanceledError,
  Workflow,
  WorkflowClient,
  WorkflowConfigurationError,
  WorkflowDashboardModule,
  WorkflowHealthIndicator,
  WorkflowModule,
  type WorkflowContext,
} from '../../lib/index.js';
import { startRedis, uniquePrefix, type RedisServerHandle } from '../support/redis-server.js';
import { redisFor, startApp, waitFor } from '../support/workflow-app.js';

@Workflow('acl-child', { queue: 'acl' })
@Injectable()
class ChildWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return ctx.step.run('square', () => ctx.input.n * ctx.input.n);
  }
}

@Workflow('acl-parent', { queue: 'acl' })
@Injectable()
class ParentWorkflow {
  async execute(ctx: WorkflowContext<{ orderId: string }>) {
    const priced = await ctx.step.run('price', () => 21);
    await ctx.step.sleep('cool-down', 50);
    const squared = Number(await ctx.step.runWorkflow('square', ChildWorkflow, { n: 3 }));
    const approval = await ctx.step.waitForEvent<{ by: string }>('approval', { event: 'approved', key: ctx.input.orderId });
    return { total: priced * 2 + squared, by: approval?.by };
  }
}

@Workflow('acl-sleeper', { queue: 'acl' })
@Injectable()
class SleeperWorkflow {
  async execute(ctx: WorkflowContext<Record<string, never>>) {
    await ctx.step.sleep('long', 60_000);
  }
}

/** The rule set of the README's Security section, for a prefix. */
const appRules = (prefix: string) => [`~{${prefix}:*`, `~{${prefix}}:*`, `&{${prefix}:*`, '+@all', '-@dangerous', '+info'];
const TENANT_DENIALS = ['-function|load', '-function|delete', '-function|flush', '-function|restore'];

describe('security: a least-privilege ACL user', () => {
  let server: RedisServerHandle;
  let admin: Redis;
  const closers: (() => Promise<unknown>)[] = [];
  const userUrl = (user: string) => `redis://${user}:s3cret-${user}@${server.host}:${server.port}`;
  const createUser = (user: string, rules: string[]) => admin.call('ACL', 'SETUSER', user, 'reset', 'on', `>s3cret-${user}`, ...rules);

  beforeAll(async () => {
    server = await startRedis();
    admin = redisFor(server.url);
  });
  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    admin?.disconnect();
    await server?.stop();
  });

  it('runs emit, steps, sleep, a child, an event, cancel, dashboard reads and health with only its keys, channels and INFO', async () => {
    const prefix = uniquePrefix('acl');
    await createUser('wfapp', appRules(prefix));
    const moduleRef = await Test.createTestingModule({
      imports: [
        WorkflowModule.forRoot({ connection: userUrl('wfapp'), prefix, worker: { reaperIntervalMs: 20 } }),
        WorkflowDashboardModule.forRoot({ path: 'wf', guard: { canActivate: () => true } }),
      ],
      providers: [ChildWorkflow, ParentWorkflow, SleeperWorkflow],
    }).compile();
    const app: INestApplication = moduleRef.createNestApplication({ logger: false });
    await app.init();
    closers.push(() => app.close());
    const client = app.get(WorkflowClient);
    const before = Number(/total_error_replies:(\d+)/.exec(await admin.info('stats'))?.[1]);

    const parent = await client.emit(ParentWorkflow, { orderId: 'o-1' });
    await waitFor(async () => (await client.getRun(parent.id))?.status === 'waiting' && (await client.getRunSteps(parent.id)).some((s) => s.name === 'approval'), 10_000);
    expect(await client.sendEvent('approved', { by: 'ana' }, { key: 'o-1' })).toBe(1);
    expect(await parent.result({ timeoutMs: 10_000 })).toEqual({ total: 51, by: 'ana' });

    const sleeper = await client.emit(SleeperWorkflow, {});
    await waitFor(async () => (await client.getRun(sleeper.id))?.status === 'waiting', 10_000);
    expect(await client.cancelRun(sleeper.id, { reason: 'acl test' })).toBe(true);
    await expect(sleeper.result({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(CanceledError);

    const server_ = app.getHttpServer();
    const stats = await request(server_).get('/wf/api/stats').expect(200);
    expect(stats.body.workflows.map((w: { name: string }) => w.name).sort()).toEqual(['acl-child', 'acl-parent', 'acl-sleeper']);
    const detail = await request(server_).get(`/wf/api/runs/${parent.id}`).expect(200);
    expect(detail.body.children).toHaveLength(1);
    await request(server_).get('/wf/api/runs').query({ workflow: 'acl-parent' }).expect(200);
    await request(server_).get('/wf/api/search').query({ q: parent.id }).expect(200);
    await waitFor(async () => (await app.get(WorkflowHealthIndicator).isHealthy()).workflows.status === 'up', 5_000);

    // and Redis refused nothing the app sent (a refused call is an error reply, counted here)
    const after = Number(/total_error_replies:(\d+)/.exec(await admin.info('stats'))?.[1]);
    expect(after - before).toBe(0);
    const denied = (await admin.call('ACL', 'LOG')) as unknown[];
    expect(denied).toEqual([]);
  }, 60_000);

  it('without INFO the app cannot start (it reads the server version); INFO is the one @dangerous command it needs', async () => {
    const prefix = uniquePrefix('acl');
    await createUser('noinfo', appRules(prefix).filter((rule) => rule !== '+info'));
    await expect(startApp({ connection: userUrl('noinfo'), prefix, worker: false })).rejects.toThrow(/NOPERM|info/i);
    await admin.call('ACL', 'LOG', 'RESET');
  });

  it('a user denied FUNCTION LOAD (a tenant) works once an admin loaded the library, and says so clearly when none is loaded', async () => {
    await admin.call('FUNCTION', 'FLUSH');
    const prefix = uniquePrefix('acl');
    await createUser('tenant', [...appRules(prefix), ...TENANT_DENIALS]);
    const refused = await startApp({ connection: userUrl('tenant'), prefix, worker: false }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(WorkflowConfigurationError);
    expect((refused as Error).message).toContain('may not FUNCTION LOAD');
    expect((refused as Error).message).toContain('admin');

    // an admin's deploy step: one start of this release with an admin connection loads the library
    const adminApp = await startApp({ connection: server.url, prefix, worker: false });
    await adminApp.close();
    const tenant = await startApp({ connection: userUrl('tenant'), prefix, worker: { reaperIntervalMs: 20 } }, [ChildWorkflow]);
    closers.push(() => tenant.close());
    expect(await tenant.client.run(ChildWorkflow, { n: 4 }, { timeoutMs: 10_000 })).toBe(16);
    const asTenant = redisFor(userUrl('tenant'));
    closers.push(async () => asTenant.disconnect());
    await expect(asTenant.call('FUNCTION', 'LOAD', 'REPLACE', '#!lua name=wf1\n')).rejects.toThrow(/NOPERM/);
  }, 30_000);
});
