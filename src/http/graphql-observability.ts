import { context, SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import { getOperationAST, type DocumentNode, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/tracing.js';

// Operations counted (gateway_graphql_operations_total, _duration_seconds) and traced (a span per
// operation) in one place for both paths: Yoga runs useOperationObservability; the fast path, which
// answers without Yoga's plugins, calls observeOperation around what it executes. A fast-path request
// that Yoga ends up answering is counted by Yoga only.

export type OperationInfo = { type: string; name: string | undefined };

export function operationInfo(document: DocumentNode, operationName: string | null | undefined): OperationInfo {
  const operation = getOperationAST(document, operationName);
  return { type: operation?.operation ?? 'unknown', name: operationName ?? operation?.name?.value };
}

function startSpan(tracing: Tracing | null, info: OperationInfo): Span | undefined {
  return tracing?.tracer.startSpan(
    `${info.type} ${info.name ?? 'anonymous'}`,
    { kind: SpanKind.INTERNAL, attributes: { 'graphql.operation.type': info.type, 'graphql.operation.name': info.name ?? '' } },
    context.active(),
  );
}

function finish(metrics: Metrics, span: Span | undefined, info: OperationInfo, failed: boolean, startedAt: number) {
  metrics.operation(info.type, info.name, failed ? 'error' : 'success', startedAt);
  if (span) {
    if (failed) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }
}

const failedResult = (result: unknown) => Boolean((result as ExecutionResult | undefined)?.errors?.length);

/** Yoga's side (HTTP through Yoga, graphql-ws, SSE). Subscriptions count once, when they start. */
export function useOperationObservability(metrics: Metrics, tracing: Tracing | null): Plugin {
  const observe = (document: DocumentNode, operationName: string | null | undefined) => {
    const startedAt = performance.now();
    const info = operationInfo(document, operationName);
    const span = startSpan(tracing, info);
    return (result: unknown) => finish(metrics, span, info, failedResult(result), startedAt);
  };
  return {
    onExecute({ args }) {
      const done = observe(args.document, args.operationName);
      return { onExecuteDone: ({ result }) => done(result) };
    },
    onSubscribe({ args }) {
      const done = observe(args.document, args.operationName);
      return { onSubscribeResult: ({ result }) => done(result), onSubscribeError: () => done({ errors: [1] }) };
    },
  };
}

/**
 * The fast path's side: runs `execute` in the operation's span. Only an answer it serves (`served`) is
 * counted here; any other goes to Yoga, whose plugin counts it.
 */
export async function observeOperation<T>(
  metrics: Metrics,
  tracing: Tracing | null,
  info: OperationInfo,
  execute: () => Promise<T>,
  served: (result: T) => boolean,
): Promise<T> {
  const startedAt = performance.now();
  const span = startSpan(tracing, info);
  try {
    const result = span ? await context.with(tracing!.spanContext(span), execute) : await execute();
    if (served(result)) finish(metrics, span, info, false, startedAt);
    else span?.end();
    return result;
  } catch (error) {
    span?.end();
    throw error;
  }
}
