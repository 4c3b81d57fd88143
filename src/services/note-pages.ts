import { getTableColumns, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnsOf, indexReader } from '../db/rows.js';
import { messages, type MessageRow } from '../db/tables.js';
import { noteMentions, notes, type NoteRow } from '../db/teamwork-tables.js';
import { badUserInput } from '../errors.js';
import { decodeCursor, encodeCursor, isUuid, type CursorKind, type Keyset } from './cursors.js';
import { ALL_MESSAGE_COLUMNS, type MessageColumns, type PageArgs } from './messages.js';
import { DEFAULT_PAGE_SIZE, pageLimit, pageSize, readPerConversation, statementCache } from './pages.js';

// Keyset pages of notes: a thread's notes, its timeline (messages and notes in one order) and the notes
// that mention a member. All newest first over (created_at, id); `first`/`after` walk to older rows,
// `last`/`before` to newer ones, as Conversation.messages does. Each page is one statement: the timeline
// is a UNION ALL of two index walks (messages_org_conversation_recent_idx, notes_org_conversation_recent_idx),
// each limited to the page, merged and cut to the page again.

export type KeysetRequest = {
  kind: CursorKind;
  walk: 'older' | 'newer';
  limit: number;
  olderThan: Keyset | null;
  newerThan: Keyset | null;
  /** The message columns a timeline reads (the Message fields the client selects). */
  columns: MessageColumns;
  /** Stable key for batching identical requests over many conversations. */
  key: string;
};

export type Page<T> = { items: T[]; hasNextPage: boolean; hasPreviousPage: boolean };

/** An item of a timeline: a message (read with the request's columns) or a note. */
export type TimelineRow = MessageRow | NoteRow;

/** Notes carry an author column, messages never do (however few of their columns were read). */
export const isNoteRow = (row: TimelineRow): row is NoteRow => 'authorUserId' in row;

/** Validates connection arguments; a cursor of another kind or scope (conversation, member) is INVALID_CURSOR. */
export function keysetRequest(
  kind: CursorKind,
  scope: string,
  args: PageArgs,
  columns: MessageColumns = ALL_MESSAGE_COLUMNS,
): KeysetRequest {
  const first = pageSize(args.first, 'first');
  const last = pageSize(args.last, 'last');
  if (first !== null && last !== null) throw badUserInput('Pass either first or last, not both.');
  const olderThan = args.after ? decodeCursor(kind, scope, args.after, 'after') : null;
  const newerThan = args.before ? decodeCursor(kind, scope, args.before, 'before') : null;
  const walk = last !== null ? 'newer' : 'older';
  const limit = last ?? first ?? DEFAULT_PAGE_SIZE;
  const columnsKey = kind === 'timeline' ? columns.key : '';
  return {
    kind,
    walk,
    limit,
    olderThan,
    newerThan,
    columns,
    key: `${kind}:${walk}:${limit}:${args.after ?? ''}:${args.before ?? ''}:${columnsKey}`,
  };
}

/** A row's cursor in a list of `kind` scoped to `scope` (its conversation, or the mentioned member). */
export const keysetCursor = (kind: CursorKind, scope: string, row: { createdAt: Date; id: string }): string =>
  encodeCursor(kind, scope, { at: row.createdAt, id: row.id });

/** A page from the rows a request read (limit + 1 of them, in walking order), presented newest first. */
function toPage<T>(found: T[], request: KeysetRequest): Page<T> {
  const hasMore = found.length > request.limit;
  const page = hasMore ? found.slice(0, request.limit) : found;
  const items = request.walk === 'older' ? page : page.reverse();
  // The side we came from has rows whenever a cursor was given: the cursor's own row at least.
  return request.walk === 'older'
    ? { items, hasNextPage: hasMore, hasPreviousPage: request.olderThan !== null }
    : { items, hasNextPage: request.newerThan !== null, hasPreviousPage: hasMore };
}

/** The keyset bounds and order of one index walk over (at, id). Row comparisons: PostgreSQL starts the index scan at the cursor. */
function walk(at: SQL, id: SQL, request: KeysetRequest): { where: SQL[]; order: SQL } {
  const where: SQL[] = [];
  if (request.olderThan)
    where.push(sql`(${at}, ${id}) < (${sql.placeholder('olderAt')}::timestamptz, ${sql.placeholder('olderId')}::uuid)`);
  if (request.newerThan)
    where.push(sql`(${at}, ${id}) > (${sql.placeholder('newerAt')}::timestamptz, ${sql.placeholder('newerId')}::uuid)`);
  // Exactly the indexes' order (DESC, NULLS FIRST as PostgreSQL's default), walked forward or backward.
  const order = request.walk === 'older' ? sql`${at} desc, ${id} desc` : sql`${at} asc, ${id} asc`;
  return { where, order };
}

const pageValues = (request: KeysetRequest) => ({
  olderAt: request.olderThan?.at.toISOString(),
  olderId: request.olderThan?.id,
  newerAt: request.newerThan?.at.toISOString(),
  newerId: request.newerThan?.id,
});

const shapeOf = (request: KeysetRequest) =>
  `${request.kind}:${request.walk}:${request.limit}:${request.olderThan ? 1 : 0}${request.newerThan ? 1 : 0}:${request.kind === 'timeline' ? request.columns.key : ''}`;

/** Statements by shape, built once, their values bound per request (as messages.ts does). */
const statement = statementCache();

const NOTE_COLUMNS = columnsOf(notes, 'notes');
const NOTE_COLUMN_COUNT = Object.keys(getTableColumns(notes)).length;
const readNote = indexReader(notes);
const organization = sql`${sql.placeholder('organizationId')}`;

/** One conversation's notes. */
function notesQuery(conversation: SQL, request: KeysetRequest): SQL {
  const { where, order } = walk(sql`${notes.createdAt}`, sql`${notes.id}`, request);
  const conditions = [sql`${notes.organizationId} = ${organization}`, sql`${notes.conversationId} = ${conversation}`, ...where];
  return sql`select ${NOTE_COLUMNS} from ${notes} where ${sql.join(conditions, sql` and `)} order by ${order} limit ${pageLimit(request.limit)}`;
}

/**
 * One conversation's timeline: each row is (kind, time, id, the message's columns, the note's columns),
 * the other kind's columns NULL. Each branch walks its index for a page, the merge keeps a page.
 */
function timelineQuery(conversation: SQL, request: KeysetRequest): SQL {
  const message = walk(sql`${messages.createdAt}`, sql`${messages.id}`, request);
  const note = walk(sql`${notes.createdAt}`, sql`${notes.id}`, request);
  const limit = pageLimit(request.limit);
  const noNote = sql.raw(Array(NOTE_COLUMN_COUNT).fill('null').join(', '));
  const noMessage = sql.raw(Array(request.columns.keys.length).fill('null').join(', '));
  const messageWhere = [
    sql`${messages.organizationId} = ${organization}`,
    sql`${messages.conversationId} = ${conversation}`,
    ...message.where,
  ];
  const noteWhere = [sql`${notes.organizationId} = ${organization}`, sql`${notes.conversationId} = ${conversation}`, ...note.where];
  const merged = request.walk === 'older' ? sql`t_at desc, t_id desc` : sql`t_at asc, t_id asc`;
  return sql`(select 'm' as t_kind, ${messages.createdAt} as t_at, ${messages.id} as t_id, ${request.columns.list}, ${noNote}
      from ${messages} where ${sql.join(messageWhere, sql` and `)} order by ${message.order} limit ${limit})
    union all
    (select 'n', ${notes.createdAt}, ${notes.id}, ${noMessage}, ${NOTE_COLUMNS}
      from ${notes} where ${sql.join(noteWhere, sql` and `)} order by ${note.order} limit ${limit})
    order by ${merged} limit ${limit}`;
}

/** Readers of a timeline row, per message column set. */
const timelineReaders = new Map<string, (raw: unknown[]) => TimelineRow>();
function timelineReader(columns: MessageColumns): (raw: unknown[]) => TimelineRow {
  let read = timelineReaders.get(columns.key);
  if (!read) {
    const message = indexReader(messages, columns.keys, 3);
    const note = indexReader(notes, undefined, 3 + columns.keys.length);
    read = (raw) => (raw[0] === 'n' ? note(raw) : message(raw));
    if (timelineReaders.size < 256) timelineReaders.set(columns.key, read);
  }
  return read;
}

/**
 * Pages of notes or timelines (`request.kind` 'note' or 'timeline') for many conversations in one
 * statement (a LATERAL join per conversation) when they share a request, as messagePages does.
 */
export async function conversationPages<T extends TimelineRow>(
  db: DbOrTx,
  organizationId: string,
  requests: ReadonlyArray<{ conversationId: string; request: KeysetRequest }>,
): Promise<Page<T>[]> {
  const read = (request: KeysetRequest) => (request.kind === 'timeline' ? timelineReader(request.columns) : readNote);
  const query = (conversation: SQL, request: KeysetRequest) =>
    request.kind === 'timeline' ? timelineQuery(conversation, request) : notesQuery(conversation, request);
  const found = await readPerConversation<TimelineRow, KeysetRequest>(
    requests,
    (conversationId, request) =>
      statement(`one:${shapeOf(request)}`, () => query(sql`${sql.placeholder('conversationId')}::uuid`, request))
        .arrays(db, { ...pageValues(request), organizationId, conversationId: isUuid(conversationId) ? conversationId : null })
        .then((raw) => raw.map(read(request))),
    (ids, request) =>
      statement(
        `many:${shapeOf(request)}`,
        () => sql`select page.* from unnest(${sql.placeholder('ids')}::uuid[]) as c(id) cross join lateral (${query(sql`c.id`, request)}) page`,
      )
        .arrays(db, { ...pageValues(request), organizationId, ids })
        .then((raw) => raw.map(read(request))),
  );
  return requests.map(({ request }, i) => toPage(found[i]!, request) as Page<T>);
}

/** The notes that mention this member, newest first: one walk of note_mentions_user_recent_idx, each note by its key. */
export async function mentionsPage(db: DbOrTx, organizationId: string, userId: string, request: KeysetRequest): Promise<Page<NoteRow>> {
  const query = statement(`mentions:${shapeOf(request)}`, () => {
    const { where, order } = walk(sql`${noteMentions.createdAt}`, sql`${noteMentions.noteId}`, request);
    const conditions = [
      sql`${noteMentions.organizationId} = ${organization}`,
      sql`${noteMentions.userId} = ${sql.placeholder('userId')}::uuid`,
      ...where,
    ];
    return sql`select ${NOTE_COLUMNS} from ${noteMentions}
      join ${notes} on ${notes.organizationId} = ${noteMentions.organizationId} and ${notes.id} = ${noteMentions.noteId}
      where ${sql.join(conditions, sql` and `)} order by ${order} limit ${pageLimit(request.limit)}`;
  });
  const raw = await query.arrays(db, { ...pageValues(request), organizationId, userId });
  return toPage(raw.map(readNote), request);
}
