import { Logger } from '@nestjs/common';

/** The part of an OpenTelemetry `Span` we use. */
export interface SpanLike {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  recordException(exception: Error | string): unknown;
  end(): void;
}

/** The part of an OpenTelemetry `Tracer` we use (`trace.getTracer(name)` returns one). */
export interface TracerLike {
  startSpan(name: string, options?: { attributes?: Record<string, string | number | boolean> }, context?: unknown): SpanLike;
}

export interface WorkflowTracingOptions {
  /** A tracer to use instead of `trace.getTracer('nestjs-redis-workflows')` from @opentelemetry/api. */
  tracer?: TracerLike;
}

/** The part of @opentelemetry/api we use: context propagation, so that spans nest. */
interface OtelApi {
  trace: { getTracer(name: string): TracerLike; setSpan(context: unknown, span: SpanLike): unknown };
  context: { active(): unknown; with<T>(context: unknown, fn: () => T): T };
}

/** SpanStatusCode of OpenTelemetry. */
const STATUS_OK = 1;
const STATUS_ERROR = 2;
const OTEL_PACKAGE = '@opentelemetry/api';

/** An open span, and how to run code inside it (so that spans user code opens nest under it). */
export interface OpenSpan {
  end(error?: unknown): void;
  within<T>(fn: () => T): T;
  /** The context carrying this span, to parent child spans; undefined without @opentelemetry/api. */
  readonly context: unknown;
}

const NO_SPAN: OpenSpan = { end: () => undefined, within: (fn) => fn(), context: undefined };

/**
 * Optional OpenTelemetry spans: a 'workflow.run <name>' span per execution of a run and a
 * 'workflow.step <name>' span per step execution below it, with the run id, workflow and attempt as
 * attributes. @opentelemetry/api is loaded lazily with a dynamic import; when it is not installed (and no
 * tracer is given) every call is a no-op.
 */
export class WorkflowTracing {
  private readonly logger = new Logger('WorkflowTracing');
  private tracer?: TracerLike;
  private api?: OtelApi;

  constructor(private readonly options: boolean | WorkflowTracingOptions | undefined) {}

  get enabled(): boolean {
    return this.tracer !== undefined;
  }

  /** Resolves the tracer once, at module init. */
  async init(): Promise<void> {
    if (this.options === false) return;
    const given = typeof this.options === 'object' ? this.options.tracer : undefined;
    this.api = await loadOtel();
    this.tracer = given ?? this.api?.trace.getTracer('nestjs-redis-workflows');
    if (given === undefined && this.api === undefined && typeof this.options === 'object') {
      this.logger.warn(`tracing is configured but ${OTEL_PACKAGE} is not installed: no spans are recorded. Install it, or pass { tracer }.`);
    }
  }

  start(name: string, attributes: Record<string, string | number | boolean>, parent?: OpenSpan): OpenSpan {
    const tracer = this.tracer;
    if (!tracer) return NO_SPAN;
    const api = this.api;
    const parentContext = parent?.context ?? api?.context.active();
    let span: SpanLike;
    try {
      span = tracer.startSpan(name, { attributes }, parentContext);
    } catch {
      return NO_SPAN;
    }
    const context = api ? api.trace.setSpan(parentContext, span) : undefined;
    let ended = false;
    return {
      context,
      within: (fn) => (api && context !== undefined ? api.context.with(context, fn) : fn()),
      end: (error) => {
        if (ended) return;
        ended = true;
        try {
          if (error !== undefined) {
            span.recordException(error instanceof Error ? error : String(error));
            span.setStatus({ code: STATUS_ERROR, message: error instanceof Error ? error.message : String(error) });
          } else {
            span.setStatus({ code: STATUS_OK });
          }
          span.end();
        } catch {
          // a tracer's failure never reaches the run
        }
      },
    };
  }
}

async function loadOtel(): Promise<OtelApi | undefined> {
  try {
    // A variable specifier keeps bundlers and the type checker from requiring the optional package.
    const specifier = OTEL_PACKAGE;
    const loaded = (await import(specifier)) as OtelApi & { default?: OtelApi };
    const api = loaded.trace ? loaded : loaded.default;
    return api?.trace && api.context ? api : undefined;
  } catch {
    return undefined;
  }
}
