import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { isDatabaseUnavailable, violatedUniqueConstraint } from '../../db/failures.js';
import { columnsOf, HotQuery, rowReader } from '../../db/rows.js';
import { contacts, conversations, messages, messageStatusEvents, organizations, phoneNumbers, type MessageRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import { Batcher, instanceBatcher, writeOrIsolate, type Settled } from '../batcher.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import type { Composition } from './compose.js';
import { numberWanted } from './recipient.js';
import { contactRefusal, fromNumberRefusal, SENDER_KEYS, type SenderContact } from './refusals.js';
import type { SendReplyInput } from './types.js';

/** Thrown inside the transaction of a send with links to undo it (the links with the reservation), carrying why. */
export class RollBack extends Error {
  constructor(readonly result: Exclude<DirectOutcome, { kind: 'reserved' }>) {
    super('rolled back');
  }
}

const readMessage = rowReader(messages);
const INSERTED_COLUMNS = columnsOf(messages, 'ins');

/**
 * The reservation of sends, in one statement (atomic by itself): sends without links together with the
 * sends starting at the same time, a send with links alone in the transaction that stores them: each contact found by its number and share-locked (in the order every writer takes
 * them: contacts by organization and number, as inbound batches do, then organizations, then
 * conversations), its sending number, the organizations' rows locked; then every send whose contact can be
 * texted and whose running total fits the balance is charged, its conversation moved forward and its
 * message stored (status queued) with its first status event. The contact and number come back with
 * each row, so a send that was refused says why (contactRefusal, fromNumberRefusal) from the same
 * locked read: looking them up first cost a statement and a round trip more per send. A send past the
 * balance is tried again alone, so credits go to sends in arrival order exactly as one by one. A taken
 * idempotency key fails the statement, and the batch is then written one send at a time.
 */
export type DirectSend = {
  /** The provider's name, stored with the message. */
  provider: string;
  organizationId: string;
  phoneNumber: string;
  byId: boolean;
  wantedId: string | null;
  composed: Composition;
  messageId: string;
  key: string | null;
  /** When the send was made: its message's time. */
  at: string;
  /** The member sending it, or null. */
  sentBy: string | null;
};

const directBatcherOf = instanceBatcher(
  'reply reservations',
  ({ db }) =>
    new Batcher<DirectSend, Record<string, unknown>>(
      (items) => writeOrIsolate(items, (some) => reserveDirect(db, some), isDatabaseUnavailable),
      200,
      2,
    ),
);

const readDirectContact = rowReader(contacts, 'c_', SENDER_KEYS) as (row: Record<string, unknown>) => SenderContact;
const DIRECT_CONTACT_COLUMNS = columnsOf(contacts, 'cur', 'c_', SENDER_KEYS);

/**
 * The conflict clause of a send's conversation upsert (alias `v`): the new message becomes the
 * conversation's last one unless a later one is there already (sends of one conversation can commit out of order).
 */
const isNewest = sql.raw('(v.last_message_id is null or (v.last_message_at, v.last_message_id) < (excluded.last_message_at, excluded.last_message_id))');
const BECOMES_LAST_MESSAGE = sql`on conflict (organization_id, phone_number) do update set
  last_message_id = case when ${isNewest} then excluded.last_message_id else v.last_message_id end,
  last_message_body = case when ${isNewest} then excluded.last_message_body else v.last_message_body end,
  last_direction = case when ${isNewest} then excluded.last_direction else v.last_direction end,
  last_message_at = case when ${isNewest} then excluded.last_message_at else v.last_message_at end,
  waiting_since = case when ${isNewest} then null else v.waiting_since end,
  updated_at = now()`;

/** reserveDirect's statement, built once (db/rows.ts): the sends come as one JSON parameter. */
const RESERVE = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(
          i int, org uuid, phone text, "byId" boolean, wanted uuid, id uuid, body text, media text[], provider text,
          segments int, encoding text, credits int, key text, at timestamptz, eid uuid, by uuid)
      ), cur as (
        -- One key lookup per send, in (organization, number) order, each row share-locked as it is found
        -- (consent is decided under the lock: a STOP committed first wins, one arriving now waits for us).
        select x.i, c.id, c.is_opted_in, c.is_textable
        from (select i, org, phone from x order by org, phone) x
        cross join lateral (
          select id, is_opted_in, is_textable from ${contacts} where organization_id = x.org and phone_number = x.phone for share
        ) c
      ), num as (
        select x.i, n.id as number_id, n.phone_number as number_phone, n.messaging_service_sid as number_mg
        from x cross join lateral (
          select id, phone_number, messaging_service_sid from ${phoneNumbers} p
          where p.organization_id = x.org and case when x."byId" then p.id = x.wanted else p.is_default end
          limit 1
        ) n
      ), bal as (
        -- Only once every contact is locked (the count reads all of cur first, whatever order the planner
        -- joins the CTEs in): contacts, then organizations, the order every writer takes them.
        select o.id, o.credits from ${organizations} o
        where o.id in (select org from x) and (select count(*) from cur) >= 0
        order by o.id for update
      ), eligible as (
        select x.*, cur.id as contact, num.number_id, sum(x.credits) over (partition by x.org order by x.i) as running
        from x join cur on cur.i = x.i join num on num.i = x.i
        where cur.is_opted_in and cur.is_textable
      ), accepted as (
        select e.* from eligible e join bal on bal.id = e.org where e.running <= bal.credits
      ), paid as (
        update ${organizations} o set credits = o.credits - t.total
        from (select org, sum(credits) as total from accepted group by org) t
        where o.id = t.org
      ), newest as (
        select distinct on (org, phone) org, phone, contact, id, body, at from accepted order by org, phone, at desc, id desc
      ), conv as (
        insert into ${conversations} as v (organization_id, phone_number, contact_id, last_message_id, last_message_body, last_direction, last_message_at)
        select org, phone, contact, id, body, 'outgoing', at from newest order by org, phone
        ${BECOMES_LAST_MESSAGE}
        returning v.id, v.organization_id, v.phone_number
      ), ins as (
        insert into ${messages} (organization_id, id, conversation_id, direction, body, media_urls, status, provider, from_phone_number_id,
          segments, encoding, credits_charged, idempotency_key, created_at, updated_at, sent_by_user_id)
        select a.org, a.id, conv.id, 'outgoing', a.body, a.media, 'queued', a.provider, a.number_id, a.segments, a.encoding, a.credits, a.key,
          a.at, a.at, a.by
        from accepted a join conv on conv.organization_id = a.org and conv.phone_number = a.phone
        order by a.i
        returning *
      ), queued as (
        insert into ${messageStatusEvents} (organization_id, id, message_id, status)
        select ins.organization_id, x.eid, ins.id, 'queued' from ins join x on x.id = ins.id
      )
      select x.i, (bal.id is not null) as org_found, num.number_id as n_id, num.number_phone as n_phone, num.number_mg as n_mg,
        (a.i is not null) as accepted, (e.i is not null) as eligible, ${DIRECT_CONTACT_COLUMNS}, ${INSERTED_COLUMNS}
      from x
      left join bal on bal.id = x.org
      left join cur on cur.i = x.i
      left join num on num.i = x.i
      left join eligible e on e.i = x.i
      left join accepted a on a.i = x.i
      left join ins on ins.id = x.id`,
);

async function reserveDirect(db: DbOrTx, items: DirectSend[]): Promise<Settled<Record<string, unknown>>[]> {
  const input = items.map(({ provider, organizationId, phoneNumber, byId, wantedId, composed, messageId, key, at, sentBy }, i) => ({
    i,
    org: organizationId,
    phone: phoneNumber,
    byId,
    wanted: wantedId,
    id: messageId,
    body: composed.text,
    media: composed.mediaUrls,
    provider,
    segments: composed.segments,
    encoding: composed.encoding,
    credits: composed.credits,
    key,
    at,
    // The queued event's id, time-ordered (see ids.ts) as the message's own.
    eid: uuidv7(),
    by: sentBy,
  }));
  const rows = await RESERVE.rows(db, { input: JSON.stringify(input) });
  const byIndex = new Map(rows.map((row) => [Number(row.i), row]));
  return items.map((_, i) => ({ ok: true, value: byIndex.get(i)! }));
}

export type Sender = { contact: SenderContact; from: { id: string; phoneNumber: string; messagingServiceSid?: string | null } };

export type DirectOutcome =
  | ({ kind: 'reserved'; message: MessageRow } & Sender)
  | { kind: 'refused'; error: AppError }
  | { kind: 'credits' }
  /** The contact's textability is not known yet: resolveRecipient settles it (or refuses). */
  | { kind: 'pending' };

/** What reserveDirect stores for one send: its message as of now, from the number the input wants. */
export function directSend(
  deps: Pick<ServiceDeps, 'sms'>,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
  composed: Composition,
  key: string | null,
  messageId: string,
): DirectSend {
  const { byId, wantedId } = numberWanted(input);
  return {
    provider: deps.sms.name,
    organizationId,
    phoneNumber,
    byId,
    wantedId,
    composed,
    messageId,
    key,
    at: new Date().toISOString(),
    sentBy: input.sentByUserId ?? null,
  };
}

/** A send without links: reserved in one statement (reserveDirect), or why not. Throws on a taken idempotency key. */
export async function reserveWithoutLinks(
  deps: Pick<ServiceDeps, 'db' | 'sms' | 'state'>,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
  composed: Composition,
  key: string | null,
): Promise<DirectOutcome> {
  const { wanted } = numberWanted(input);
  const send = directSend(deps, organizationId, phoneNumber, input, composed, key, uuidv7());
  let row = await directBatcherOf(deps).submit(send);
  // The batch's credits ran out before this send: alone, it is charged if the balance covers it now.
  if (row.eligible && !row.accepted) row = await reserveAlone(deps.db, send);
  return directOutcome(row, phoneNumber, wanted);
}

export async function reserveAlone(db: DbOrTx, send: DirectSend): Promise<Record<string, unknown>> {
  const [result] = await reserveDirect(db, [send]);
  if (!result!.ok) throw result!.error;
  return result!.value;
}

/** What reserveDirect's row for one send says: reserved, or why not (the rules in the order sends check them). */
export function directOutcome(row: Record<string, unknown>, phoneNumber: string, wanted: string | undefined): DirectOutcome {
  if (!row.org_found) return { kind: 'refused', error: new AppError('NOT_FOUND', 'Organization not found.') };
  const contact = row.c_id === null || row.c_id === undefined ? null : readDirectContact(row);
  const refusal = contactRefusal(contact, phoneNumber);
  if (refusal === 'pending') return { kind: 'pending' };
  if (refusal) return { kind: 'refused', error: refusal };
  if (!row.n_id) return { kind: 'refused', error: fromNumberRefusal(wanted) };
  if (!row.accepted) return { kind: 'credits' };
  return { kind: 'reserved', message: readMessage(row), contact: contact!, from: { id: row.n_id as string, phoneNumber: row.n_phone as string, messagingServiceSid: (row.n_mg as string | null) ?? null } };
}

/** The unique violation of messages_org_idempotency_key: another send took this idempotency key first. */
export function isKeyCollision(error: unknown): boolean {
  return violatedUniqueConstraint(error) === 'messages_org_idempotency_key';
}
