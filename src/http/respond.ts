import type { IncomingMessage, ServerResponse } from 'node:http';
import { UNAVAILABLE_RETRY_AFTER_SECONDS } from '../db/failures.js';
import type { AppError } from '../errors.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

export function pathOf(req: IncomingMessage): string {
  const raw = req.url ?? '/';
  const end = raw.indexOf('?');
  return end === -1 ? raw : raw.slice(0, end);
}

/**
 * The JSON error every surface but GraphQL answers with: `{ success: false, code, message }` as the REST
 * reference has it, the catalogue's status, and the headers the code calls for. The REST routes answer
 * exactly that shape (the reference allows no more); our own routes (Twilio webhooks, short links) add
 * the error's details beside it, as GraphQL puts them in `extensions` (`parameter: 'MessageSid'`).
 */
export function sendErrorJson(res: ServerResponse, error: AppError, options: { headers?: Record<string, string>; details?: boolean } = {}) {
  const headers = options.headers ?? {};
  const all: Record<string, string> = { ...headers };
  if (error.code === 'UNAUTHENTICATED') all['www-authenticate'] = 'Bearer';
  // An oversized body may still be arriving: answer, then close rather than read it.
  if (error.code === 'PAYLOAD_TOO_LARGE') all.connection = 'close';
  if (error.details?.allow) all.allow = String(error.details.allow);
  if (error.code === 'SERVICE_UNAVAILABLE') all['retry-after'] = String(UNAVAILABLE_RETRY_AFTER_SECONDS);
  const details = options.details ? error.details : undefined;
  sendJson(res, error.status, { success: false, code: error.code, message: error.message, ...details }, all);
}
