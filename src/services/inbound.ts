import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import type { Db, DbOrTx, Tx } from '../db/client.js';
import { isDatabaseUnavailable, violatedUniqueConstraint } from '../db/failures.js';
import { columnsOf, HotQuery, rawRows, rowReader } from '../db/rows.js';
import { contacts, conversations, messages, phoneNumbers, type ContactRow, type ConversationRow, type MessageRow } from '../db/tables.js';
import { AppError } from '../errors.js';
import { analyzeInbound, type MessageAnalysis } from './analysis.js';
import { Batcher, instanceBatcher, writeOrIsolate, type Instance, type Settled } from './batcher.js';
import { changeConsent } from './consent.js';
import type { ServiceDeps } from './deps.js';
import { CacheMap, stateKey, type ServiceState } from './state.js';
import { organizationExists } from './organizations.js';
import { normalizePhone } from './phone.js';
import { webhookEventsFrom, messageData } from './webhooks/outbox.js';

// The one path for inbound messages: Twilio's webhook and the CLI's `inbound` command both come
// through here. One atomic write stores the message, finds or creates the sender's contact, applies
// consent keywords and the analysis; events are published only after it commits.
//
// Group commit: messages arriving together are written together by one statement (see writeRows), and
// each caller is answered only once it committed. A batch that fails is written again one message at a
// time, so one bad message fails alone.

export type InboundMessage = {
  /** The organization's number the message was sent to (Twilio `To`): routes it to its organization. */
  to?: string;
  /** The organization, when the caller already knows it (CLI); `to` is then optional. */
  organizationId?: string;
  /** The sender (Twilio `From`), any standard format. */
  from: string;
  body: string;
  mediaUrls?: string[];
  /** `twilio`, or `cli` for injected demo messages. */
  provider: string;
  /** Twilio's MessageSid: one message per SID, so retried webhooks store nothing twice. */
  providerMessageId?: string | null;
  /** Arrived while its sender was flooding the number (see the webhook): stored, and marked. */
  flaggedAsFlood?: boolean;
};

export type InboundOutcome =
  | {
      outcome: 'stored';
      organizationId: string;
      message: MessageRow;
      conversation: ConversationRow;
      contact: ContactRow;
      analysis: MessageAnalysis;
    }
  | { outcome: 'duplicate'; organizationId: string };

type InboundDeps = Pick<ServiceDeps, 'db' | 'events' | 'logger' | 'state'>;

/** A message checked and analyzed, waiting for its batch. */
type Pending = {
  deps: InboundDeps;
  /** E.164 `To`: routed in the batch. Null when the organization is already known (`routed`). */
  to: string | null;
  /** The organization the caller named: a `To` owned by another organization is NOT_FOUND. */
  organizationId: string | null;
  routed: { organizationId: string; phoneNumberId: string | null } | null;
  from: string;
  body: string;
  mediaUrls: string[];
  provider: string;
  providerMessageId: string | null;
  flaggedAsFlood: boolean;
  analysis: MessageAnalysis;
};

/** Largest batch: bounds one transaction's statement size and lock time. */
const MAX_BATCH = 200;

/** The organization and its default number, for callers that name the organization instead of `To`. */
async function routeByOrganization(db: Db, organizationId: string): Promise<{ organizationId: string; phoneNumberId: string | null }> {
  if (await organizationExists(db, organizationId)) {
    const [number] = await db
      .select({ id: phoneNumbers.id })
      .from(phoneNumbers)
      .where(and(eq(phoneNumbers.organizationId, organizationId), eq(phoneNumbers.isDefault, true)))
      .limit(1);
    return { organizationId, phoneNumberId: number?.id ?? null };
  }
  throw new AppError('NOT_FOUND', `No organization with id ${organizationId}.`);
}

const batcherOf = instanceBatcher('inbound messages', (instance) => new Batcher<Pending, InboundOutcome>((items) => writeBatch(instance, items), MAX_BATCH, 2));

export async function receiveInbound(deps: InboundDeps, input: InboundMessage): Promise<InboundOutcome> {
  const from = normalizePhone(input.from, 'From');
  const to = input.to !== undefined ? normalizePhone(input.to, 'To') : null;
  if (to === null && !input.organizationId) throw new AppError('NOT_FOUND', 'No recipient number given.');
  const routed = to === null ? await routeByOrganization(deps.db, input.organizationId!) : null;
  const body = input.body ?? '';
  return batcherOf(deps).submit({
    deps,
    to,
    organizationId: input.organizationId ?? null,
    routed,
    from,
    body,
    mediaUrls: input.mediaUrls ?? [],
    provider: input.provider,
    providerMessageId: input.providerMessageId ?? null,
    flaggedAsFlood: input.flaggedAsFlood ?? false,
    analysis: analyzeInbound(body),
  });
}

/** Writes one batch; when it fails, writes its messages one by one so that only the bad one fails. */
const writeBatch = (instance: Instance, items: Pending[]) => writeOrIsolate(items, (some) => writeTogether(instance, some), isDatabaseUnavailable);

/** Thrown inside the batch's transaction when messages turned out to be stored already: undo, and write the rest. */
class AlreadyStored extends Error {
  constructor(readonly rows: { index: number; organizationId: string }[]) {
    super('already stored');
  }
}

type Stored = { index: number; organizationId: string; item: Pending; message: MessageRow; conversation: ConversationRow; contact: ContactRow };

async function writeTogether({ db, state }: Instance, items: Pending[]): Promise<Settled<InboundOutcome>[]> {
  const results: (Settled<InboundOutcome> | undefined)[] = new Array(items.length);
  const duplicate = (index: number, organizationId: string) => {
    results[index] = { ok: true, value: { outcome: 'duplicate', organizationId } };
    items[index]!.deps.logger.info({ organizationId, providerMessageId: items[index]!.providerMessageId }, 'duplicate inbound delivery ignored');
  };
  for (let attempt = 0; ; attempt += 1) {
    const open = items.flatMap((item, index) => (results[index] ? [] : [{ item, index }]));
    if (open.length === 0) break;
    let stored: Stored[];
    try {
      stored = await writeOnce(db, state, open, results, duplicate);
    } catch (error) {
      // Retries of messages stored meanwhile (by another batch or instance): the whole batch was undone,
      // so a duplicate changed nothing; the others go again without it.
      if (!(error instanceof AlreadyStored) || attempt >= 3) throw error;
      for (const row of error.rows) duplicate(row.index, row.organizationId);
      continue;
    }
    // Committed: now, and only now, tell subscribers (in commit order within each organization).
    for (const row of stored) {
      const item = items[row.index]!;
      item.deps.events.publish('messageReceived', row.organizationId, { messageId: row.message.id, conversationId: row.conversation.id });
      item.deps.events.publish('conversationUpdated', row.organizationId, { conversationId: row.conversation.id });
      const { organizationId, message, conversation, contact } = row;
      results[row.index] = { ok: true, value: { outcome: 'stored', organizationId, message, conversation, contact, analysis: item.analysis } };
    }
  }
  return results as Settled<InboundOutcome>[];
}

const readMessage = rowReader(messages);
const readConversation = rowReader(conversations, 'c_');
const readSender = rowReader(contacts, 'k_');
const INSERTED_COLUMNS = columnsOf(messages, 'ins');
const CONVERSATION_COLUMNS = columnsOf(conversations, 'conv', 'c_');
const SENDER_COLUMNS = columnsOf(contacts, 'sender', 'k_');

type Row = { index: number; item: Pending; organizationId: string; phoneNumberId: string | null; id: string; seq: number };

type Route = { organizationId: string; phoneNumberId: string | null };

/** Routes known by `To`, per instance: a sending number is never moved to another organization nor removed. */
const KNOWN_ROUTES = stateKey<CacheMap<string, Route & { until: number }>>('inbound routes');
const ROUTE_TTL_MS = 5 * 60_000;
const ROUTES_KEPT = 10_000;

/** The organization and number of each `To` (by position; null: none to route); unknown numbers are read, and not remembered. */
async function routesOf(db: Db, state: ServiceState, tos: (string | null)[]): Promise<Map<number, Route>> {
  const known = state.get(KNOWN_ROUTES, () => new CacheMap());
  const now = Date.now();
  const routes = new Map<number, Route>();
  const missing: { position: number; to: string }[] = [];
  tos.forEach((to, position) => {
    if (to === null) return;
    const route = known.get(to);
    if (route && route.until > now) routes.set(position, route);
    else missing.push({ position, to });
  });
  if (missing.length === 0) return routes;
  const rows = await rawRows(
    db,
    sql`select p.phone_number, p.organization_id, p.id
      from ${phoneNumbers} p where p.phone_number in (select jsonb_array_elements_text(${JSON.stringify(missing.map((m) => m.to))}::jsonb))`,
  );
  if (known.size + rows.length > ROUTES_KEPT) known.clear();
  for (const row of rows) known.set(row.phone_number as string, { organizationId: row.organization_id as string, phoneNumberId: row.id as string, until: now + ROUTE_TTL_MS });
  for (const { position, to } of missing) {
    const route = known.get(to);
    if (route) routes.set(position, route);
  }
  return routes;
}

/**
 * One round trip for a batch once its `To` numbers are known (they are read once, then remembered): one
 * statement that writes it all and commits by itself. Only a batch with consent keywords needs a transaction (their effects
 * follow in more statements).
 */
async function writeOnce(
  db: Db,
  state: ServiceState,
  open: { item: Pending; index: number }[],
  results: (Settled<InboundOutcome> | undefined)[],
  duplicate: (index: number, organizationId: string) => void,
): Promise<Stored[]> {
  const routeOf = await routesOf(db, state, open.map(({ item }) => item.to));

  // Messages to write: routed, and each MessageSid once (copies in the same batch are retries).
  const rows: Row[] = [];
  const seen = new Set<string>();
  const perOrganization = new Map<string, number>();
  open.forEach(({ item, index }, position) => {
    const route = item.routed ?? routeOf.get(position);
    if (!route || (item.organizationId && item.organizationId !== route.organizationId)) {
      results[index] = { ok: false, error: new AppError('NOT_FOUND', `No organization receives messages on ${item.to}.`, { to: item.to }) };
      return;
    }
    if (item.providerMessageId !== null) {
      const key = `${route.organizationId} ${item.providerMessageId}`;
      if (seen.has(key)) {
        duplicate(index, route.organizationId);
        return;
      }
      seen.add(key);
    }
    const seq = perOrganization.get(route.organizationId) ?? 0;
    perOrganization.set(route.organizationId, seq + 1);
    rows.push({ index, item, organizationId: route.organizationId, phoneNumberId: route.phoneNumberId, id: randomUUID(), seq });
  });
  if (rows.length === 0) return [];

  const consent = rows.some((row) => row.item.analysis.keyword && row.item.analysis.keyword.kind !== 'help');
  try {
    return consent ? await db.transaction(async (tx) => applyConsent(tx, await writeRows(tx, rows))) : await writeRows(db, rows);
  } catch (error) {
    if (violatedUniqueConstraint(error) !== 'messages_org_provider_message_id_key') throw error;
    // A MessageSid stored since the batch began: the statement was undone whole. Which ones?
    const sids = rows.filter((row) => row.item.providerMessageId !== null).map((row) => ({ org: row.organizationId, sid: row.item.providerMessageId }));
    const stored = await rawRows(
      db,
      sql`select m.organization_id, m.provider_message_id from jsonb_to_recordset(${JSON.stringify(sids)}::jsonb) as x(org uuid, sid text)
        join ${messages} m on m.organization_id = x.org and m.provider_message_id = x.sid`,
    );
    const known = new Set(stored.map((row) => `${row.organization_id} ${row.provider_message_id}`));
    throw new AlreadyStored(rows.filter((row) => known.has(`${row.organizationId} ${row.item.providerMessageId}`)));
  }
}

const isNewest = sql.raw(
  '(c.last_message_id is null or (c.last_message_at, c.last_message_id) < (excluded.last_message_at, excluded.last_message_id))',
);
/**
 * writeRows' statement, built once and prepared (src/db/rows.ts): one round trip, where an unprepared
 * statement with parameters takes two. The rows come as one JSON parameter.
 */
const WRITE_ROWS = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(
          org uuid, phone text, id uuid, seq int, body text, media text[], provider text, sid text,
          number uuid, sentiment text, score float8, category text, requires boolean, optout boolean, flood boolean)
      ), stamp as (
        select * from inbound_batch_stamps(array(select distinct org from x))
      ), sender as (
        insert into ${contacts} (organization_id, phone_number, is_textable)
        select distinct x.org, x.phone, true from x join stamp on stamp.org = x.org order by 1, 2
        on conflict (organization_id, phone_number) do update set
          is_textable = true,
          updated_at = case when ${contacts}.is_textable is true then ${contacts}.updated_at else now() end
        returning *
      ), stamped as (
        select x.*, stamp.base + x.seq * interval '1 millisecond' as at from x join stamp on stamp.org = x.org
      ), newest as (
        select distinct on (s.org, s.phone) s.org, s.phone, sender.id as contact, s.id, s.body, s.at,
          count(*) over (partition by s.org, s.phone) as arrived, min(s.at) over (partition by s.org, s.phone) as first_at
        from stamped s join sender on sender.organization_id = s.org and sender.phone_number = s.phone
        order by s.org, s.phone, s.at desc, s.id desc
      ), conv as (
        insert into ${conversations} as c (organization_id, phone_number, contact_id, last_message_id, last_message_body, last_direction,
          last_message_at, unread_count, waiting_since)
        select org, phone, contact, id, body, 'incoming', at, arrived, first_at from newest order by org, phone
        on conflict (organization_id, phone_number) do update set
          contact_id = excluded.contact_id,
          last_message_id = case when ${isNewest} then excluded.last_message_id else c.last_message_id end,
          last_message_body = case when ${isNewest} then excluded.last_message_body else c.last_message_body end,
          last_direction = case when ${isNewest} then excluded.last_direction else c.last_direction end,
          last_message_at = case when ${isNewest} then excluded.last_message_at else c.last_message_at end,
          unread_count = c.unread_count + excluded.unread_count,
          is_archived = false,
          -- Waiting since the first of these, unless it was waiting already (or a reply of ours is newer).
          waiting_since = case when ${isNewest} then coalesce(c.waiting_since, excluded.waiting_since) else c.waiting_since end,
          -- A contact writing again reopens a RESOLVED or SNOOZED thread (SET reads the row as it was).
          status = case when c.status in ('resolved', 'snoozed') then 'open' else c.status end,
          snoozed_until = case when c.status in ('resolved', 'snoozed') then null else c.snoozed_until end,
          resolved_at = case when c.status in ('resolved', 'snoozed') then null else c.resolved_at end,
          updated_at = now()
        returning c.*
      ), ins as (
        insert into ${messages} (organization_id, id, conversation_id, direction, body, media_urls, provider, provider_message_id,
          from_phone_number_id, sentiment, sentiment_score, category, requires_response, opt_out_detected, flagged_as_flood, created_at, updated_at)
        select s.org, s.id, conv.id, 'incoming', s.body, s.media, s.provider, s.sid, s.number, s.sentiment, s.score, s.category,
          s.requires, s.optout, s.flood, s.at, s.at
        from stamped s join conv on conv.organization_id = s.org and conv.phone_number = s.phone
        order by s.org, s.at
        returning *
      ), hook as (${webhookEventsFrom('message.received', sql`ins join conv on conv.organization_id = ins.organization_id and conv.id = ins.conversation_id`, {
        organization: sql`ins.organization_id`,
        orderKey: sql`conv.phone_number`,
        data: messageData('ins', sql`conv.phone_number`),
        order: sql`ins.organization_id, ins.created_at`,
      })})
      select ${INSERTED_COLUMNS}, ${CONVERSATION_COLUMNS}, ${SENDER_COLUMNS}
      from ins
      join conv on conv.organization_id = ins.organization_id and conv.id = ins.conversation_id
      join sender on sender.organization_id = conv.organization_id and sender.phone_number = conv.phone_number
      order by ins.organization_id, ins.created_at`,
);

/**
 * The batch in one statement: the organizations' inbound locks and first free stamps (inbound_batch_stamps,
 * migration 0004), the senders found or created as textable (they texted us, so they can receive texts),
 * the conversations (created on first contact, moved forward, unread + 1 per message, unarchived, linked to
 * the sender) and the messages. Each step reads the one before it, so the locks come first and each
 * contact is locked before its conversation, as every writer does. A MessageSid stored already fails it.
 *
 * Inbound messages of one organization commit one batch at a time (the lock is held until commit), each
 * stamped later than the last. So commit order is (createdAt, id) order, and a subscriber resuming from the
 * cursor of the last message it saw never misses one that committed late with an earlier time.
 */
async function writeRows(db: DbOrTx, rows: Row[]): Promise<Stored[]> {
  const input = rows.map((row) => ({
    org: row.organizationId,
    phone: row.item.from,
    id: row.id,
    seq: row.seq,
    body: row.item.body,
    media: row.item.mediaUrls,
    provider: row.item.provider,
    sid: row.item.providerMessageId,
    number: row.phoneNumberId,
    sentiment: row.item.analysis.sentiment,
    score: row.item.analysis.sentimentScore,
    category: row.item.analysis.category,
    requires: row.item.analysis.requiresResponse,
    optout: row.item.analysis.optOutDetected,
    flood: row.item.flaggedAsFlood,
  }));
  const written = await WRITE_ROWS.rows(db, { input: JSON.stringify(input) });
  const rowById = new Map(rows.map((row) => [row.id, row]));
  return written.map((raw) => {
    const message = readMessage(raw);
    const row = rowById.get(message.id)!;
    return { index: row.index, organizationId: row.organizationId, item: row.item, message, conversation: readConversation(raw), contact: readSender(raw) };
  });
}

/** Consent keywords (rare), in arrival order: every keyword is recorded, the last one wins. */
async function applyConsent(tx: Tx, stored: Stored[]): Promise<Stored[]> {
  for (const [position, entry] of stored.entries()) {
    const keyword = entry.item.analysis.keyword;
    if (!keyword || keyword.kind === 'help') continue;
    const changed = await changeConsent(tx, entry.organizationId, { contactId: entry.contact.id }, {
      kind: keyword.kind,
      keyword: keyword.keyword,
      messageId: entry.message.id,
      source: 'keyword',
    });
    // A keyword is always recorded; the contact is this batch's own, so it is there.
    const contact = changed!.contact;
    for (const later of stored.slice(position)) if (later.contact.id === contact.id) later.contact = contact;
  }
  return stored;
}
