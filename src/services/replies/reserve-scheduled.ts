import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { isDatabaseUnavailable } from '../../db/failures.js';
import { HotQuery, rowReader } from '../../db/rows.js';
import { contacts, conversations, messages, messageStatusEvents, organizations, type MessageRow } from '../../db/tables.js';
import type { AppError } from '../../errors.js';
import { Batcher, instanceBatcher, writeOrIsolate, type Settled } from '../batcher.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import { contactRefusal, insufficientCredits, type SenderContact } from './refusals.js';

// Due scheduled replies taking their credits: out of `scheduled` into `queued`, in one statement for the
// replies falling due together (a burst scheduled for the same second shares its organization's row
// lock once per batch, not once per reply). Locks in the order every writer takes them: the contacts
// (shared, in (organization, number) order: consent is decided under them), the messages, the
// organizations, then the conversations, whose last message each reply becomes unless a later one is
// there. As with sendReply's reservation (reserve.ts), credits go in arrival order: a reply past its
// organization's balance within a batch is tried again alone.

export type DueReply = { organizationId: string; messageId: string; phoneNumber: string; credits: number; fromId: string };

export type ScheduledReservation =
  | { kind: 'gone' }
  | { kind: 'pending' }
  | { kind: 'refused'; error: AppError }
  | { kind: 'reserved'; message: MessageRow; contact: SenderContact };

const readQueued = rowReader(messages);

const RESERVE_DUE = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(i int, org uuid, id uuid, phone text, credits int, "from" uuid, provider text, eid uuid)
      ), c as (
        select x.i, ct.id, ct.is_opted_in, ct.is_textable
        from (select i, org, phone from x order by org, phone) x
        cross join lateral (select id, is_opted_in, is_textable from ${contacts} where organization_id = x.org and phone_number = x.phone for share) ct
      ), m as (
        -- Only once every contact is locked (the count reads all of c first).
        select x.i from (select i, org, id from x order by org, id) x
        cross join lateral (
          select id from ${messages} where organization_id = x.org and id = x.id and status = 'scheduled' and (select count(*) from c) >= 0 for update
        ) mm
      ), bal as (
        select o.id, o.credits from ${organizations} o where o.id in (select org from x) and (select count(*) from m) >= 0 order by o.id for update
      ), eligible as (
        select x.*, sum(x.credits) over (partition by x.org order by x.i) as running
        from x join c on c.i = x.i join m on m.i = x.i
        where c.is_opted_in and c.is_textable is true
      ), accepted as (
        select e.* from eligible e join bal on bal.id = e.org where e.running <= bal.credits
      ), paid as (
        update ${organizations} o set credits = o.credits - t.total
        from (select org, sum(credits) as total from accepted group by org) t where o.id = t.org
      ), q as (
        update ${messages} mm set status = 'queued', credits_charged = a.credits, provider = a.provider, from_phone_number_id = a."from", updated_at = now()
        from accepted a where mm.organization_id = a.org and mm.id = a.id
        returning mm.*
      ), ev as (
        insert into ${messageStatusEvents} (organization_id, id, message_id, status) select a.org, a.eid, a.id, 'queued' from accepted a
      ), newest as (
        select distinct on (organization_id, conversation_id) organization_id, conversation_id, id, body, created_at
        from q order by organization_id, conversation_id, created_at desc, id desc
      ), conv as (
        update ${conversations} v set last_message_id = n.id, last_message_body = n.body, last_direction = 'outgoing',
          last_message_at = n.created_at, waiting_since = null, updated_at = now()
        from newest n
        where v.organization_id = n.organization_id and v.id = n.conversation_id
          and (v.last_message_id is null or (v.last_message_at, v.last_message_id) < (n.created_at, n.id))
      )
      select x.i, (m.i is not null) as scheduled_row, (e.i is not null) as eligible, (a.i is not null) as accepted, bal.credits as balance_before,
        c.id as c_id, c.is_opted_in as c_is_opted_in, c.is_textable as c_is_textable, q.*
      from x
      left join c on c.i = x.i
      left join m on m.i = x.i
      left join eligible e on e.i = x.i
      left join accepted a on a.i = x.i
      left join bal on bal.id = x.org
      left join q on q.id = x.id`,
);

async function reserveDue(db: DbOrTx, provider: string, replies: DueReply[]): Promise<Settled<Record<string, unknown>>[]> {
  const input = replies.map((reply, i) => ({
    i,
    org: reply.organizationId,
    id: reply.messageId,
    phone: reply.phoneNumber,
    credits: reply.credits,
    from: reply.fromId,
    provider,
    eid: uuidv7(),
  }));
  const rows = await RESERVE_DUE.rows(db, { input: JSON.stringify(input) });
  const byIndex = new Map(rows.map((row) => [Number(row.i), row]));
  return replies.map((_, i) => ({ ok: true, value: byIndex.get(i)! }));
}

const dueBatcherOf = instanceBatcher(
  'scheduled reply reservations',
  ({ db }) =>
    new Batcher<DueReply & { provider: string }, Record<string, unknown>>(
      (items) => writeOrIsolate(items, (some) => reserveDue(db, some[0]!.provider, some), isDatabaseUnavailable),
      200,
      2,
    ),
);

function outcomeOf(row: Record<string, unknown>, reply: DueReply): ScheduledReservation {
  if (!row.scheduled_row) return { kind: 'gone' };
  const contact: SenderContact | null =
    row.c_id === null || row.c_id === undefined
      ? null
      : { id: row.c_id as string, isOptedIn: row.c_is_opted_in as boolean, isTextable: row.c_is_textable as boolean | null };
  if (row.id !== null && row.id !== undefined) return { kind: 'reserved', message: readQueued(row), contact: contact! };
  const refusal = contactRefusal(contact, reply.phoneNumber);
  if (refusal === 'pending') return { kind: 'pending' };
  if (refusal) return { kind: 'refused', error: refusal };
  return { kind: 'refused', error: insufficientCredits(reply.credits, Number(row.balance_before ?? 0)) };
}

/** Reserves one due reply, batched with the others falling due together. */
export async function reserveDueReply(deps: Pick<ServiceDeps, 'db' | 'sms' | 'state'>, reply: DueReply): Promise<ScheduledReservation> {
  let row = await dueBatcherOf(deps).submit({ ...reply, provider: deps.sms.name });
  // Its batch's credits ran out before it: alone, it is charged if the balance covers it now.
  if (row.eligible && !row.accepted) {
    const [alone] = await reserveDue(deps.db, deps.sms.name, [reply]);
    row = (alone as { ok: true; value: Record<string, unknown> }).value;
  }
  return outcomeOf(row, reply);
}
