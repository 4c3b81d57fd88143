import { and, eq, getTableColumns, gt, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnIndex, columnsOf, HotQuery, indexReader } from '../db/rows.js';
import { contacts, conversations, messages, type ContactRow, type ConversationRow, type MessageRow } from '../db/tables.js';
import { AppError } from '../errors.js';
import { decodeCursor, encodeCursor, isUuid } from './cursors.js';
import type { ServiceDeps } from './deps.js';

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
  options: { filter?: ConversationFilter | null; first?: number; after?: string | null; columns?: ListColumns },
): Promise<{ items: ConversationListItem[]; hasNextPage: boolean }> {
  const columns = options.columns ?? ALL_LIST_COLUMNS;
  const filter = options.filter ?? {};
  const term = filter.search?.trim() || undefined;
  const digits = term?.replace(/\D/g, '') ?? '';
  const key = options.after ? decodeCursor('conv', organizationId, options.after, 'after') : null;
  // Built once per shape (which filters, a cursor, a limit), run as a prepared statement (src/db/rows.ts).
  const shape = [filter.includeArchived, filter.unread, filter.unresponded, filter.starred, term, digits, key, options.first !== undefined]
    .map((value) => (value ? 1 : 0))
    .join('');
  let query = listStatements.get(`${shape}:${columns.key}`);
  if (!query) {
    const conditions = filterConditions(filter, term, digits);
    // A row comparison bounds the index scan (see messages.ts).
    if (key) {
      conditions.push(
        sql`(${conversations.lastMessageAt}, ${conversations.id}) < (${sql.placeholder('afterAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`,
      );
    }
    query = new HotQuery(sql`select ${columns.list}
      from ${conversations}
      left join ${contacts} on ${contacts.organizationId} = ${conversations.organizationId} and ${contacts.id} = ${conversations.contactId}
      left join ${messages} on ${messages.organizationId} = ${conversations.organizationId} and ${messages.id} = ${conversations.lastMessageId}
      where ${and(...conditions)}
      order by ${conversations.lastMessageAt} desc, ${conversations.id} desc
      ${options.first === undefined ? sql`` : sql`limit ${sql.placeholder('limit')}`}`); // the order of conversations_org_recent_idx
    if (listStatements.size < 1024) listStatements.set(`${shape}:${columns.key}`, query);
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
  const rows = raw.map(columns.read);
  const hasNextPage = options.first !== undefined && rows.length > options.first;
  return { items: hasNextPage ? rows.slice(0, options.first) : rows, hasNextPage };
}

const listStatements = new Map<string, HotQuery>();

/**
 * The columns an inbox page reads of the conversation, its contact and its last message: all of them, or
 * the model fields a caller shows (its GraphQL selection). Rows read with fewer columns hold only those
 * fields (`partial`): they must not be cached where other fields could read them (the row loaders).
 */
export type ListColumns = {
  key: string;
  partial: boolean;
  list: SQL;
  read: (raw: unknown[]) => ConversationListItem;
};

/** Always read: the cursor's (lastMessageAt, id), the ids the contact and last message hang on. */
const ALWAYS = {
  conversation: ['id', 'lastMessageAt', 'contactId', 'lastMessageId'],
  contact: ['id'],
  message: ['id'],
};
const listColumnSets = new Map<string, ListColumns>();

/** The column set holding these model fields of each table (null: every column of that table). */
export function listColumns(fields: {
  conversation: Iterable<string> | null;
  contact: Iterable<string> | null;
  message: Iterable<string> | null;
}): ListColumns {
  const keysOf = (table: typeof conversations | typeof contacts | typeof messages, wanted: Iterable<string> | null, always: string[]) => {
    const all = Object.keys(getTableColumns(table));
    if (wanted === null) return { keys: all, partial: false };
    const set = new Set([...wanted, ...always]);
    const keys = all.filter((key) => set.has(key));
    return { keys, partial: keys.length < all.length };
  };
  const conversation = keysOf(conversations, fields.conversation, ALWAYS.conversation);
  const contact = keysOf(contacts, fields.contact, ALWAYS.contact);
  const message = keysOf(messages, fields.message, ALWAYS.message);
  const key = [conversation, contact, message].map((set) => (set.partial ? set.keys.join(',') : '*')).join('|');
  let columns = listColumnSets.get(key);
  if (!columns) {
    const contactAt = conversation.keys.length;
    const messageAt = contactAt + contact.keys.length;
    const readConversation = indexReader(conversations, conversation.keys);
    const readContact = indexReader(contacts, contact.keys, contactAt);
    const readMessage = indexReader(messages, message.keys, messageAt);
    const contactId = columnIndex(contacts, 'id', contact.keys, contactAt);
    const messageId = columnIndex(messages, 'id', message.keys, messageAt);
    columns = {
      key,
      partial: conversation.partial || contact.partial || message.partial,
      list: sql.join(
        [
          columnsOf(conversations, 'conversations', 'c_', conversation.keys),
          columnsOf(contacts, 'contacts', 'ct_', contact.keys),
          columnsOf(messages, 'messages', 'm_', message.keys),
        ],
        sql`, `,
      ),
      read: (row) => ({
        conversation: readConversation(row),
        contact: row[contactId] === null ? null : readContact(row),
        lastMessage: row[messageId] === null ? null : readMessage(row),
      }),
    };
    if (listColumnSets.size < 256) listColumnSets.set(key, columns); // bounded by the selections clients send
  }
  return columns;
}

const ALL_LIST_COLUMNS = listColumns({ conversation: null, contact: null, message: null });

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

/**
 * Changes read/archived/starred state of the conversation with this (normalized) phone number, and tells
 * conversationUpdated's subscribers once it is stored, whichever surface asked.
 */
export async function updateConversationState(
  deps: Pick<ServiceDeps, 'db' | 'events'>,
  organizationId: string,
  phoneNumber: string,
  state: ConversationState,
): Promise<ConversationRow> {
  const [row] = await deps.db
    .update(conversations)
    .set({ ...state, updatedAt: sql`now()` })
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.phoneNumber, phoneNumber)))
    .returning();
  if (!row) throw new AppError('CONVERSATION_NOT_FOUND', `No conversation with ${phoneNumber}.`);
  deps.events.publish('conversationUpdated', row.organizationId, { conversationId: row.id });
  return row;
}
