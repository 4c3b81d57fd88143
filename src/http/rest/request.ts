import type { IncomingMessage } from 'node:http';
import { AppError } from '../../errors.js';
import { normalizePhone } from '../../services/phone.js';
import { containsNul, readBody } from '../body.js';

export function queryOf(req: IncomingMessage): URLSearchParams {
  const raw = req.url ?? '';
  const start = raw.indexOf('?');
  return new URLSearchParams(start === -1 ? '' : raw.slice(start + 1));
}

/** A query parameter given at most once; undefined when absent. */
export function singleParam(query: URLSearchParams, name: string): string | undefined {
  const values = query.getAll(name);
  if (values.length > 1) throw new AppError('INVALID_PARAMETER', `${name} must be given at most once.`, { parameter: name });
  return values[0];
}

/** Only the strings `true` and `false`, as the published API documents boolean parameters. */
export function booleanParam(query: URLSearchParams, name: string): boolean | undefined {
  const value = singleParam(query, name);
  if (value === undefined) return undefined;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new AppError('INVALID_PARAMETER', `${name} must be "true" or "false", got ${JSON.stringify(value.slice(0, 40))}.`, {
    parameter: name,
  });
}

/** A positive integer with a default; values above `max` are read as `max`, as the published API caps them. */
export function limitParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const value = singleParam(query, name);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new AppError('INVALID_PARAMETER', `${name} must be an integer of at least 1, got ${JSON.stringify(value.slice(0, 40))}.`, {
      parameter: name,
    });
  }
  return Math.min(Number(value), max);
}

/** The `:phoneNumber` path segment, URL-encoded or not, in any standard US format, as E.164. */
export function phoneParam(segment: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    throw new AppError('INVALID_PHONE_NUMBER', 'phoneNumber is not a valid phone number: its URL encoding is malformed.', {
      field: 'phoneNumber',
    });
  }
  return normalizePhone(decoded, 'phoneNumber');
}

function isJsonContentType(header: string | undefined): boolean {
  const type = header?.split(';')[0]?.trim().toLowerCase();
  return type === 'application/json' || (type !== undefined && /^application\/[\w.+-]+\+json$/.test(type));
}

/** Reads a JSON object body: wrong content type, malformed JSON or a non-object is 400 INVALID_BODY. */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!isJsonContentType(req.headers['content-type'])) {
    req.resume(); // drain, so the connection can be reused
    throw new AppError('INVALID_BODY', 'Send the body as JSON with "Content-Type: application/json".');
  }
  const text = (await readBody(req)).toString('utf8');
  if (text.trim() === '') throw new AppError('INVALID_BODY', 'The request body is empty; send a JSON object.');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new AppError('INVALID_BODY', `The request body is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AppError('INVALID_BODY', 'The request body must be a JSON object.');
  }
  if (containsNul(parsed)) throw new AppError('INVALID_BODY', 'Strings must not contain NUL (\\u0000) characters.');
  return parsed as Record<string, unknown>;
}
