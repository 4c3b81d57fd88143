import { and, eq, getTableColumns, inArray, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnIndex, columnsOf, indexReader } from '../db/rows.js';
import { contacts, conversations, messages, organizations, type ConversationRow, type MessageRow } from '../db/tables.js';
import { badUserInput } from '../errors.js';
import { DEFAULT_PAGE_SIZE, pageLimit, pageSize, readPerConversation, statementCache } from './pages.js';
import { decodeCursor, decodeCursorWithScope, encodeCursor, isUuid, type Keyset } from './cursors.js';

/** Relay connection arguments as clients send them. */
export type PageArgs = {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
  /** Only the thread's history: no reply still scheduled or canceled (the REST route, whose statuses have no such word). */
  historyOnly?: boolean;
};

/**
 * The columns a page of messages reads: all of them, or the few a caller shows (a GraphQL selection, the
 * REST fields). A page of 50 messages carries 22 columns when all are read; decoding what nobody shows
 * was the largest single cost of a page. Rows read with fewer columns hold only those fields.
 */
export type MessageColumns = {
  key: string;
  keys: readonly string[];
  list: SQL;
  /** Reads a row of `list` (read as arrays), alone or after the conversation's columns. */
  read: (raw: unknown[]) => MessageRow;
  readAfterConversation: (raw: unknown[]) => MessageRow;
  /** Where `id` sits after the conversation's columns (null there: no message on that row). */
  idAfterConversation: number;
};

const ALL_MESSAGE_KEYS = Object.keys(getTableColumns(messages));
const CONVERSATION_COLUMN_COUNT = Object.keys(getTableColumns(conversations)).length;
/** Always read: pages group by conversation, cursors and the keyset walk use (createdAt, id). */
const KEYSET_KEYS = new Set(['id', 'conversationId', 'createdAt']);
const columnSets = new Map<string, MessageColumns>();

/** The column set holding these model fields (null: every column). */
export function messageColumns(fields: Iterable<string> | null): MessageColumns {
  const wanted = new Set(fields ?? ALL_MESSAGE_KEYS);
  const keys = ALL_MESSAGE_KEYS.filter((key) => wanted.has(key) || KEYSET_KEYS.has(key));
  const key = keys.length === ALL_MESSAGE_KEYS.length ? 'all' : keys.join(',');
  let set = columnSets.get(key);
  if (!set) {
    set = {
      key,
      keys,
      list: columnsOf(messages, 'messages', '', keys),
      read: indexReader(messages, keys),
      readAfterConversation: indexReader(messages, keys, CONVERSATION_COLUMN_COUNT),
      idAfterConversation: columnIndex(messages, 'id', keys, CONVERSATION_COLUMN_COUNT),
    };
    if (columnSets.size < 256) columnSets.set(key, set); // subsets of 22 columns: bounded by the selections clients send
  }
  return set;
}

export const ALL_MESSAGE_COLUMNS = messageColumns(null);

/**
 * A page request over one conversation's messages, ordered newest first. `older`: the newest `limit`
 * messages below `after` (first/after); `newer`: the oldest `limit` above `before` (last/before).
 */
export type MessagePageRequest = {
  walk: 'older' | 'newer';
  limit: number;
  olderThan: Keyset | null;
  newerThan: Keyset | null;
  columns: MessageColumns;
  historyOnly: boolean;
  /** Stable key for batching identical requests over many conversations. */
  key: string;
};

export type MessagePage = {
  messages: MessageRow[];
  hasNextPage: boolean;
  hasPreviousPage: boolean;
};

/** Validates connection arguments for one conversation; cursors issued for another conversation are refused. */
export function messagePageRequest(
  conversationId: string,
  args: PageArgs,
  columns: MessageColumns = ALL_MESSAGE_COLUMNS,
): MessagePageRequest {
  const first = pageSize(args.first, 'first');
  const last = pageSize(args.last, 'last');
  if (first !== null && last !== null) throw badUserInput('Pass either first or last, not both.');
  const olderThan = args.after ? decodeCursor('msg', conversationId, args.after, 'after') : null;
  const newerThan = args.before ? decodeCursor('msg', conversationId, args.before, 'before') : null;
  const walk = last !== null ? 'newer' : 'older';
  const limit = last ?? first ?? DEFAULT_PAGE_SIZE;
  const historyOnly = args.historyOnly === true;
  return {
    walk,
    limit,
    olderThan,
    newerThan,
    columns,
    historyOnly,
    key: `${walk}:${limit}:${args.after ?? ''}:${args.before ?? ''}:${columns.key}${historyOnly ? ':h' : ''}`,
  };
}

export function messageCursor(message: Pick<MessageRow, 'conversationId' | 'createdAt' | 'id'>): string {
  return encodeCursor('msg', message.conversationId, { at: message.createdAt, id: message.id });
}

// Row comparisons, not `a < x or (a = x and b < y)`: PostgreSQL uses a row comparison as an index
// bound, so a page 100,000 messages deep starts at its cursor instead of filtering its way there.
// (Raw SQL parameters get no column mapping: the time goes as ISO text.)
const olderThanKey = sql`(${messages.createdAt}, ${messages.id}) < (${sql.placeholder('olderAt')}::timestamptz, ${sql.placeholder('olderId')}::uuid)`;
const newerThanKey = sql`(${messages.createdAt}, ${messages.id}) > (${sql.placeholder('newerAt')}::timestamptz, ${sql.placeholder('newerId')}::uuid)`;
// Exactly the order of messages_org_conversation_recent_idx (created_at DESC, id DESC, NULLS FIRST as
// PostgreSQL's default), walked forward or backward; any other NULLS order would sort the whole thread.
const NEWEST_FIRST = [sql`${messages.createdAt} desc`, sql`${messages.id} desc`];
const OLDEST_FIRST = [sql`${messages.createdAt} asc`, sql`${messages.id} asc`];

// conversationWithMessagePage's conversation row, and the NULLs that stand for its columns on message rows.
const CONVERSATION_COLUMNS = sql.raw(
  Object.values(getTableColumns(conversations))
    .map((column) => `"conversations"."${column.name}" as "c_${column.name}"`)
    .join(', '),
);
const NO_CONVERSATION_COLUMNS = sql.raw(Array(CONVERSATION_COLUMN_COUNT).fill('null').join(', '));
const readConversation = indexReader(conversations);
const CONVERSATION_ID = columnIndex(conversations, 'id');

/** One page of a conversation's messages: a walk down (or up) the keyset index from the cursor. */
function pageQuery(organizationId: SQL, conversationId: SQL, request: MessagePageRequest): SQL {
  const conditions: SQL[] = [sql`${messages.organizationId} = ${organizationId}`, sql`${messages.conversationId} = ${conversationId}`];
  if (request.olderThan) conditions.push(olderThanKey);
  if (request.newerThan) conditions.push(newerThanKey);
  // A filter along the same index walk.
  if (request.historyOnly) conditions.push(sql`${messages.status} is distinct from 'scheduled' and ${messages.status} is distinct from 'canceled'`);
  const order = request.walk === 'older' ? NEWEST_FIRST : OLDEST_FIRST;
  return sql`select ${request.columns.list} from ${messages} where ${sql.join(conditions, sql` and `)}
    order by ${sql.join(order, sql`, `)} limit ${pageLimit(request.limit)}`;
}

/** The placeholder values of a page request (its LIMIT is in the statement: pages.ts pageLimit). */
const pageValues = (request: MessagePageRequest) => ({
  olderAt: request.olderThan?.at.toISOString(),
  olderId: request.olderThan?.id,
  newerAt: request.newerThan?.at.toISOString(),
  newerId: request.newerThan?.id,
});

/** Statements by shape (columns, walk, which cursors): built once, their values bound per request. */
const statement = statementCache();
const shapeOf = (request: MessagePageRequest) =>
  `${request.walk}:${request.limit}:${request.olderThan ? 1 : 0}${request.newerThan ? 1 : 0}:${request.columns.key}${request.historyOnly ? ':h' : ''}`;

/**
 * Pages of messages for many conversations in one statement (a LATERAL join walking the keyset index
 * once per conversation), so a page of conversations with their messages costs a fixed number of queries.
 * Cursors are decoded per conversation by the caller; here requests share walk and limit.
 */
export async function messagePages(
  db: DbOrTx,
  organizationId: string,
  requests: ReadonlyArray<{ conversationId: string; request: MessagePageRequest }>,
): Promise<MessagePage[]> {
  const found = await readPerConversation<MessageRow, MessagePageRequest>(
    requests,
    (conversationId, request) =>
      statement(`one:${shapeOf(request)}`, () =>
        pageQuery(sql`${sql.placeholder('organizationId')}`, sql`${sql.placeholder('conversationId')}::uuid`, request),
      )
        .arrays(db, { ...pageValues(request), organizationId, conversationId })
        .then((raw) => raw.map(request.columns.read)),
    (ids, request) =>
      statement(
        `many:${shapeOf(request)}`,
        () => sql`select page.* from unnest(${sql.placeholder('ids')}::uuid[]) as c(id)
          cross join lateral (${pageQuery(sql`${sql.placeholder('organizationId')}`, sql`c.id`, request)}) page`,
      )
        .arrays(db, { ...pageValues(request), organizationId, ids })
        .then((raw) => raw.map(request.columns.read)),
  );
  return requests.map(({ request }, i) => toPage(found[i]!, request));
}

/** A page from the rows a request read (limit + 1 of them, in walking order). */
function toPage(found: MessageRow[], request: MessagePageRequest): MessagePage {
  const hasMore = found.length > request.limit;
  const page = hasMore ? found.slice(0, request.limit) : found;
  // Keep the order ascending/descending as walked, then present newest first.
  const ordered = request.walk === 'older' ? page : page.reverse();
  // The side we came from has rows whenever a cursor was given: the cursor's own message at least.
  return request.walk === 'older'
    ? { messages: ordered, hasNextPage: hasMore, hasPreviousPage: request.olderThan !== null }
    : { messages: ordered, hasNextPage: request.newerThan !== null, hasPreviousPage: hasMore };
}

/** What conversationWithMessagePage read. */
export type ConversationWithPage = {
  /** null only with `withTimezone`, for a number without a conversation. */
  conversation: ConversationRow | null;
  request: MessagePageRequest | null;
  page: MessagePage | null;
  /** The organization's timezone, with `withTimezone`. */
  timezone: string | null;
};

/**
 * The conversation with this (normalized) phone number and one page of its messages, in ONE statement
 * (the page is a LATERAL join on the conversation row), for callers that know they will show messages:
 * `conversation(phoneNumber) { messages(...) }` and the REST messages route. A cursor names its
 * conversation, so it is decoded before the conversation is known; `page` is null when the cursor
 * belongs to another conversation or the arguments are invalid, and the caller's ordinary path then
 * reports the error exactly as it would have. `withTimezone` (REST) reads the organization's timezone in
 * the same statement, and answers even without a conversation; null then means no such organization.
 */
export async function conversationWithMessagePage(
  db: DbOrTx,
  organizationId: string,
  phoneNumber: string,
  args: PageArgs,
  columns: MessageColumns = ALL_MESSAGE_COLUMNS,
  options: { withTimezone?: boolean } = {},
): Promise<ConversationWithPage | null> {
  let scope: string | null = null;
  let request: MessagePageRequest | null = null;
  try {
    const scopes = [args.after, args.before].filter(Boolean).map((cursor) => decodeCursorWithScope('msg', cursor!).scope);
    scope = scopes[0] ?? null;
    if (scopes.some((other) => other !== scope)) throw new Error('cursors of two conversations');
    // The scope only checks cursors; any id does when there is none.
    request = messagePageRequest(scope ?? organizationId, args, columns);
  } catch {
    request = null;
  }
  const withTimezone = options.withTimezone === true;
  const shape = `conversation:${withTimezone ? 'tz:' : ''}${request ? shapeOf(request) : `none:${columns.key}`}`;
  const query = statement(shape, () => {
    // The conversation's row, then its page of messages, as one UNION ALL: the conversation's columns
    // come once instead of on each of 50 rows (each branch fills the other's columns with NULLs). The
    // reader tells the rows apart by which columns are set, not by position; the page keeps the order of
    // its index walk (one conversation row drives the LATERAL, and a plain Append emits its branches as
    // they come), so no outer sort is needed.
    const conversation = sql`${conversations.organizationId} = ${sql.placeholder('organizationId')} and ${conversations.phoneNumber} = ${sql.placeholder('phoneNumber')}`;
    const noMessageColumns = sql.raw(Array(columns.keys.length).fill('null').join(', '));
    const head = withTimezone
      ? sql`select ${CONVERSATION_COLUMNS}, ${noMessageColumns}, ${organizations.timezone}
        from ${organizations} left join ${conversations} on ${conversation}
        where ${organizations.id} = ${sql.placeholder('organizationId')}`
      : sql`select ${CONVERSATION_COLUMNS}, ${noMessageColumns} from ${conversations} where ${conversation}`;
    if (!request) return head;
    const page = pageQuery(sql`${conversations.organizationId}`, sql`${conversations.id}`, request);
    return sql`${head}
      union all
      select ${NO_CONVERSATION_COLUMNS}, page.*${withTimezone ? sql.raw(', null') : sql``}
      from ${conversations} cross join lateral (${page}) page
      where ${conversation}`;
  });
  const raw = await query.arrays(db, { ...(request ? pageValues(request) : {}), organizationId, phoneNumber });
  // The head row: the conversation's (and with `withTimezone` the organization's, conversation or not).
  const timezoneAt = CONVERSATION_COLUMN_COUNT + columns.keys.length;
  const head = raw.find((row) => row[CONVERSATION_ID] !== null || (withTimezone && row[timezoneAt] !== null));
  const timezone = withTimezone && head ? (head[timezoneAt] as string) : null;
  const first = head && head[CONVERSATION_ID] !== null ? head : undefined;
  if (!first) return withTimezone && timezone !== null ? { conversation: null, request: null, page: null, timezone } : null;
  const conversation = readConversation(first);
  if (!request || (scope !== null && scope !== conversation.id)) return { conversation, request: null, page: null, timezone };
  const found: MessageRow[] = [];
  for (const row of raw) if (row[columns.idAfterConversation] !== null) found.push(columns.readAfterConversation(row));
  // The request as the conversation's own resolver builds it (its loader key), now that the id is known.
  const own = messagePageRequest(conversation.id, args, columns);
  return { conversation, request: own, page: toPage(found, own), timezone };
}

export async function messagesByIds(db: DbOrTx, organizationId: string, ids: readonly string[]) {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select()
    .from(messages)
    .where(and(eq(messages.organizationId, organizationId), inArray(messages.id, valid)));
}

export type NewMessage = Omit<typeof messages.$inferInsert, 'organizationId' | 'conversationId' | 'id'> & {
  /** E.164 number of the contact (the conversation's key). */
  phoneNumber: string;
};

/**
 * Stores one message in the conversation with `phoneNumber` (created on first contact, linked to the
 * contact with that number) and moves the conversation forward: last message, time and direction when
 * newer, unread count +1 and unarchived for inbound. Run it inside the caller's transaction. Returns null
 * when the provider message id was already stored (webhook retries), changing nothing.
 */
export async function appendMessage(db: DbOrTx, organizationId: string, input: NewMessage) {
  const { phoneNumber, ...fields } = input;
  const createdAt = input.createdAt ?? new Date();
  // Upsert-with-update takes the conversation's row lock, so concurrent appends to one thread serialize.
  const [conversation] = await db
    .insert(conversations)
    .values({
      organizationId,
      phoneNumber,
      contactId: sql`(select ${contacts.id} from ${contacts} where ${contacts.organizationId} = ${organizationId} and ${contacts.phoneNumber} = ${phoneNumber})`,
      lastMessageAt: createdAt,
    })
    .onConflictDoUpdate({ target: [conversations.organizationId, conversations.phoneNumber], set: { updatedAt: sql`now()` } })
    .returning({ id: conversations.id });
  const [message] = await db
    .insert(messages)
    .values({ ...fields, organizationId, conversationId: conversation!.id, createdAt, updatedAt: createdAt })
    .onConflictDoNothing()
    .returning();
  if (!message) return null;
  const incoming = message.direction === 'incoming';
  // Raw SQL parameters get no column mapping: pass the time as ISO text (postgres.js rejects a Date here).
  const at = message.createdAt.toISOString();
  const isNewest = sql`(${conversations.lastMessageId} is null or (${conversations.lastMessageAt}, ${conversations.lastMessageId}) < (${at}::timestamptz, ${message.id}::uuid))`;
  const [updated] = await db
    .update(conversations)
    .set({
      lastMessageId: sql`case when ${isNewest} then ${message.id}::uuid else ${conversations.lastMessageId} end`,
      lastMessageBody: sql`case when ${isNewest} then ${message.body} else ${conversations.lastMessageBody} end`,
      lastDirection: sql`case when ${isNewest} then ${message.direction} else ${conversations.lastDirection} end`,
      lastMessageAt: sql`case when ${isNewest} then ${at}::timestamptz else ${conversations.lastMessageAt} end`,
      waitingSince: incoming
        ? sql`case when ${isNewest} then coalesce(${conversations.waitingSince}, ${at}::timestamptz) else ${conversations.waitingSince} end`
        : sql`case when ${isNewest} then null else ${conversations.waitingSince} end`,
      ...(incoming
        ? {
            unreadCount: sql`${conversations.unreadCount} + 1`,
            isArchived: false,
            // As an inbound batch does (services/inbound.ts): the contact writing again reopens the thread.
            status: sql`case when ${conversations.status} in ('resolved', 'snoozed') then 'open' else ${conversations.status} end`,
            snoozedUntil: sql`case when ${conversations.status} in ('resolved', 'snoozed') then null else ${conversations.snoozedUntil} end`,
            resolvedAt: sql`case when ${conversations.status} in ('resolved', 'snoozed') then null else ${conversations.resolvedAt} end`,
          }
        : {}),
      updatedAt: sql`now()`,
    })
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversation!.id)))
    .returning();
  return { message, conversation: updated! };
}
