import { sql, type SQL } from 'drizzle-orm';
import { badUserInput } from '../errors.js';

// Page sizes, the same for every list (conversations, messages) and every surface (GraphQL connections,
// REST `limit`, which is capped rather than refused, as the published API does).

export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;

/** A connection's `first` or `last`: null when not given; BAD_USER_INPUT when negative, fractional or over MAX_PAGE_SIZE. */
export function pageSize(value: number | null | undefined, name: string): number | null {
  if (value === null || value === undefined) return null;
  if (!Number.isInteger(value) || value < 0) throw badUserInput(`${name} must be a non-negative integer.`, { argument: name });
  if (value > MAX_PAGE_SIZE) {
    throw badUserInput(`${name} must be at most ${MAX_PAGE_SIZE}; use cursors to read further.`, {
      argument: name,
      maximum: MAX_PAGE_SIZE,
    });
  }
  return value;
}

/**
 * A page's LIMIT (the page and one more, to tell whether there is a next page) written into the statement,
 * not bound as a parameter: with an unknown LIMIT PostgreSQL judged its generic plan dearer than a custom
 * one and planned the statement again at every execution (0.4-0.8 ms each); with a literal one it keeps the
 * generic plan after five. Page sizes are validated integers, so there are at most 201 texts.
 */
export const pageLimit = (size: number): SQL => sql.raw(String(Math.max(0, Math.trunc(size) || 0) + 1));
