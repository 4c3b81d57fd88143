import { and, eq, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { columnsOf, HotQuery, indexReader } from '../db/rows.js';
import { conversations, messages, type ConversationRow, type MessageRow } from '../db/tables.js';
import type { NoteRow } from '../db/teamwork-tables.js';
import { AppError } from '../errors.js';
import { KeysetFeed, type FeedReader } from '../pubsub/keyset-feed.js';
import type { StreamHints } from '../pubsub/shared-execution.js';
import { wakeableStream } from '../pubsub/wakeable-stream.js';
import { conversationsByIds, conversationsByPhones } from './conversations.js';
import { decodeCursorWithScope, type Keyset } from './cursors.js';
import type { ServiceDeps } from './deps.js';
import { messagesByIds } from './messages.js';
import { notesByIds } from './notes.js';
import { shuttingDown, stateKey, type StatePart } from './state.js';

// The streams behind the GraphQL subscriptions. Events carry ids only; every row a subscriber receives
// is read here, scoped to the subscriber's organization, when it is delivered (so it is current).

type StreamDeps = Pick<ServiceDeps, 'db' | 'events' | 'state'>;

/** Rows read per statement by a feed, or by a subscriber replaying or catching up. */
const REPLAY_PAGE = 200;
/** A messageReceived stream re-reads at least this often, healing a notification lost between instances. */
const RESYNC_MS = 30_000;
/** Ids loaded per statement for conversationUpdated / messageStatusChanged. */
const LOAD_BATCH = 100;

/** The conversation a subscription is narrowed to by phone number; it may not exist yet. */
class ConversationScope {
  private id: string | null = null;
  constructor(
    private readonly db: DbOrTx,
    private readonly organizationId: string,
    readonly phoneNumber: string | null,
  ) {}

  static async open(db: DbOrTx, organizationId: string, phoneNumber: string | null) {
    const scope = new ConversationScope(db, organizationId, phoneNumber);
    await scope.resolve();
    return scope;
  }

  /** The conversation's id once it exists (ids never change, so it is remembered). */
  async resolve(): Promise<string | null> {
    if (this.phoneNumber && !this.id) {
      const [row] = await conversationsByPhones(this.db, this.organizationId, [this.phoneNumber]);
      this.id = row?.id ?? null;
    }
    return this.id;
  }

  /** Records the conversation once a row of it was seen. */
  remember(conversationId: string) {
    if (this.phoneNumber) this.id = conversationId;
  }

  /** Cheap pre-filter for events: false only when the event is certainly for another conversation. */
  mayMatch(conversationId: string): boolean {
    return !this.phoneNumber || !this.id || this.id === conversationId;
  }

  async matches(conversationId: string): Promise<boolean> {
    if (!this.phoneNumber) return true;
    return (await this.resolve()) === conversationId;
  }
}

/**
 * Written as a literal, not a bound parameter: the partial index messages_org_inbound_stream_idx can only
 * be used by a plan that knows the value, and prepared statements may switch to generic plans.
 */
export const isInbound = sql`${messages.direction} = 'incoming'`;

const INBOUND_COLUMNS = columnsOf(messages, 'messages');
const readInboundRow = indexReader(messages);

/**
 * The feeds' read in each shape (after a key or from the first; one conversation or all), built once and
 * run as a prepared statement (src/db/rows.ts): a feed reads on every event, and composing the select with
 * Drizzle, then a round trip to describe its parameters, took longer than the read itself.
 */
const inboundReads = new Map<string, HotQuery>();
function inboundRead(after: boolean, byPhone: boolean): HotQuery {
  const shape = `${after}:${byPhone}`;
  let query = inboundReads.get(shape);
  if (!query) {
    const conditions: SQL[] = [sql`${messages.organizationId} = ${sql.placeholder('organizationId')}`, isInbound];
    // A row comparison, so the index range starts right at the cursor (an OR of two conditions would be a
    // filter over every inbound message of the organization). The time goes as ISO text.
    if (after) {
      conditions.push(sql`(${messages.createdAt}, ${messages.id}) > (${sql.placeholder('afterAt')}::timestamptz, ${sql.placeholder('afterId')}::uuid)`);
    }
    if (byPhone) {
      conditions.push(
        sql`${messages.conversationId} = (select ${conversations.id} from ${conversations} where ${conversations.organizationId} = ${sql.placeholder('organizationId')} and ${conversations.phoneNumber} = ${sql.placeholder('phoneNumber')})`,
      );
    }
    query = new HotQuery(
      sql`select ${INBOUND_COLUMNS} from ${messages} where ${sql.join(conditions, sql` and `)}
        order by ${messages.createdAt}, ${messages.id} limit ${sql.placeholder('limit')}`,
    );
    inboundReads.set(shape, query);
  }
  return query;
}

/** Inbound messages strictly after `after` in (time, id) order, oldest first; optionally one conversation. */
export async function inboundMessagesAfter(
  db: DbOrTx,
  organizationId: string,
  options: { phoneNumber: string | null; after: Keyset | null; limit: number },
): Promise<MessageRow[]> {
  const { phoneNumber, after, limit } = options;
  const raw = await inboundRead(after !== null, phoneNumber !== null).arrays(db, {
    organizationId,
    afterAt: after?.at.toISOString(),
    afterId: after?.id,
    phoneNumber,
    limit,
  });
  return raw.map(readInboundRow);
}

/** Position of the newest inbound message (the stream's "now"), or null when there is none. */
async function newestInboundKey(db: DbOrTx, organizationId: string, phoneNumber: string | null): Promise<Keyset | null> {
  const conditions: SQL[] = [eq(messages.organizationId, organizationId), isInbound];
  if (phoneNumber) {
    conditions.push(
      eq(
        messages.conversationId,
        sql`(select ${conversations.id} from ${conversations} where ${conversations.organizationId} = ${organizationId} and ${conversations.phoneNumber} = ${phoneNumber})`,
      ),
    );
  }
  const [row] = await db
    .select({ at: messages.createdAt, id: messages.id })
    .from(messages)
    .where(and(...conditions))
    .orderBy(sql`${messages.createdAt} desc`, sql`${messages.id} desc`)
    .limit(1);
  return row ?? null;
}

/**
 * Where a resumed stream starts: a messages-connection cursor from any conversation of the caller's
 * organization (with phoneNumber: from that conversation). Anything else is INVALID_CURSOR, the same
 * answer whether a foreign conversation exists or not.
 */
async function resumePosition(db: DbOrTx, organizationId: string, cursor: string, scope: ConversationScope): Promise<Keyset> {
  const { scope: conversationId, key } = decodeCursorWithScope('msg', cursor, 'after');
  const invalid = () =>
    new AppError('INVALID_CURSOR', 'after must be a message cursor from a conversation of your organization', { argument: 'after' });
  if (scope.phoneNumber) {
    if ((await scope.resolve()) !== conversationId) throw invalid();
  } else {
    const [owned] = await conversationsByIds(db, organizationId, [conversationId]);
    if (!owned) throw invalid();
  }
  return key;
}

/** The shared inbound feeds of one gateway instance, by organization and narrowing. */
class InboundFeeds implements StatePart {
  readonly byName = new Map<string, Promise<KeysetFeed<MessageRow>>>();

  held(): number {
    return this.byName.size;
  }

  /** Ends the subscriptions still reading (a closing instance has already closed its connections, normally). */
  async drain(): Promise<void> {
    const opening = [...this.byName.values()];
    this.byName.clear();
    for (const result of await Promise.allSettled(opening)) if (result.status === 'fulfilled') result.value.end(shuttingDown());
  }
}
const INBOUND_FEEDS = stateKey<InboundFeeds>('inbound message feeds');

/**
 * A reader of the feed of an organization's inbound messages (or one conversation's), which all their
 * subscribers share: one listener on the topic and one keyset read per wake-up, whatever their number.
 */
async function readInboundFeed(
  deps: StreamDeps,
  organizationId: string,
  phoneNumber: string | null,
  after: Keyset | null | undefined,
  counted: boolean,
): Promise<FeedReader<MessageRow>> {
  const feeds = deps.state.get(INBOUND_FEEDS, () => new InboundFeeds()).byName;
  const name = `${organizationId}|${phoneNumber ?? ''}`;
  for (;;) {
    let opening = feeds.get(name);
    if (!opening) {
      const forget = () => {
        if (feeds.get(name) === opening) feeds.delete(name);
      };
      opening = openInboundFeed(deps, organizationId, phoneNumber, forget);
      feeds.set(name, opening);
      opening.catch(forget);
    }
    const feed = await opening;
    if (!feed.closed) return feed.open(after, counted);
    if (feeds.get(name) === opening) feeds.delete(name); // its last reader left while this one waited
  }
}

async function openInboundFeed(deps: StreamDeps, organizationId: string, phoneNumber: string | null, forget: () => void) {
  const scope = new ConversationScope(deps.db, organizationId, phoneNumber);
  let feed: KeysetFeed<MessageRow> | null = null;
  // Listening before the start position is read: whatever commits after that read is heard.
  const unlisten = deps.events.listen('messageReceived', organizationId, (event) => {
    if (scope.mayMatch(event.conversationId)) feed?.wake();
  });
  let start: Keyset | null;
  try {
    await deps.events.ready;
    await scope.resolve();
    start = await newestInboundKey(deps.db, organizationId, phoneNumber);
  } catch (error) {
    unlisten();
    throw error;
  }
  const source = {
    read: async (after: Keyset | null, limit: number) => {
      const rows = await inboundMessagesAfter(deps.db, organizationId, { phoneNumber, after, limit });
      if (rows[0]) scope.remember(rows[0].conversationId);
      return rows;
    },
    keyOf: (row: MessageRow): Keyset => ({ at: row.createdAt, id: row.id }),
  };
  // A re-read now and then heals a notification lost between instances.
  const resync = setInterval(() => feed?.wake(), RESYNC_MS);
  resync.unref();
  feed = new KeysetFeed(source, start, {
    page: REPLAY_PAGE,
    // Each reader is a subscription to the topic, though the feed listens once for all of them.
    onReaders: (delta) => deps.events.countShared('messageReceived', organizationId, delta),
    onIdle: () => {
      unlisten();
      clearInterval(resync);
      forget();
    },
  });
  feed.wake(); // anything that committed while the feed was being set up
  return feed;
}

/**
 * Inbound messages of the organization (or of one conversation), live, without gaps or duplicates.
 * With `after`, first replays every inbound message newer than that cursor, oldest first.
 *
 * Subscribers share one feed per organization and narrowing (see KeysetFeed): the feed reads the new
 * rows once per wake-up and hands them to every caught-up subscriber; one resuming with `after` (or too
 * slow to keep up) reads by its own keyset until it reaches the feed, then joins it. Inbound messages
 * of an organization commit in (time, id) order (see receiveInbound), so reading by keyset never skips
 * one that commits late.
 */
export async function messageReceivedStream(
  deps: StreamDeps,
  organizationId: string,
  options: { phoneNumber: string | null; after: string | null; hints?: StreamHints },
): Promise<AsyncIterableIterator<MessageRow>> {
  const hints = options.hints ?? {};
  // Validated before the stream starts, so a bad cursor is an error result, not a broken stream.
  const after = options.after
    ? await resumePosition(deps.db, organizationId, options.after, new ConversationScope(deps.db, organizationId, options.phoneNumber))
    : hints.resumeAfter;
  const reader = await readInboundFeed(deps, organizationId, options.phoneNumber, after, !hints.uncounted);
  hints.onStart?.(reader.position);
  return reader;
}

/**
 * A stream of rows named by live events: ids coalesce while the subscriber is busy (it gets the
 * current row once, not every intermediate state) and are loaded in batches, in arrival order.
 */
function rowsByEventId<T extends { id: string }, E>(options: {
  deps: StreamDeps;
  live: AsyncIterator<E> & { return?(): Promise<unknown> };
  idOf: (event: E) => string | null;
  load: (ids: string[]) => Promise<T[]>;
  keep?: (row: T) => Promise<boolean>;
}): AsyncIterable<T> {
  const pending = new Set<string>();
  return wakeableStream<T, E>({
    live: options.live,
    ready: options.deps.events.ready,
    onEvent(event) {
      const id = options.idOf(event);
      if (id === null) return false;
      pending.add(id);
      return true;
    },
    async drain(push, stopped) {
      while (pending.size > 0 && !stopped()) {
        const ids = [...pending].slice(0, LOAD_BATCH);
        for (const id of ids) pending.delete(id);
        const byId = new Map((await options.load(ids)).map((row) => [row.id, row]));
        for (const id of ids) {
          const row = byId.get(id);
          if (!row || (options.keep && !(await options.keep(row)))) continue;
          if (stopped()) return;
          await push(row);
        }
      }
    },
  });
}

/** Conversations of the organization as they change (new message either way, read, archive, star). */
export function conversationUpdatedStream(deps: StreamDeps, organizationId: string): AsyncIterable<ConversationRow> {
  return rowsByEventId({
    deps,
    live: deps.events.subscribe('conversationUpdated', organizationId),
    idOf: (event) => event.conversationId,
    load: (ids) => conversationsByIds(deps.db, organizationId, ids),
  });
}

/** Messages of the organization (or one conversation) whose delivery status moved, with the new status. */
export async function messageStatusStream(
  deps: StreamDeps,
  organizationId: string,
  options: { phoneNumber: string | null },
): Promise<AsyncIterable<MessageRow>> {
  const scope = await ConversationScope.open(deps.db, organizationId, options.phoneNumber);
  return rowsByEventId({
    deps,
    live: deps.events.subscribe('messageStatusChanged', organizationId),
    idOf: (event) => (scope.mayMatch(event.conversationId) ? event.messageId : null),
    load: (ids) => messagesByIds(deps.db, organizationId, ids),
    keep: (row) => scope.matches(row.conversationId),
  });
}

/** Notes added in the organization (or one conversation), each read once it is delivered. */
export async function noteAddedStream(deps: StreamDeps, organizationId: string, options: { phoneNumber: string | null }): Promise<AsyncIterable<NoteRow>> {
  const scope = await ConversationScope.open(deps.db, organizationId, options.phoneNumber);
  return rowsByEventId({
    deps,
    live: deps.events.subscribe('noteAdded', organizationId),
    idOf: (event) => (scope.mayMatch(event.conversationId) ? event.noteId : null),
    load: (ids) => notesByIds(deps.db, organizationId, ids),
    keep: (row) => scope.matches(row.conversationId),
  });
}
