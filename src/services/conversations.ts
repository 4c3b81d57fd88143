import { and, desc, eq, gt, ilike, inArray, like, lt, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
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
    conditions.push(
      or(
        lt(conversations.lastMessageAt, key.at),
        and(eq(conversations.lastMessageAt, key.at), lt(conversations.id, key.id)),
      )!,
    );
  }
  const query = db
    .select({ conversation: conversations, contact: contacts, lastMessage: messages })
    .from(conversations)
    .leftJoin(
      contacts,
      and(eq(contacts.organizationId, conversations.organizationId), eq(contacts.id, conversations.contactId)),
    )
    .leftJoin(
      messages,
      and(eq(messages.organizationId, conversations.organizationId), eq(messages.id, conversations.lastMessageId)),
    )
    .where(and(...conditions))
    .orderBy(desc(conversations.lastMessageAt), desc(conversations.id));
  const rows = options.first === undefined ? await query : await query.limit(options.first + 1);
  const hasNextPage = options.first !== undefined && rows.length > options.first;
  return { items: hasNextPage ? rows.slice(0, options.first) : rows, hasNextPage };
}

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
