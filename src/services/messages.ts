import { and, asc, desc, eq, getTableColumns, gt, inArray, lt, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { contacts, conversations, messages, type MessageRow } from '../db/tables.js';
import { badUserInput } from '../errors.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './conversations.js';
import { decodeCursor, encodeCursor, isUuid, type Keyset } from './cursors.js';

/** Relay connection arguments as clients send them. */
export type PageArgs = { first?: number | null; after?: string | null; last?: number | null; before?: string | null };

/**
 * A page request over one conversation's messages, ordered newest first. `older`: the newest `limit`
 * messages below `after` (first/after); `newer`: the oldest `limit` above `before` (last/before).
 */
export type MessagePageRequest = {
  walk: 'older' | 'newer';
  limit: number;
  olderThan: Keyset | null;
  newerThan: Keyset | null;
  /** Stable key for batching identical requests over many conversations. */
  key: string;
};

export type MessagePage = {
  messages: MessageRow[];
  hasNextPage: boolean;
  hasPreviousPage: boolean;
};

function pageSize(value: number | null | undefined, name: string): number | null {
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

/** Validates connection arguments for one conversation; cursors issued for another conversation are refused. */
export function messagePageRequest(conversationId: string, args: PageArgs): MessagePageRequest {
  const first = pageSize(args.first, 'first');
  const last = pageSize(args.last, 'last');
  if (first !== null && last !== null) throw badUserInput('Pass either first or last, not both.');
  const olderThan = args.after ? decodeCursor('msg', conversationId, args.after, 'after') : null;
  const newerThan = args.before ? decodeCursor('msg', conversationId, args.before, 'before') : null;
  const walk = last !== null ? 'newer' : 'older';
  const limit = last ?? first ?? DEFAULT_PAGE_SIZE;
  return { walk, limit, olderThan, newerThan, key: `${walk}:${limit}:${args.after ?? ''}:${args.before ?? ''}` };
}

export function messageCursor(message: Pick<MessageRow, 'conversationId' | 'createdAt' | 'id'>): string {
  return encodeCursor('msg', message.conversationId, { at: message.createdAt, id: message.id });
}

const olderThanKey = (key: Keyset): SQL =>
  or(lt(messages.createdAt, key.at), and(eq(messages.createdAt, key.at), lt(messages.id, key.id)))!;
const newerThanKey = (key: Keyset): SQL =>
  or(gt(messages.createdAt, key.at), and(eq(messages.createdAt, key.at), gt(messages.id, key.id)))!;

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
  if (requests.length === 0) return [];
  const { walk, limit } = requests[0]!.request;
  const pageOf = (conversationId: SQL | string, request: MessagePageRequest) => {
    const conditions: SQL[] = [eq(messages.organizationId, organizationId), eq(messages.conversationId, conversationId as string)];
    if (request.olderThan) conditions.push(olderThanKey(request.olderThan));
    if (request.newerThan) conditions.push(newerThanKey(request.newerThan));
    const order = walk === 'older' ? [desc(messages.createdAt), desc(messages.id)] : [asc(messages.createdAt), asc(messages.id)];
    return db
      .select()
      .from(messages)
      .where(and(...conditions))
      .orderBy(...order)
      .limit(limit + 1);
  };

  let rows: MessageRow[];
  const cursorsDiffer = requests.some((r) => r.request.key !== requests[0]!.request.key);
  if (requests.length === 1 || cursorsDiffer) {
    // Single conversation (the common case) or per-conversation cursors: plain indexed reads.
    rows = (await Promise.all(requests.map((r) => pageOf(r.conversationId, r.request)))).flat();
  } else {
    const ids = requests.map((r) => r.conversationId).filter(isUuid);
    const page = pageOf(sql`c.id`, requests[0]!.request).as('page');
    const columns = getTableColumns(messages);
    const selection = Object.fromEntries(Object.keys(columns).map((name) => [name, page[name as keyof typeof columns]]));
    rows = (await db
      .select(selection)
      .from(sql`unnest(array[${sql.join(ids.map((id) => sql`${id}::uuid`), sql`, `)}]) as c(id)`)
      .crossJoinLateral(page)) as unknown as MessageRow[];
  }

  const byConversation = new Map<string, MessageRow[]>();
  for (const row of rows) {
    const list = byConversation.get(row.conversationId);
    if (list) list.push(row);
    else byConversation.set(row.conversationId, [row]);
  }
  return requests.map(({ conversationId, request }) => {
    const found = byConversation.get(conversationId) ?? [];
    const hasMore = found.length > request.limit;
    const page = hasMore ? found.slice(0, request.limit) : found;
    // Keep the order ascending/descending as walked, then present newest first.
    const ordered = request.walk === 'older' ? page : page.reverse();
    // The side we came from has rows whenever a cursor was given: the cursor's own message at least.
    return request.walk === 'older'
      ? { messages: ordered, hasNextPage: hasMore, hasPreviousPage: request.olderThan !== null }
      : { messages: ordered, hasNextPage: request.newerThan !== null, hasPreviousPage: hasMore };
  });
}

export async function messagesByIds(db: DbOrTx, organizationId: string, ids: readonly string[]) {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return db.select().from(messages).where(and(eq(messages.organizationId, organizationId), inArray(messages.id, valid)));
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
      ...(incoming ? { unreadCount: sql`${conversations.unreadCount} + 1`, isArchived: false } : {}),
      updatedAt: sql`now()`,
    })
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversation!.id)))
    .returning();
  return { message, conversation: updated! };
}
