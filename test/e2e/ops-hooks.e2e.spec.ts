import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import {
  OnWorkflowEvent,
  Workflow,
  WorkflowEvents,
  type SpanLike,
  type TracerLike,
  type WorkflowContext,
  type WorkflowEventPayload,
} from '../../lib/index.js';
import { redisUrlForTests, uniquePrefix, type TestRedis } from '../support/redis-server.js';
import { startApp, waitFor, type TestApp } from '../support/workflow-app.js';

const attemptsSeen = new Map<string, number>();

@Workflow('hooks-flaky', { queue: 'hooks', maxAttempts: 2, backoff: { type: 'fixed', delayMs: 10 } })
@Injectable()
class FlakyWorkflow {
  async execute(ctx: WorkflowContext<{ key: string }>) {
    await ctx.step.run('prepare', () => 'ready');
    const n = (attemptsSeen.get(ctx.input.key) ?? 0) + 1;
    attemptsSeen.set(ctx.input.key, n);
    if (n === 1) throw new Error('first attempt fails');
    return 'ok';
  }
}

@Workflow('hooks-broken', { queue: 'hooks', maxAttempts: 1 })
@Injectable()
class BrokenWorkflow {
  async execute(ctx: WorkflowContext<object>) {
    await ctx.step.run('explode', () => Promise.reject(new Error('boom')));
  }
}

@Injectable()
class HookListeners {
  readonly succeeded: WorkflowEventPayload[] = [];
  readonly flaky: WorkflowEventPayload[] = [];

  @OnWorkflowEvent('run.succeeded')
  onSucceeded(e: WorkflowEventPayload) {
    this.succeeded.push(e);
  }

  @OnWorkflowEvent('*', { workflow: 'hooks-flaky' })
  onFlaky(e: WorkflowEventPayload) {
    this.flaky.push(e);
  }

  @OnWorkflowEvent(['run.failed', 'step.failed'])
  throwing() {
    throw new Error('a listener bug must not reach the run');
  }
}

interface RecordedSpan {
  name: string;
  attributes: Record<string, unknown>;
  status?: { code: number; message?: string };
  exceptions: unknown[];
  ended: boolean;
}

class FakeTracer implements TracerLike {
  readonly spans: RecordedSpan[] = [];
  startSpan(name: string, options?: { attributes?: Record<string, string | number | boolean> }): SpanLike {
    const span: RecordedSpan = { name, attributes: { ...(options?.attributes ?? {}) }, exceptions: [], ended: false };
    this.spans.push(span);
    return {
      setAttribute: (key, value) => (span.attributes[key] = value),
      setStatus: (status) => (span.status = status),
      recordException: (e) => span.exceptions.push(e),
      end: () => (span.ended = true),
    };
  }
}

describe('lifecycle hooks and tracing (e2e)', () => {
  let redis: TestRedis;
  let app: TestApp;
  const tracer = new FakeTracer();

  beforeAll(async () => {
    redis = await redisUrlForTests();
    app = await startApp(
      { connection: redis.url, prefix: uniquePrefix('hooks'), tracing: { tracer }, worker: { reaperIntervalMs: 20 } },
      [FlakyWorkflow, BrokenWorkflow, HookListeners],
    );
  });

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });

  it('reports run and step events to @OnWorkflowEvent methods, in order, filtered by workflow', async () => {
    const listeners = app.moduleRef.get(HookListeners);
    const handle = await app.client.emit(FlakyWorkflow, { key: 'a' });
    expect(await handle.result({ timeoutMs: 10_000 })).toBe('ok');
    await waitFor(() => listeners.flaky.some((e) => e.event === 'run.succeeded'));
    const mine = listeners.flaky.filter((e) => e.runId === handle.id);
    expect(mine.map((e) => `${e.event}#${e.attempt}`)).toEqual([
      'run.started#1',
      'step.succeeded#1',
      'run.retrying#1',
      'run.started#2', // the stored step is replayed, not executed: no step event
      'run.succeeded#2',
    ]);
    expect(mine[0]).toMatchObject({ workflow: 'hooks-flaky', queue: 'hooks', maxAttempts: 2, resumed: false, workerId: expect.any(String) });
    expect(mine[1]).toMatchObject({ step: { name: 'prepare', occurrence: 0, kind: 'step', attempts: 1 } });
    expect(mine[2].error?.message).toBe('first attempt fails');
    expect(mine[2].retryInMs).toBe(10);
    expect(mine[3].resumed).toBe(true);
    expect(mine[4].durationMs).toEqual(expect.any(Number));
    expect(listeners.succeeded.map((e) => e.runId)).toContain(handle.id);
  });

  it('reports failures through WorkflowEvents.on, and a throwing listener changes nothing', async () => {
    const events = app.moduleRef.get(WorkflowEvents);
    const seen: WorkflowEventPayload[] = [];
    const off = events.on(['step.failed', 'run.failed'], (e) => void seen.push(e));
    try {
      const handle = await app.client.emit(BrokenWorkflow, {});
      await expect(handle.result({ timeoutMs: 10_000 })).rejects.toThrow('boom');
      await waitFor(() => seen.some((e) => e.event === 'run.failed' && e.runId === handle.id));
      const mine = seen.filter((e) => e.runId === handle.id);
      expect(mine.map((e) => e.event)).toEqual(['step.failed', 'run.failed']);
      expect(mine[0]).toMatchObject({ step: { name: 'explode' }, error: expect.objectContaining({ message: 'boom' }) });
      expect((await app.client.getRun(handle.id))?.status).toBe('failed');
    } finally {
      off();
    }
    expect(() => events.on('run.nope' as never, () => undefined)).toThrow("Unknown workflow event 'run.nope'");
  });

  it('opens a span per run execution and per step, with the run id, ended with their outcome', async () => {
    const handle = await app.client.emit(FlakyWorkflow, { key: 'traced' });
    await handle.result({ timeoutMs: 10_000 });
    await waitFor(() => tracer.spans.filter((s) => s.attributes['workflow.run_id'] === handle.id && s.ended).length === 3);
    const spans = tracer.spans.filter((s) => s.attributes['workflow.run_id'] === handle.id);
    expect(spans.map((s) => [s.name, s.attributes['workflow.attempt'] ?? s.attributes['workflow.step'], s.status?.code])).toEqual([
      ['workflow.run hooks-flaky', 1, 2], // error status: the attempt failed
      ['workflow.step prepare', 'prepare', 1],
      ['workflow.run hooks-flaky', 2, 1],
    ]);
    expect(spans[0].exceptions).toHaveLength(1);
    expect(spans.every((s) => s.ended)).toBe(true);
  });
});
