import { and, eq, getTableColumns, gt, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnIndex, columnsOf, HotQuery, indexReader } from '../db/rows.js';
import { contacts, conversations, messages, type ContactRow, type ConversationRow, type MessageRow } from '../db/tables.js';
import { AppError } from '../errors.js';
import { decodeCursor, encodeCursor, isUuid } from './cursors.js';

export type ConversationFilter = {
  /** true: only conversations with unread inbound messages. */
  unread?: boolean | null;
  /** true: only conversations whose last message is inbound. */
  unresponded?: boolean | null;
  /** Contact first/last name (case-insensitive, partial) or phone digits in any format. */
  search?: string | null;
  /** true: archived conversations are included (hidden by default). */
  includeArchived?: boolean | null;
  /** true: only starred conversations. */
  starred?: boolean | null;
};

/** A conversation with its contact and last message, read in the same statement. */
export type ConversationListItem = {
  conversation: ConversationRow;
  contact: ContactRow | null;
  lastMessage: MessageRow | null;
};

export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/** The filter's conditions, with placeholders for its values (`organizationId`, `pattern`, `digits`). */
function filterConditions(filter: ConversationFilter, term: string | undefined, digits: string): SQL[] {
  const conditions: SQL[] = [sql`${conversations.organizationId} = ${sql.placeholder('organizationId')}`];
  if (!filter.includeArchived) conditions.push(eq(conversations.isArchived, false));
  if (filter.unread) conditions.push(gt(conversations.unreadCount, 0));
  if (filter.unresponded) conditions.push(eq(conversations.lastDirection, 'incoming'));
  if (filter.starred) conditions.push(eq(conversations.isStarred, true));
  if (term) {
    const pattern = sql.placeholder('pattern');
    const matches: SQL[] = [
      sql`${contacts.firstName} ilike ${pattern}`,
      sql`${contacts.lastName} ilike ${pattern}`,
      sql`(${contacts.firstName} || ' ' || ${contacts.lastName}) ilike ${pattern}`,
    ];
    if (digits.length > 0) matches.push(sql`${conversations.phoneNumber} like ${sql.placeholder('digits')}`);
    conditions.push(or(...matches)!);
  }
  return conditions;
}

export function conversationCursor(organizationId: string, conversation: Pick<ConversationRow, 'lastMessageAt' | 'id'>) {
  return encodeCursor('conv', organizationId, { at: conversation.lastMessageAt, id: conversation.id });
}

/**
 * Conversations of one organization, most recent activity first, with contact and last message
 * joined in: one SQL statement whatever the page size. `first` undefined means every match.
 */
export async function listConversations(
  db: DbOrTx,
  organizationId: string,
  options: { filter?: ConversationFilter | null; first?: number; after?: string | null },
): Promise<{ items: ConversationListItem[]; hasNextPage: boolean }> {
  const filter = options.filter ?? {};
  const term = filter.search?.trim() || undefined;
  const digits = term?.replace(/\D/g, '') ?? '';
  const key = options.after ? decodeCursor('conv', organizationId, options.after, 'after') : null;
  // Built once per shape (which filters, a cursor, a limit), run as a prepared statement (src/db/rows.ts).
  const shape = [filter.includeArchived, filter.unread, filter.unresponded, filter.starred, term, digits, key, options.first !== undefined]
    .map((value) => (value ? 1 : 0))
    .join('');
  let query = listStatements.get(shape);
  if (!query) {
    const conditions = filterConditions(filter, term, digits);
    // A row comparison bounds the index scan (see messages.ts).
    if (key) {
      conditions.push(
        sql`(${conversations.lastMessageAt}, ${conversations.id}) < (${sql.placeholder('afterAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`,
      );
    }
    query = new HotQuery(sql`select ${LIST_COLUMNS}
      from ${conversations}
      left join ${contacts} on ${contacts.organizationId} = ${conversations.organizationId} and ${contacts.id} = ${conversations.contactId}
      left join ${messages} on ${messages.organizationId} = ${conversations.organizationId} and ${messages.id} = ${conversations.lastMessageId}
      where ${and(...conditions)}
      order by ${conversations.lastMessageAt} desc, ${conversations.id} desc
      ${options.first === undefined ? sql`` : sql`limit ${sql.placeholder('limit')}`}`); // the order of conversations_org_recent_idx
    listStatements.set(shape, query);
  }
  // Read through the lean row path (src/db/rows.ts): this is the inbox, the most frequent read.
  const raw = await query.arrays(db, {
    organizationId,
    pattern: term ? `%${escapeLike(term)}%` : undefined,
    digits: `%${digits}%`,
    afterAt: key?.at.toISOString(),
    afterId: key?.id,
    limit: options.first === undefined ? undefined : options.first + 1,
  });
  const rows = raw.map((row) => ({
    conversation: readConversation(row),
    contact: row[CONTACT_ID] === null ? null : readContact(row),
    lastMessage: row[MESSAGE_ID] === null ? null : readMessage(row),
  }));
  const hasNextPage = options.first !== undefined && rows.length > options.first;
  return { items: hasNextPage ? rows.slice(0, options.first) : rows, hasNextPage };
}

const listStatements = new Map<string, HotQuery>();
const LIST_COLUMNS = sql.join(
  [columnsOf(conversations, 'conversations', 'c_'), columnsOf(contacts, 'contacts', 'ct_'), columnsOf(messages, 'messages', 'm_')],
  sql`, `,
);
const CONVERSATION_COUNT = Object.keys(getTableColumns(conversations)).length;
const CONTACT_COUNT = Object.keys(getTableColumns(contacts)).length;
const readConversation = indexReader(conversations);
const readContact = indexReader(contacts, undefined, CONVERSATION_COUNT);
const readMessage = indexReader(messages, undefined, CONVERSATION_COUNT + CONTACT_COUNT);
const CONTACT_ID = columnIndex(contacts, 'id', undefined, CONVERSATION_COUNT);
const MESSAGE_ID = columnIndex(messages, 'id', undefined, CONVERSATION_COUNT + CONTACT_COUNT);

export async function conversationsByIds(db: DbOrTx, organizationId: string, ids: readonly string[]) {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select()
    .from(conversations)
    .where(and(eq(conversations.organizationId, organizationId), inArray(conversations.id, valid)));
}

export async function conversationsByPhones(db: DbOrTx, organizationId: string, phones: readonly string[]) {
  if (phones.length === 0) return [];
  return db
    .select()
    .from(conversations)
    .where(and(eq(conversations.organizationId, organizationId), inArray(conversations.phoneNumber, [...phones])));
}

type ConversationState = Partial<Pick<ConversationRow, 'unreadCount' | 'isArchived' | 'isStarred'>>;

/** Changes read/archived/starred state of the conversation with this (normalized) phone number. */
export async function updateConversationState(
  db: DbOrTx,
  organizationId: string,
  phoneNumber: string,
  state: ConversationState,
): Promise<ConversationRow> {
  const [row] = await db
    .update(conversations)
    .set({ ...state, updatedAt: sql`now()` })
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.phoneNumber, phoneNumber)))
    .returning();
  if (!row) throw new AppError('CONVERSATION_NOT_FOUND', `No conversation with ${phoneNumber}.`);
  return row;
}
