import { createRequire } from 'node:module';
import { context, createContextKey, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { PglitePreparedQuery } from 'drizzle-orm/pglite/session';
import { PostgresJsPreparedQuery } from 'drizzle-orm/postgres-js/session';
import type { Config } from '../config.js';

// OpenTelemetry traces, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set. With it unset
// nothing here is created: deps.tracing is null and every call site skips its span, so tracing off costs
// nothing. The tracer provider is ours (not registered globally), so libraries that trace through the
// global API on their own (drizzle-orm records query *values*) stay silent; only the context manager
// (async context across awaits) and the W3C propagator are process-wide, as OpenTelemetry requires.

/** The tracer serving the current request or job, carried in the context so SQL spans find it. */
const TRACER_KEY = createContextKey('conversations-gateway tracer');

export type Tracing = {
  tracer: Tracer;
  /** Runs `work` inside a new span (active for what it awaits), ending it when `work` settles. */
  inSpan<T>(name: string, attributes: Attributes, work: (span: Span) => Promise<T>, kind?: SpanKind): Promise<T>;
  /** Starts the span of an incoming request, child of the caller's `traceparent` if any. */
  startServerSpan(name: string, headers: Record<string, string | string[] | undefined>, attributes: Attributes): { span: Span; context: Context };
  /** The current context with `span` active (and this tracer carried, for SQL spans). */
  spanContext(span: Span): Context;
  /** Exports what is buffered (tests, shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
};

// The SDK is loaded only when tracing is on (about 20 MB of modules a process without tracing never needs).
const load = createRequire(import.meta.url);
type Sdk = {
  AsyncLocalStorageContextManager: typeof import('@opentelemetry/context-async-hooks').AsyncLocalStorageContextManager;
  W3CTraceContextPropagator: typeof import('@opentelemetry/core').W3CTraceContextPropagator;
  OTLPTraceExporter: typeof import('@opentelemetry/exporter-trace-otlp-http').OTLPTraceExporter;
  resourceFromAttributes: typeof import('@opentelemetry/resources').resourceFromAttributes;
  BasicTracerProvider: typeof import('@opentelemetry/sdk-trace-base').BasicTracerProvider;
  BatchSpanProcessor: typeof import('@opentelemetry/sdk-trace-base').BatchSpanProcessor;
};
let sdk: Sdk | null = null;
function loadSdk(): Sdk {
  if (sdk) return sdk;
  sdk = {
    ...(load('@opentelemetry/context-async-hooks') as Pick<Sdk, 'AsyncLocalStorageContextManager'>),
    ...(load('@opentelemetry/core') as Pick<Sdk, 'W3CTraceContextPropagator'>),
    ...(load('@opentelemetry/exporter-trace-otlp-http') as Pick<Sdk, 'OTLPTraceExporter'>),
    ...(load('@opentelemetry/resources') as Pick<Sdk, 'resourceFromAttributes'>),
    ...(load('@opentelemetry/sdk-trace-base') as Pick<Sdk, 'BasicTracerProvider' | 'BatchSpanProcessor'>),
  };
  context.setGlobalContextManager(new sdk.AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new sdk.W3CTraceContextPropagator());
  instrumentSql();
  return sdk;
}

export function createTracing(config: Pick<Config, 'tracing'>): Tracing | null {
  if (!config.tracing) return null;
  const { BasicTracerProvider, BatchSpanProcessor, OTLPTraceExporter, resourceFromAttributes } = loadSdk();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.tracing.serviceName }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: config.tracing.tracesUrl, headers: config.tracing.headers }))],
  });
  const tracer = provider.getTracer('conversations-gateway');
  return {
    tracer,
    inSpan(name, attributes, work, kind = SpanKind.INTERNAL) {
      const parent = context.active().setValue(TRACER_KEY, tracer);
      const span = tracer.startSpan(name, { kind, attributes }, parent);
      return context.with(trace.setSpan(parent, span), async () => {
        try {
          return await work(span);
        } catch (error) {
          span.recordException(error as Error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
          throw error;
        } finally {
          span.end();
        }
      });
    },
    startServerSpan(name, headers, attributes) {
      const parent = propagation.extract(ROOT_CONTEXT, headers).setValue(TRACER_KEY, tracer);
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
      return { span, context: trace.setSpan(parent, span) };
    },
    spanContext: (span) => trace.setSpan(context.active().setValue(TRACER_KEY, tracer), span),
    flush: () => provider.forceFlush(),
    close: () => provider.shutdown(),
  };
}

/** The trace id of the active span, if tracing is on and a span is active. */
export function activeTraceId(): string | undefined {
  return trace.getSpan(context.active())?.spanContext().traceId;
}

/** Runs `work` with the current context (a request's span) bound, for callbacks that lose it. */
export function bindContext<T extends (...args: never[]) => unknown>(work: T): T {
  return context.bind(context.active(), work);
}

// SQL: a span per statement named by its verb and first table ("select messages"), with the statement
// text, whose values are placeholders ($1, $2): never the values themselves.
const WRITE = /\b(insert\s+into|update|delete\s+from)\s+"?([\w.]+)"?/i;
const READ = /\bfrom\s+"?([\w.]+)"?/i;
const names = new Map<string, string>();
function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    // A statement with CTEs is named by what it writes, if anything, else by what it reads first.
    const code = text.replace(/--[^\n]*/g, '');
    const verb = code.trimStart().split(/\s/, 1)[0]!.toLowerCase();
    const write = verb === 'select' ? null : WRITE.exec(code);
    if (write) name = `${write[1]!.split(/\s/)[0]!.toLowerCase()} ${write[2]}`;
    else {
      const table = READ.exec(code)?.[1];
      const shown = verb === 'with' ? 'select' : verb;
      name = table ? `${shown} ${table}` : shown;
    }
    if (names.size < 5_000) names.set(text, name);
  }
  return name;
}

function instrumentSql(): void {
  for (const prototype of [PostgresJsPreparedQuery.prototype, PglitePreparedQuery.prototype] as unknown as Record<string, unknown>[]) {
    for (const method of ['execute', 'all']) {
      const original = prototype[method] as (this: { queryString: string }, ...args: unknown[]) => Promise<unknown>;
      prototype[method] = function traced(this: { queryString: string }, ...args: unknown[]) {
        const active = context.active();
        const tracer = active.getValue(TRACER_KEY) as Tracer | undefined;
        if (!tracer) return original.apply(this, args);
        const span = tracer.startSpan(
          statementName(this.queryString),
          { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': this.queryString } },
          active,
        );
        return original.apply(this, args).then(
          (result) => {
            span.end();
            return result;
          },
          (error: unknown) => {
            span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
            span.end();
            throw error;
          },
        );
      };
    }
  }
}
