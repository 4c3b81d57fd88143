import { sql, type SQL } from 'drizzle-orm';
import { HotQuery } from '../db/rows.js';
import { badUserInput } from '../errors.js';
import { isUuid } from './cursors.js';

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

/**
 * A cache of page statements by shape (columns, walk, which cursors): each built once, its values bound per
 * request. Bounded, so shapes made from odd inputs cannot grow it without end.
 */
export function statementCache(): (shape: string, build: () => SQL) => HotQuery {
  const statements = new Map<string, HotQuery>();
  return (shape, build) => {
    let query = statements.get(shape);
    if (!query) {
      query = new HotQuery(build());
      if (statements.size < 1024) statements.set(shape, query);
    }
    return query;
  };
}

/**
 * Pages of many conversations, grouped back by conversation: one plain indexed read per conversation when
 * there is one or their requests differ (their own cursors), otherwise one statement over all their ids
 * (`many` gets them as a uuid[] literal, so every batch size shares one prepared statement: a LATERAL walk
 * of the keyset index per conversation). A page of conversations with their lists costs a fixed number of queries.
 */
export async function readPerConversation<R extends { conversationId: string }, Q extends { key: string }>(
  requests: ReadonlyArray<{ conversationId: string; request: Q }>,
  one: (conversationId: string, request: Q) => Promise<R[]>,
  many: (ids: string, request: Q) => Promise<R[]>,
): Promise<R[][]> {
  if (requests.length === 0) return [];
  let rows: R[];
  if (requests.length === 1 || requests.some((r) => r.request.key !== requests[0]!.request.key)) {
    rows = (await Promise.all(requests.map(({ conversationId, request }) => one(conversationId, request)))).flat();
  } else {
    const ids = `{${requests
      .map((r) => r.conversationId)
      .filter(isUuid)
      .join(',')}}`;
    rows = await many(ids, requests[0]!.request);
  }
  const byConversation = new Map<string, R[]>();
  for (const row of rows) {
    const list = byConversation.get(row.conversationId);
    if (list) list.push(row);
    else byConversation.set(row.conversationId, [row]);
  }
  return requests.map(({ conversationId }) => byConversation.get(conversationId) ?? []);
}
