import { and, eq, gt, ilike, inArray, like, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnsOf, rawRows, rowReader } from '../db/rows.js';
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

function filterConditions(organizationId: string, filter: ConversationFilter): SQL[] {
  const conditions: SQL[] = [eq(conversations.organizationId, organizationId)];
  if (!filter.includeArchived) conditions.push(eq(conversations.isArchived, false));
  if (filter.unread) conditions.push(gt(conversations.unreadCount, 0));
  if (filter.unresponded) conditions.push(eq(conversations.lastDirection, 'incoming'));
  if (filter.starred) conditions.push(eq(conversations.isStarred, true));
  const term = filter.search?.trim();
  if (term) {
    const pattern = `%${escapeLike(term)}%`;
    const matches: SQL[] = [
      ilike(contacts.firstName, pattern),
      ilike(contacts.lastName, pattern),
      ilike(sql`${contacts.firstName} || ' ' || ${contacts.lastName}`, pattern),
    ];
    const digits = term.replace(/\D/g, '');
    if (digits.length > 0) matches.push(like(conversations.phoneNumber, `%${digits}%`));
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
  const conditions = filterConditions(organizationId, options.filter ?? {});
  if (options.after) {
    const key = decodeCursor('conv', organizationId, options.after, 'after');
    // A row comparison bounds the index scan (see messages.ts).
    conditions.push(sql`(${conversations.lastMessageAt}, ${conversations.id}) < (${key.at.toISOString()}::timestamptz, ${key.id}::uuid)`);
  }
  // Read through the lean row path (src/db/rows.ts): this is the inbox, the most frequent read.
  const raw = await rawRows(
    db,
    sql`select ${LIST_COLUMNS}
      from ${conversations}
      left join ${contacts} on ${contacts.organizationId} = ${conversations.organizationId} and ${contacts.id} = ${conversations.contactId}
      left join ${messages} on ${messages.organizationId} = ${conversations.organizationId} and ${messages.id} = ${conversations.lastMessageId}
      where ${and(...conditions)}
      order by ${conversations.lastMessageAt} desc, ${conversations.id} desc
      ${options.first === undefined ? sql`` : sql`limit ${options.first + 1}`}`, // the order of conversations_org_recent_idx
  );
  const rows = raw.map((row) => ({
    conversation: readConversation(row),
    contact: row.ct_id === null ? null : readContact(row),
    lastMessage: row.m_id === null ? null : readMessage(row),
  }));
  const hasNextPage = options.first !== undefined && rows.length > options.first;
  return { items: hasNextPage ? rows.slice(0, options.first) : rows, hasNextPage };
}

const LIST_COLUMNS = sql.join([columnsOf(conversations, 'conversations', 'c_'), columnsOf(contacts, 'contacts', 'ct_'), columnsOf(messages, 'messages', 'm_')], sql`, `);
const readConversation = rowReader(conversations, 'c_');
const readContact = rowReader(contacts, 'ct_');
const readMessage = rowReader(messages, 'm_');

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
