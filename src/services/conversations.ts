import { and, eq, getTableColumns, gt, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnIndex, columnsOf, HotQuery, indexReader } from '../db/rows.js';
import {
  contacts,
  conversations,
  messages,
  type ContactRow,
  type ConversationRow,
  type ConversationStatusValue,
  type MessageRow,
} from '../db/tables.js';
import { AppError } from '../errors.js';
import { decodeCursor, decodeCursorWithScope, encodeCursor, isUuid, type Keyset } from './cursors.js';
import type { ServiceDeps } from './deps.js';
import { recordConversationUpdated } from './webhooks/outbox.js';
import { pageLimit } from './pages.js';

export type ConversationFilter = {
  /** true: only conversations with unread inbound messages. */
  unread?: boolean | null;
  /** true: only conversations whose last message is inbound. */
  unresponded?: boolean | null;
  /** Contact first/last name (case-insensitive, partial) or phone digits in any format. */
  search?: string | null;
  /** true: archived conversations are included (hidden by default). */
  includeArchived?: boolean | null;
  /** true: only archived conversations; false: only the others (the default, unless includeArchived). */
  archived?: boolean | null;
  /** true: only starred conversations. */
  starred?: boolean | null;
  /** Only these statuses (absent or empty: every status). */
  status?: readonly ConversationStatusValue[] | null;
  /** Only conversations assigned to this user. */
  assignedTo?: string | null;
  /** true: only unassigned conversations. */
  unassigned?: boolean | null;
  /** true: only conversations assigned to the viewer (none for an integration token, which is no one). */
  mine?: boolean | null;
};

export type ConversationOrder = 'LAST_ACTIVITY' | 'WAITING_LONGEST';

/** A conversation with its contact and last message, read in the same statement. */
export type ConversationListItem = {
  conversation: ConversationRow;
  contact: ContactRow | null;
  lastMessage: MessageRow | null;
};

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/** How a filter is told apart when statements are cached: which conditions it has, not their values. */
type FilterShape = { term: string | undefined; digits: string; mine: 'no' | 'viewer' | 'nobody'; archived: 'hidden' | 'only' | 'any' };

function shapeOf(filter: ConversationFilter, viewerUserId: string | null): FilterShape {
  const term = filter.search?.trim() || undefined;
  const archived = filter.archived === true ? 'only' : filter.archived === false || !filter.includeArchived ? 'hidden' : 'any';
  return { term, digits: term?.replace(/\D/g, '') ?? '', mine: !filter.mine ? 'no' : viewerUserId ? 'viewer' : 'nobody', archived };
}

/**
 * The filter's conditions, with placeholders for its values (`organizationId`, `pattern`, `digits`,
 * `statuses`, `assignee`, `viewer`).
 */
function filterConditions(filter: ConversationFilter, shape: FilterShape): SQL[] {
  const conditions: SQL[] = [sql`${conversations.organizationId} = ${sql.placeholder('organizationId')}`];
  if (shape.archived !== 'any') conditions.push(eq(conversations.isArchived, shape.archived === 'only'));
  if (filter.unread) conditions.push(gt(conversations.unreadCount, 0));
  if (filter.unresponded) conditions.push(eq(conversations.lastDirection, 'incoming'));
  if (filter.starred) conditions.push(eq(conversations.isStarred, true));
  // A text[] literal parameter: one statement whatever the number of statuses.
  if (filter.status?.length) conditions.push(sql`${conversations.status} = any(${sql.placeholder('statuses')}::text[])`);
  if (filter.assignedTo) conditions.push(sql`${conversations.assigneeUserId} = ${sql.placeholder('assignee')}::uuid`);
  if (filter.unassigned) conditions.push(sql`${conversations.assigneeUserId} is null`);
  if (shape.mine === 'viewer') conditions.push(sql`${conversations.assigneeUserId} = ${sql.placeholder('viewer')}::uuid`);
  if (shape.mine === 'nobody') conditions.push(sql`false`);
  if (shape.term) {
    const pattern = sql.placeholder('pattern');
    const matches: SQL[] = [
      sql`${contacts.firstName} ilike ${pattern}`,
      sql`${contacts.lastName} ilike ${pattern}`,
      sql`(${contacts.firstName} || ' ' || ${contacts.lastName}) ilike ${pattern}`,
    ];
    if (shape.digits.length > 0) matches.push(sql`${conversations.phoneNumber} like ${sql.placeholder('digits')}`);
    conditions.push(or(...matches)!);
  }
  return conditions;
}

/** The values of filterConditions' placeholders. */
function filterValues(organizationId: string, filter: ConversationFilter, shape: FilterShape, viewerUserId: string | null) {
  return {
    organizationId,
    pattern: shape.term ? `%${escapeLike(shape.term)}%` : undefined,
    digits: `%${shape.digits}%`,
    statuses: filter.status?.length ? `{${filter.status.join(',')}}` : undefined,
    // Not a UUID: matches nothing (an id of no one), rather than failing the statement.
    assignee: filter.assignedTo ? (isUuid(filter.assignedTo) ? filter.assignedTo : NO_ONE) : undefined,
    viewer: shape.mine === 'viewer' ? viewerUserId : undefined,
  };
}

const NO_ONE = '00000000-0000-0000-0000-000000000000';

const filterKey = (filter: ConversationFilter, shape: FilterShape) =>
  [shape.archived === 'any', filter.unread, filter.unresponded, filter.starred, shape.term, shape.digits, filter.status?.length, filter.assignedTo, filter.unassigned]
    .map((value) => (value ? 1 : 0))
    .join('') + MINE_KEY[shape.mine] + (shape.archived === 'only' ? 'a' : '');

const MINE_KEY: Record<FilterShape['mine'], string> = { no: '', viewer: 'v', nobody: 'x' };

export function conversationCursor(organizationId: string, conversation: Pick<ConversationRow, 'lastMessageAt' | 'id'>) {
  return encodeCursor('conv', organizationId, { at: conversation.lastMessageAt, id: conversation.id });
}

/** The cursor of a conversation in WAITING_LONGEST order: in the waiting part, or in the rest after it. */
export function waitingCursor(organizationId: string, conversation: Pick<ConversationRow, 'waitingSince' | 'lastMessageAt' | 'id'>) {
  return conversation.waitingSince
    ? encodeCursor('convw', organizationId, { at: conversation.waitingSince, id: conversation.id })
    : encodeCursor('convr', organizationId, { at: conversation.lastMessageAt, id: conversation.id });
}

/** Where a WAITING_LONGEST page starts: at the top, after a waiting conversation, or after one of the rest. */
function waitingKey(organizationId: string, after: string): { part: 'waiting' | 'rest'; key: Keyset } {
  const kind = decodeCursorWithScope('convw', after, 'after', ['convr']);
  if (kind.scope !== organizationId) throw new AppError('INVALID_CURSOR', 'after is not a valid cursor for this list', { argument: 'after' });
  return { part: kind.kind === 'convw' ? 'waiting' : 'rest', key: kind.key };
}

const FROM_JOINED = sql`from ${conversations}
      left join ${contacts} on ${contacts.organizationId} = ${conversations.organizationId} and ${contacts.id} = ${conversations.contactId}
      left join ${messages} on ${messages.organizationId} = ${conversations.organizationId} and ${messages.id} = ${conversations.lastMessageId}`;

/**
 * Conversations of one organization with contact and last message joined in: one SQL statement whatever
 * the page size.
 * LAST_ACTIVITY (default): most recent activity first. WAITING_LONGEST: the conversations waiting for an
 * answer, longest wait first, then the others by last activity. `first` undefined means every match.
 */
export async function listConversations(
  db: DbOrTx,
  organizationId: string,
  options: {
    filter?: ConversationFilter | null;
    first?: number;
    after?: string | null;
    columns?: ListColumns;
    orderBy?: ConversationOrder | null;
    /** The user asking (for `mine`); null for an integration token. */
    viewerUserId?: string | null;
  },
): Promise<{ items: ConversationListItem[]; hasNextPage: boolean }> {
  const columns = options.columns ?? ALL_LIST_COLUMNS;
  const filter = options.filter ?? {};
  const viewerUserId = options.viewerUserId ?? null;
  const shape = shapeOf(filter, viewerUserId);
  if (options.orderBy === 'WAITING_LONGEST') return listByWaiting(db, organizationId, { ...options, columns, filter, viewerUserId, shape });
  const key = options.after ? decodeCursor('conv', organizationId, options.after, 'after') : null;
  // Built once per shape (which filters, a cursor, a limit), run as a prepared statement (src/db/rows.ts).
  const statementKey = `${filterKey(filter, shape)}:a${key ? 'c' : '-'}:${options.first ?? '*'}:${columns.key}`;
  let query = listStatements.get(statementKey);
  if (!query) {
    const conditions = filterConditions(filter, shape);
    // A row comparison bounds the index scan (see messages.ts).
    if (key) conditions.push(OLDER_ACTIVITY);
    query = new HotQuery(sql`select ${columns.list} ${FROM_JOINED}
      where ${and(...conditions)}
      order by ${conversations.lastMessageAt} desc, ${conversations.id} desc
      ${options.first === undefined ? sql`` : sql`limit ${pageLimit(options.first)}`}`); // the order of conversations_org_recent_idx
    if (listStatements.size < 1024) listStatements.set(statementKey, query);
  }
  // Read through the lean row path (src/db/rows.ts): this is the inbox, the most frequent read.
  const raw = await query.arrays(db, {
    ...filterValues(organizationId, filter, shape, viewerUserId),
    afterAt: key?.at.toISOString(),
    afterId: key?.id,
  });
  const rows = raw.map(columns.read);
  const hasNextPage = options.first !== undefined && rows.length > options.first;
  return { items: hasNextPage ? rows.slice(0, options.first) : rows, hasNextPage };
}

const OLDER_ACTIVITY = sql`(${conversations.lastMessageAt}, ${conversations.id}) < (${sql.placeholder('afterAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`;
const LONGER_WAIT = sql`(${conversations.waitingSince}, ${conversations.id}) > (${sql.placeholder('afterAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`;

/**
 * WAITING_LONGEST: two walks, each down its own index, in one statement. The waiting conversations first,
 * longest wait first (conversations_org_waiting_idx); then, only for what the page still lacks, the others
 * by last activity (conversations_org_recent_idx): its LIMIT is what the first walk left, and a LIMIT of 0
 * never runs its walk, so a page inside the waiting part costs what Q1's list does.
 */
async function listByWaiting(
  db: DbOrTx,
  organizationId: string,
  options: {
    filter: ConversationFilter;
    shape: FilterShape;
    viewerUserId: string | null;
    columns: ListColumns;
    first?: number;
    after?: string | null;
  },
): Promise<{ items: ConversationListItem[]; hasNextPage: boolean }> {
  const { filter, shape, columns } = options;
  const after = options.after ? waitingKey(organizationId, options.after) : null;
  const limited = options.first !== undefined;
  const statementKey = `${filterKey(filter, shape)}:w${after ? after.part[0] : '-'}:${options.first ?? '*'}:${columns.key}`;
  let query = listStatements.get(statementKey);
  if (!query) {
    const limit = limited ? pageLimit(options.first!) : sql``;
    const waitingConditions = [...filterConditions(filter, shape), sql`${conversations.waitingSince} is not null`];
    if (after?.part === 'waiting') waitingConditions.push(LONGER_WAIT);
    const restConditions = [...filterConditions(filter, shape), sql`${conversations.waitingSince} is null`];
    if (after?.part === 'rest') restConditions.push(OLDER_ACTIVITY);
    const rest = (rowLimit: SQL) => sql`select 1 as part, ${columns.list} ${FROM_JOINED}
      where ${and(...restConditions)}
      order by ${conversations.lastMessageAt} desc, ${conversations.id} desc ${rowLimit}`;
    query =
      after?.part === 'rest'
        ? new HotQuery(rest(limited ? sql`limit ${limit}` : sql``))
        : new HotQuery(sql`with waiting as (
            select 0 as part, ${columns.list} ${FROM_JOINED}
            where ${and(...waitingConditions)}
            order by ${conversations.waitingSince} asc, ${conversations.id} asc ${limited ? sql`limit ${limit}` : sql``}
          )
          select * from (
            select * from waiting
            union all
            (${rest(limited ? sql`limit greatest(${limit} - (select count(*) from waiting), 0)` : sql``)})
          ) page
          order by part,
            case when part = 0 then c_waiting_since end asc, case when part = 0 then c_id end asc,
            case when part = 1 then c_last_message_at end desc, case when part = 1 then c_id end desc`);
    if (listStatements.size < 1024) listStatements.set(statementKey, query);
  }
  const raw = await query.arrays(db, {
    ...filterValues(organizationId, filter, shape, options.viewerUserId),
    afterAt: after?.key.at.toISOString(),
    afterId: after?.key.id,
  });
  // Rows lead with their part.
  const rows = raw.map((row) => columns.read(row.slice(1)));
  const hasNextPage = limited && rows.length > options.first!;
  return { items: hasNextPage ? rows.slice(0, options.first) : rows, hasNextPage };
}

export type ConversationCounts = Record<
  'all' | 'open' | 'pending' | 'snoozed' | 'resolved' | 'unread' | 'unassigned' | 'mine' | 'waiting',
  number
>;

const countStatements = new Map<string, HotQuery>();

/** How many conversations match the filter, in all and in each state: one statement. */
export async function countConversations(
  db: DbOrTx,
  organizationId: string,
  options: { filter?: ConversationFilter | null; viewerUserId?: string | null },
): Promise<ConversationCounts> {
  const filter = options.filter ?? {};
  const viewerUserId = options.viewerUserId ?? null;
  const shape = shapeOf(filter, viewerUserId);
  const statementKey = filterKey(filter, shape);
  let query = countStatements.get(statementKey);
  if (!query) {
    const c = conversations;
    query = new HotQuery(sql`select count(*)::int,
        count(*) filter (where ${c.status} = 'open')::int,
        count(*) filter (where ${c.status} = 'pending')::int,
        count(*) filter (where ${c.status} = 'snoozed')::int,
        count(*) filter (where ${c.status} = 'resolved')::int,
        count(*) filter (where ${c.unreadCount} > 0)::int,
        count(*) filter (where ${c.assigneeUserId} is null)::int,
        count(*) filter (where ${c.assigneeUserId} = ${sql.placeholder('me')}::uuid)::int,
        count(*) filter (where ${c.waitingSince} is not null)::int
      from ${conversations}
      ${shape.term ? sql`left join ${contacts} on ${contacts.organizationId} = ${c.organizationId} and ${contacts.id} = ${c.contactId}` : sql``}
      where ${and(...filterConditions(filter, shape))}`);
    if (countStatements.size < 1024) countStatements.set(statementKey, query);
  }
  const [row] = await query.arrays(db, { ...filterValues(organizationId, filter, shape, viewerUserId), me: viewerUserId ?? NO_ONE });
  const [all, open, pending, snoozed, resolved, unread, unassigned, mine, waiting] = (row ?? []).map(Number) as number[];
  return { all: all!, open: open!, pending: pending!, snoozed: snoozed!, resolved: resolved!, unread: unread!, unassigned: unassigned!, mine: mine!, waiting: waiting! };
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
  conversation: ['id', 'lastMessageAt', 'waitingSince', 'contactId', 'lastMessageId'],
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
  // The change and its webhook event commit together.
  const row = await deps.db.transaction(async (tx) => {
    const [updated] = await tx
      .update(conversations)
      .set({ ...state, updatedAt: sql`now()` })
      .where(and(eq(conversations.organizationId, organizationId), eq(conversations.phoneNumber, phoneNumber)))
      .returning();
    if (updated) await recordConversationUpdated(tx, organizationId, updated.id);
    return updated;
  });
  if (!row) throw new AppError('CONVERSATION_NOT_FOUND', `No conversation with ${phoneNumber}.`);
  deps.events.publish('conversationUpdated', row.organizationId, { conversationId: row.id });
  return row;
}
