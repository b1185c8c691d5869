import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Inject, Injectable, Logger, Scope } from '@nestjs/common';
import { OnFailure, Workflow, WorkflowConfigurationError, type WorkflowContext } from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { startApp, type TestApp } from '../support/workflow-app.js';

@Workflow('dx-dup')
@Injectable()
class FirstDuplicate {
  execute() {
    return 1;
  }
}

@Workflow('dx-dup')
@Injectable()
class SecondDuplicate {
  execute() {
    return 2;
  }
}

@Injectable()
class ForgotTheDecorator {
  execute() {
    return 'never';
  }

  @OnFailure()
  failed() {}
}

@Workflow('dx-request-scoped')
@Injectable({ scope: Scope.REQUEST })
class RequestScopedWorkflow {
  execute() {
    return 'never';
  }
}

@Injectable({ scope: Scope.REQUEST })
class PerRequestService {}

@Workflow('dx-depends-on-request')
@Injectable()
class DependsOnRequestScope {
  constructor(@Inject(PerRequestService) readonly perRequest: PerRequestService) {}
  execute() {
    return 'never';
  }
}

@Workflow('dx-hello', { queue: 'dx-main' })
@Injectable()
class HelloWorkflow {
  execute(ctx: WorkflowContext<{ name: string }>) {
    return `hello ${ctx.input.name}`;
  }
}

describe('start-up checks (e2e, real Redis)', () => {
  let redis: TestRedis;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    redis = await redisUrlForTests();
  });

  afterEach(() => {
    jest.restoreAllMocks();
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await redis?.stop();
  });

  const start = async (providers: any[], extra: object = {}) => {
    const app = await startApp({ connection: redis.url, prefix: uniquePrefix('dxstart'), ...extra }, providers);
    apps.push(app);
    return app;
  };

  it('refuses two workflow providers with the same name, naming both classes', async () => {
    const error: any = await start([FirstDuplicate, SecondDuplicate]).catch((e) => e);
    expect(error).toBeInstanceOf(WorkflowConfigurationError);
    expect(error.message).toContain("Two providers declare workflow 'dx-dup': FirstDuplicate and SecondDuplicate");
  });

  it('refuses @OnFailure() in a class without @Workflow()', async () => {
    const error: any = await start([ForgotTheDecorator]).catch((e) => e);
    expect(error).toBeInstanceOf(WorkflowConfigurationError);
    expect(error.message).toContain("ForgotTheDecorator.failed has @OnFailure() but ForgotTheDecorator has no @Workflow(): add @Workflow('name')");
  });

  it('refuses a request-scoped workflow provider, and one that depends on a request-scoped provider', async () => {
    const scoped: any = await start([RequestScopedWorkflow]).catch((e) => e);
    expect(scoped).toBeInstanceOf(WorkflowConfigurationError);
    expect(scoped.message).toContain("Workflow 'dx-request-scoped' (RequestScopedWorkflow) is request-scoped");
    expect(scoped.message).toContain('singleton-scoped');

    const dependent: any = await start([PerRequestService, DependsOnRequestScope]).catch((e) => e);
    expect(dependent).toBeInstanceOf(WorkflowConfigurationError);
    expect(dependent.message).toContain('DependsOnRequestScope');
  });

  it('warns about a queue the worker is told to serve that no workflow uses, and still runs the others', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn');
    const app = await start([HelloWorkflow], { worker: { queues: ['dx-main', 'dx-nobody'], reaperIntervalMs: 20 } });
    const warnings = warn.mock.calls.map((call) => String(call[0]));
    expect(warnings).toContain("Queue 'dx-nobody' is served by this worker but no workflow of this app uses it as its queue.");
    expect(warnings.some((w) => w.includes("'dx-main'"))).toBe(false);
    expect(await app.client.run(HelloWorkflow, { name: 'queue' }, { timeoutMs: 10_000 })).toBe('hello queue');
  });

  it('lets an app emit a workflow class that is not among its providers, executed by a separate worker app', async () => {
    const prefix = uniquePrefix('dxsplit');
    const worker = await startApp({ connection: redis.url, prefix }, [HelloWorkflow]);
    apps.push(worker);
    const api = await startApp({ connection: redis.url, prefix, worker: false }, []);
    apps.push(api);
    const handle = await api.client.emit(HelloWorkflow, { name: 'api' });
    expect(handle.id).toContain('.dx-main.');
    expect(await handle.result({ timeoutMs: 10_000 })).toBe('hello api');
    expect(await api.client.run('dx-hello', { name: 'by name' }, { timeoutMs: 10_000 })).toBe('hello by name');
  });
});
