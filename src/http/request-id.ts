import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { WebSocketServer } from 'ws';
import { pathOf } from './respond.js';

// Every HTTP response carries `x-request-id` (the caller's own when it sent a sane one), and every log
// line written while serving that request carries it as `requestId` (pino mixin over AsyncLocalStorage),
// so one failure is one greppable id from the client's report to the server's log.

type RequestScope = { requestId: string; failureLogged: boolean };

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
  return { requestId: current.requestId };
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
export function serveWithRequestId(logger: Logger, req: IncomingMessage, res: ServerResponse, handle: () => void): void {
  const requestId = requestIdOf(req);
  res.setHeader('x-request-id', requestId);
  const current: RequestScope = { requestId, failureLogged: false };
  const started = performance.now();
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
