// Tells "the database is away" (connection refused or lost, server shutting down or restarting, no
// free connection slot) apart from every other error, so that callers get a 503 they can retry rather
// than a 500, and the service keeps running until the database is back (postgres.js reconnects by itself).

/** Node socket errors and postgres.js connection states. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
]);

/** SQLSTATEs: class 08 (connection exception), 57P01-57P03 (terminated, crashed, cannot connect now), 53300 (too many connections). */
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[123]|53300)$/;

export function isDatabaseUnavailable(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; current && typeof current === 'object' && depth < 8; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECTION_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code))) return true;
    // AggregateError from a failed connect to several addresses (IPv4 and IPv6 localhost).
    const errors = (current as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.some((inner) => isDatabaseUnavailable(inner))) return true;
    current = (current as { cause?: unknown }).cause ?? (current as { originalError?: unknown }).originalError;
  }
  return false;
}

/** Seconds a client should wait before retrying while the database is away. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

/**
 * A value PostgreSQL refused to store or compare (SQLSTATE class 22, data exception: a string too long
 * for its column, NUL in text, a number out of range; or 54000, e.g. an index row too large): the
 * caller's input, so a 400, not a 500.
 */
export function isRefusedValue(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; current && typeof current === 'object' && depth < 8; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^(22...|54000)$/.test(code)) return true;
    current = (current as { cause?: unknown }).cause ?? (current as { originalError?: unknown }).originalError;
  }
  return false;
}

/**
 * The constraint a unique violation (SQLSTATE 23505) names, or null when the error is not one.
 * postgres.js names it `constraint_name`, PGlite `constraint`; either may be wrapped in a cause.
 */
export function violatedUniqueConstraint(error: unknown): string | null {
  return violatedConstraint(error, '23505');
}

/** The constraint a foreign-key violation (SQLSTATE 23503) names, or null when the error is not one. */
export function violatedForeignKey(error: unknown): string | null {
  return violatedConstraint(error, '23503');
}

function violatedConstraint(error: unknown, sqlState: string): string | null {
  let current: unknown = error;
  for (let depth = 0; current && typeof current === 'object' && depth < 8; depth += 1) {
    const { code, constraint_name: constraintName, constraint } = current as { code?: unknown; constraint_name?: unknown; constraint?: unknown };
    if (code === sqlState) return String(constraintName ?? constraint ?? '');
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}

/**
 * What only a hot standby answers to a read: `conflict` (40001) when a query is cancelled because replay
 * must remove rows it still reads (a read-only query meets no other serialization failure), `read-only`
 * (25006) when something tried to write there. The same statement on the primary succeeds.
 */
export function standbyRefusal(error: unknown): 'conflict' | 'read-only' | null {
  let current: unknown = error;
  for (let depth = 0; current && typeof current === 'object' && depth < 8; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (code === '40001') return 'conflict';
    if (code === '25006') return 'read-only';
    current = (current as { cause?: unknown }).cause ?? (current as { originalError?: unknown }).originalError;
  }
  return null;
}
