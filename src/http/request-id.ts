import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { WebSocketServer } from 'ws';
import { context, SpanStatusCode } from '@opentelemetry/api';
import type { Tracing } from '../observability/tracing.js';
import { pathOf } from './respond.js';

// Every HTTP response carries `x-request-id` (the caller's own when it sent a sane one), and every log
// line written while serving that request carries it as `requestId` (pino mixin over AsyncLocalStorage),
// so one failure is one greppable id from the client's report to the server's log.

type RequestScope = { requestId: string; traceId: string | undefined; failureLogged: boolean };

/** W3C traceparent: version-traceid-parentid-flags. */
const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/;

/** What serveWithRequestId observes of each request besides its id (metrics, tracing). */
export type RequestObservers = {
  /** The route's template (low cardinality): names the request's span and metrics. */
  route: string;
  tracing: Tracing | null;
  /** Called once when the response is done (finished or cut), with performance.now() at its start. */
  onClose?: (req: IncomingMessage, res: ServerResponse, route: string, startedAt: number) => void;
};

const scope = new AsyncLocalStorage<RequestScope>();

/** Ids we accept from callers: short and printable, so they can neither flood nor forge log lines. */
const ACCEPTED_ID = /^[\w.:@/+=-]{1,128}$/;

export function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  const candidate = Array.isArray(incoming) ? incoming[0] : incoming;
  return candidate && ACCEPTED_ID.test(candidate) ? candidate : randomUUID();
}

export function currentRequestId(): string | undefined {
  return scope.getStore()?.requestId;
}

/** pino `mixin`: adds the request id, and notes that this request's failure was logged (warn or worse). */
export function requestLogMixin(_merge: object, level: number): Record<string, unknown> {
  const current = scope.getStore();
  if (!current) return {};
  if (level >= 40) current.failureLogged = true;
  return current.traceId ? { requestId: current.requestId, traceId: current.traceId } : { requestId: current.requestId };
}

/** Whether a warning or error was already logged for the request being served. */
export function failureAlreadyLogged(): boolean {
  return scope.getStore()?.failureLogged ?? false;
}

export function markFailureLogged(): void {
  const current = scope.getStore();
  if (current) current.failureLogged = true;
}

/**
 * Runs `handle` inside the request's scope, with `x-request-id` set on the response. A response that
 * ends with a 4xx/5xx status and was not logged by its handler is logged here, once.
 */
export function serveWithRequestId(
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  handle: () => void,
  observers?: RequestObservers,
): void {
  const requestId = requestIdOf(req);
  res.setHeader('x-request-id', requestId);
  const current: RequestScope = { requestId, traceId: undefined, failureLogged: false };
  const started = performance.now();
  if (observers) {
    const { route, tracing, onClose } = observers;
    if (tracing) {
      // The request's span, child of the caller's traceparent; the logs of the request carry its trace id.
      const { span, context: traced } = tracing.startServerSpan(`${req.method} ${route}`, req.headers, {
        'http.request.method': req.method ?? '',
        'http.route': route,
        'url.path': pathOf(req),
      });
      current.traceId = span.spanContext().traceId;
      res.once('close', () => {
        span.setAttribute('http.response.status_code', res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        onClose?.(req, res, route, started);
      });
      context.with(traced, () => serveInScope(logger, req, res, handle, current, started));
      return;
    }
    // Tracing off: the caller's trace id (if it sent one) still ties our log lines to its trace.
    const traceparent = req.headers.traceparent;
    if (typeof traceparent === 'string') current.traceId = TRACEPARENT.exec(traceparent)?.[1];
    if (onClose) res.once('close', () => onClose(req, res, route, started));
  }
  serveInScope(logger, req, res, handle, current, started);
}

function serveInScope(logger: Logger, req: IncomingMessage, res: ServerResponse, handle: () => void, current: RequestScope, started: number) {
  const { requestId } = current;
  res.once('finish', () => {
    if (res.statusCode < 400 || current.failureLogged) return;
    const entry = { requestId, method: req.method, path: pathOf(req), status: res.statusCode, ms: Math.round(performance.now() - started) };
    if (res.statusCode >= 500) logger.error(entry, 'request failed');
    else logger.info(entry, 'request refused');
  });
  scope.run(current, handle);
}

/** WebSocket upgrades answer with an `x-request-id` header too. */
export function addRequestIdToUpgrades(wss: WebSocketServer): void {
  wss.on('headers', (headers, req) => {
    headers.push(`x-request-id: ${requestIdOf(req)}`);
  });
}
