import { PothosError } from '@pothos/core';
import type { Logger } from 'pino';
import { isDatabaseUnavailable, isRefusedValue } from './db/failures.js';
import { AppError } from './errors.js';

// The one place an error becomes the catalogue's error (errors.ts), for every surface: GraphQL over HTTP
// and WebSocket, REST, Twilio webhooks, short links. A surface classifies what it caught, logs it with
// logClassifiedError and only renders the result (a JSON body, a GraphQL error, a close code).

export type ErrorKind =
  /** An AppError thrown on purpose: the caller's answer, not worth a log line. */
  | 'expected'
  /** A value PostgreSQL refused to store or compare (too long, NUL, out of range): the caller's input. */
  | 'refused-value'
  /** The database is away; the caller may retry. */
  | 'unavailable'
  /** A bug: logged in full, masked for the caller. */
  | 'unexpected';

export type ClassifiedError = { kind: ErrorKind; error: AppError; cause: unknown };

const REFUSED_VALUE_MESSAGE = 'A value is invalid or too large to store.';
const UNAVAILABLE_MESSAGE = 'The database is unavailable; try again shortly.';

/** An AppError anywhere in the chain of wrapped errors (graphql-js and plugins wrap what resolvers throw). */
export function findAppError(error: unknown): AppError | null {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 8; depth += 1) {
    if (current instanceof AppError) return current;
    current = (current as { originalError?: unknown }).originalError ?? (current as { cause?: unknown }).cause;
  }
  return null;
}

function pothosErrorOf(error: unknown): PothosError | null {
  if (error instanceof PothosError) return error;
  const original = (error as { originalError?: unknown } | null)?.originalError;
  return original instanceof PothosError ? original : null;
}

export function classifyError(error: unknown): ClassifiedError {
  const appError = findAppError(error);
  if (appError) return { kind: 'expected', error: appError, cause: error };
  if (isDatabaseUnavailable(error)) return { kind: 'unavailable', error: new AppError('SERVICE_UNAVAILABLE', UNAVAILABLE_MESSAGE), cause: error };
  // Pothos refuses a global id it cannot decode, or of another type, by throwing: that is the caller's input.
  const pothos = pothosErrorOf(error);
  if (pothos && /has not been implemented|global ?id/i.test(pothos.message)) {
    return { kind: 'expected', error: new AppError('BAD_USER_INPUT', 'Not a valid global id.'), cause: error };
  }
  if (isRefusedValue(error)) return { kind: 'refused-value', error: new AppError('INVALID_PARAMETER', REFUSED_VALUE_MESSAGE), cause: error };
  return { kind: 'unexpected', error: new AppError('INTERNAL_ERROR', 'Internal server error.'), cause: error };
}

/** One log line for what a surface (`'REST request'`, `'Twilio webhook'`, ...) caught, at the level its kind calls for. */
export function logClassifiedError(logger: Logger, classified: ClassifiedError, surface: string, context: Record<string, unknown> = {}): void {
  const fields = { err: classified.cause, ...context };
  switch (classified.kind) {
    case 'expected':
      return;
    case 'refused-value':
      logger.warn(fields, `${surface} refused: the database refused a value`);
      return;
    case 'unavailable':
      logger.warn(fields, `${surface} failed: database unavailable`);
      return;
    case 'unexpected':
      logger.error(fields, `unexpected error in ${surface}`);
  }
}
