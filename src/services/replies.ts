import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Deps } from '../context.js';
import type { Db, DbOrTx, Tx } from '../db/client.js';
import { isDatabaseUnavailable, violatedUniqueConstraint } from '../db/failures.js';
import {
  consentEvents,
  contacts,
  conversations,
  messages,
  messageStatusEvents,
  organizations,
  phoneNumbers,
  type ContactRow,
  type MessageRow,
} from '../db/tables.js';
import { columnsOf, HotQuery, rowReader } from '../db/rows.js';
import { AppError } from '../errors.js';
import { PROVIDER_ERRORS, type SendResult } from '../providers/sms-provider.js';
import { Batcher, batcherPer, writeOrIsolate, type Settled } from './batcher.js';
import { hasInboundFrom } from './contacts.js';
import { creditBalance, refundCredits } from './credits.js';
import { isUuid } from './cursors.js';
import { uuidv7 } from './ids.js';
import { statusMovesForward } from './message-status.js';
import { normalizePhone } from './phone.js';
import { planShortLinks, storeShortLinks, type PlannedLink } from './short-links.js';
import { bodyLength, MAX_BODY_CHARACTERS, measureSmsText, normalizeSmsText, type Encoding } from './sms-text.js';

// Sending a reply: the one place money is spent and a phone buzzes. The order of work makes it exact:
//  1. validate the input without touching the database;
//  2. one statement checks the contact and sending number under lock, stores the message (status queued,
//     with its idempotency key) and reserves the credits with a conditional UPDATE (reserveDirect). With
//     short links, a transaction stores them and the reservation after one read of contact and number.
//     A concurrent duplicate key waits on the unique index, fails, then finds the first message and
//     replays its result; a refused contact or too few credits write nothing;
//  3. the provider is called outside any transaction;
//  4. one statement stores the provider's answer, or a transaction marks the message failed and refunds.
// Replies bypass quiet hours: they go out immediately at any hour.

export type Route = 'AUTO' | 'SMS' | 'MMS';
export type { Encoding };

export type SendReplyInput = {
  phoneNumber: string;
  message: string;
  fromPhoneNumberId?: string | null;
  mediaUrl?: string | null;
  mediaUrls?: string[] | null;
  normalizeText?: boolean | null;
  forceRoute?: Route | null;
  idempotencyKey?: string | null;
};

export type SendReplyOutcome =
  | {
      ok: true;
      message: MessageRow;
      provider: string;
      providerMessageId: string | null;
      segments: number;
      encoding: Encoding;
      creditsCharged: number;
    }
  | { ok: false; error: AppError };

export type ReplyPreview = {
  /** The text as it would go out: normalized, URLs replaced by short links (codes not yet reserved). */
  text: string;
  encoding: Encoding;
  segments: number;
  route: 'SMS' | 'MMS';
  credits: number;
  /** What sendReply would refuse with, if anything. */
  error: AppError | null;
};

export const MAX_MEDIA = 10;
const MAX_MEDIA_URL_LENGTH = 2048;
const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** The text part of a reply, worked out without touching the database. */
type Composition = {
  text: string;
  links: PlannedLink[];
  mediaUrls: string[];
  route: 'SMS' | 'MMS';
  encoding: Encoding;
  segments: number;
  credits: number;
  /** INVALID_MESSAGE, if the input breaks a rule. */
  error: AppError | null;
};

const invalidMessage = (message: string, details?: Record<string, unknown>) => new AppError('INVALID_MESSAGE', message, details);

function mediaOf(input: SendReplyInput): { urls: string[]; error: AppError | null } {
  const given = [...(input.mediaUrl ? [input.mediaUrl] : []), ...(input.mediaUrls ?? [])];
  const urls = [...new Set(given.map((url) => url.trim()))];
  if (urls.length > MAX_MEDIA)
    return { urls, error: invalidMessage(`At most ${MAX_MEDIA} media URLs can be attached.`, { maximum: MAX_MEDIA }) };
  for (const url of urls) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(url);
    } catch {
      parsed = null;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || url.length > MAX_MEDIA_URL_LENGTH) {
      return {
        urls,
        error: invalidMessage(`Media URLs must be absolute http(s) URLs: ${JSON.stringify(url.slice(0, 100))}`, { field: 'mediaUrls' }),
      };
    }
  }
  return { urls, error: null };
}

function compose(input: SendReplyInput, shortLinkBase: string, mmsPrice: number): Composition {
  const raw = typeof input.message === 'string' ? input.message : '';
  const media = mediaOf(input);
  const route: 'SMS' | 'MMS' = input.forceRoute === 'MMS' || (input.forceRoute !== 'SMS' && media.urls.length > 0) ? 'MMS' : 'SMS';
  if (bodyLength(raw) > MAX_BODY_CHARACTERS) {
    // Refused before segmenting: the segment calculator takes seconds to minutes on 100k-character inputs.
    const error = media.error ?? invalidMessage(`message must be at most ${MAX_BODY_CHARACTERS} characters.`, { field: 'message', maximum: MAX_BODY_CHARACTERS });
    return { text: raw.slice(0, MAX_BODY_CHARACTERS), links: [], mediaUrls: media.urls, route, encoding: 'GSM-7', segments: 0, credits: 0, error };
  }
  const trimmed = raw.trim();
  const normalized = input.normalizeText === false ? trimmed : normalizeSmsText(trimmed);
  const plan = planShortLinks(normalized, shortLinkBase);
  const measure = measureSmsText(plan.text);
  // An MMS is one message whatever its length; an SMS costs one credit per segment.
  const segments = route === 'MMS' ? 1 : measure.segments;
  const credits = route === 'MMS' ? mmsPrice : measure.segments;

  let error: AppError | null = media.error;
  if (!error && input.forceRoute === 'SMS' && media.urls.length > 0) {
    error = invalidMessage('Media cannot be sent with route SMS: use AUTO or MMS.', { field: 'forceRoute' });
  }
  if (!error && trimmed.length === 0 && media.urls.length === 0) error = invalidMessage('message must not be empty.', { field: 'message' });
  if (!error && bodyLength(raw) > MAX_BODY_CHARACTERS) {
    error = invalidMessage(`message must be at most ${MAX_BODY_CHARACTERS} characters.`, {
      field: 'message',
      maximum: MAX_BODY_CHARACTERS,
    });
  }
  if (!error && bodyLength(plan.text) > MAX_BODY_CHARACTERS) {
    error = invalidMessage(`message is longer than ${MAX_BODY_CHARACTERS} characters once its links are shortened.`, {
      field: 'message',
      maximum: MAX_BODY_CHARACTERS,
    });
  }
  return { text: plan.text, links: plan.links, mediaUrls: media.urls, route, encoding: measure.encoding, segments, credits, error };
}

type Recipient = {
  phoneNumber: string;
  contact: ContactRow;
  from: { id: string; phoneNumber: string };
  shortLinkBase: string;
  balance: number;
};

const RECIPIENT_CONTACT_COLUMNS = columnsOf(contacts, 'c', 'c_');
const readRecipientContact = rowReader(contacts, 'c_');

type RecipientKey = { org: string; phone: string; byId: boolean; wanted: string | null };

/** readRecipients' statement, built once (db/rows.ts): the keys come as one JSON parameter. */
const RECIPIENTS = new HotQuery(
  sql`select x.i, o.credits as o_credits, o.short_link_base_url as o_base, n.id as n_id, n.phone_number as n_phone, ${RECIPIENT_CONTACT_COLUMNS}
    from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(i int, org uuid, phone text, "byId" boolean, wanted uuid)
    join ${organizations} o on o.id = x.org
    left join ${contacts} c on c.organization_id = o.id and c.phone_number = x.phone
    left join lateral (
      select id, phone_number from ${phoneNumbers} p
      where p.organization_id = o.id and case when x."byId" then p.id = x.wanted else p.is_default end
      limit 1
    ) n on true`,
);

/**
 * The organization, the contact and the sending number of every send starting together, in one read
 * (concurrent sends share it, as DataLoader shares a request's reads); undefined for an unknown organization.
 */
async function readRecipients(db: Db, keys: RecipientKey[]): Promise<Settled<Record<string, unknown> | undefined>[]> {
  const input = keys.map((key, i) => ({ i, ...key }));
  const rows = await RECIPIENTS.rows(db, { input: JSON.stringify(input) });
  const byIndex = new Map(rows.map((row) => [Number(row.i), row]));
  return keys.map((_, i) => ({ ok: true, value: byIndex.get(i) }));
}

const recipientBatcherOf = batcherPer(
  (db: Db) =>
    new Batcher<RecipientKey, Record<string, unknown> | undefined>(
      (keys) => writeOrIsolate(keys, (some) => readRecipients(db, some), isDatabaseUnavailable),
      500,
      2,
    ),
);

const contactNotFound = (phoneNumber: string) =>
  new AppError('CONTACT_NOT_FOUND', `No contact with ${phoneNumber} exists in your organization. Create the contact first.`, { phoneNumber });
const contactOptedOut = (phoneNumber: string) =>
  new AppError('CONTACT_OPTED_OUT', `${phoneNumber} has opted out and cannot receive messages.`, { phoneNumber });
const textabilityPending = (phoneNumber: string) =>
  new AppError('CONTACT_TEXTABILITY_PENDING', `The textability lookup for ${phoneNumber} has not completed yet; try again shortly.`, { phoneNumber });
const contactNonTextable = (phoneNumber: string) =>
  new AppError('CONTACT_NON_TEXTABLE', `${phoneNumber} cannot receive text messages (landline, VoIP or invalid).`, { phoneNumber });

/**
 * The first rule the stored contact breaks, in the order sends check them; `pending` while its textability
 * is unknown (resolveRecipient settles that case). Null: the contact can be texted.
 */
function contactRefusal(contact: SenderContact | null, phoneNumber: string): AppError | 'pending' | null {
  if (!contact) return contactNotFound(phoneNumber);
  if (!contact.isOptedIn) return contactOptedOut(phoneNumber);
  if (contact.isTextable === null) return 'pending';
  if (contact.isTextable === false) return contactNonTextable(phoneNumber);
  return null;
}

/** No sending number: the one asked for is not the organization's, or it has no default. */
function fromNumberRefusal(wanted: string | undefined): AppError {
  if (wanted) {
    return new AppError('FROM_NUMBER_FORBIDDEN', 'The specified fromPhoneNumberId does not belong to your organization.', {
      fromPhoneNumberId: wanted.slice(0, 100),
    });
  }
  return new AppError('NO_FROM_NUMBER', 'Your organization has no default phone number configured.');
}

/** How a send names its sending number to the SQL: the number asked for when it is an id at all (no match otherwise), else the default one. */
function numberWanted(input: SendReplyInput): { wanted: string | undefined; byId: boolean; wantedId: string | null } {
  const wanted = input.fromPhoneNumberId?.trim();
  return { wanted, byId: Boolean(wanted), wantedId: wanted && isUuid(wanted) ? wanted : null };
}

/** Contact, sending number and organization settings; the first rule broken comes back as an AppError. */
async function resolveRecipient(
  deps: Deps,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
): Promise<Recipient | AppError> {
  const { wanted, byId, wantedId } = numberWanted(input);
  const row = await recipientBatcherOf(deps.db).submit({ org: organizationId, phone: phoneNumber, byId, wanted: wantedId });
  if (!row) return new AppError('NOT_FOUND', 'Organization not found.');

  let contact = row.c_id === null || row.c_id === undefined ? null : readRecipientContact(row);
  let refusal = contactRefusal(contact, phoneNumber);
  if (refusal === 'pending' && (await hasInboundFrom(deps.db, organizationId, phoneNumber))) {
    // A number that texted us can receive texts, whatever a pending lookup will say.
    const [updated] = await deps.db
      .update(contacts)
      .set({ isTextable: true, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact!.id)))
      .returning();
    contact = updated ?? contact;
    refusal = contactRefusal(contact, phoneNumber);
  }
  if (refusal === 'pending') {
    // Make sure a lookup is under way (it may have been lost to a restart); the send is refused meanwhile.
    void deps.textability.check(contact!);
    return textabilityPending(phoneNumber);
  }
  if (refusal) return refusal;

  const from = row.n_id ? { id: row.n_id as string, phoneNumber: row.n_phone as string } : undefined;
  if (!from) return fromNumberRefusal(wanted);
  const shortLinkBase = (row.o_base as string | null) ?? deps.config.publicBaseUrl;
  return { phoneNumber, contact: contact!, from, shortLinkBase, balance: Number(row.o_credits) };
}

function insufficientCredits(required: number, balance: number) {
  return new AppError('INSUFFICIENT_CREDITS', `Sending needs ${required} credits; the balance is ${balance}.`, { required, balance });
}

/** Our error for a provider refusal; built from the code alone so an idempotent replay gets the same one. */
export function providerFailure(errorCode: number | null, phoneNumber: string): AppError {
  switch (errorCode) {
    case PROVIDER_ERRORS.UNSUBSCRIBED:
      return new AppError('CONTACT_OPTED_OUT', `${phoneNumber} has unsubscribed from this sender (provider error 21610).`, {
        phoneNumber,
        providerErrorCode: errorCode,
      });
    case PROVIDER_ERRORS.INVALID_TO:
    case PROVIDER_ERRORS.NOT_MOBILE:
      return new AppError('CONTACT_NON_TEXTABLE', `${phoneNumber} cannot receive text messages (provider error ${errorCode}).`, {
        phoneNumber,
        providerErrorCode: errorCode,
      });
    case null:
      return new AppError('PROVIDER_ERROR', 'The SMS provider could not be reached; nothing was charged.', { providerErrorCode: null });
    default:
      return new AppError('PROVIDER_ERROR', `The SMS provider rejected the message (Twilio error ${errorCode}); nothing was charged.`, {
        providerErrorCode: errorCode,
      });
  }
}

// Module-level: made once, not on every send.
const invalid = (field: string, expected: string) => new AppError('INVALID_PARAMETER', `${field} must be ${expected}.`, { field });
const optional = (value: unknown) => value === null || value === undefined;

/** Shape checks for callers without a schema (REST bodies): wrong types are INVALID_PARAMETER, not a crash. */
function checkShape(input: SendReplyInput): AppError | null {
  if (typeof input.message !== 'string') return invalidMessage('message must be a string.', { field: 'message' });
  if (!optional(input.mediaUrl) && typeof input.mediaUrl !== 'string') return invalid('mediaUrl', 'a string');
  if (!optional(input.mediaUrls) && !(Array.isArray(input.mediaUrls) && input.mediaUrls.every((url) => typeof url === 'string'))) {
    return invalid('mediaUrls', 'an array of strings');
  }
  if (!optional(input.normalizeText) && typeof input.normalizeText !== 'boolean') return invalid('normalizeText', 'a boolean');
  if (!optional(input.forceRoute) && !['AUTO', 'SMS', 'MMS'].includes(input.forceRoute as string))
    return invalid('forceRoute', 'AUTO, SMS or MMS');
  if (!optional(input.fromPhoneNumberId) && typeof input.fromPhoneNumberId !== 'string') return invalid('fromPhoneNumberId', 'a string');
  return null;
}

function checkIdempotencyKey(key: string | null | undefined): string | null | AppError {
  if (key === null || key === undefined) return null;
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    return new AppError('INVALID_PARAMETER', `idempotencyKey must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`, {
      field: 'idempotencyKey',
    });
  }
  return key;
}

/** What sendReply would do, without storing, sending or charging anything. */
export async function previewReply(deps: Deps, organizationId: string, input: SendReplyInput): Promise<ReplyPreview> {
  const shapeError = checkShape(input);
  if (shapeError) throw shapeError;
  const phoneNumber = normalizePhone(input.phoneNumber);
  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
  const base = recipient instanceof AppError ? await shortLinkBaseOf(deps, organizationId) : recipient.shortLinkBase;
  const composed = compose(input, base, deps.config.mmsCreditPrice);
  const preview = {
    text: composed.text,
    encoding: composed.encoding,
    segments: composed.segments,
    route: composed.route,
    credits: composed.credits,
  };
  if (composed.error) return { ...preview, error: composed.error };
  if (recipient instanceof AppError) return { ...preview, error: recipient };
  const error = recipient.balance < composed.credits ? insufficientCredits(composed.credits, recipient.balance) : null;
  return { ...preview, error };
}

async function shortLinkBaseOf(deps: Deps, organizationId: string): Promise<string> {
  const [org] = await deps.db
    .select({ base: organizations.shortLinkBaseUrl })
    .from(organizations)
    .where(eq(organizations.id, organizationId));
  return org?.base ?? deps.config.publicBaseUrl;
}

/** Thrown inside the transaction of a send with links to undo it (the links with the reservation), carrying why. */
class RollBack extends Error {
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
type DirectSend = {
  deps: Deps;
  organizationId: string;
  phoneNumber: string;
  byId: boolean;
  wantedId: string | null;
  composed: Composition;
  messageId: string;
  key: string | null;
  /** When the send was made: its message's time. */
  at: string;
};

const directBatcherOf = batcherPer(
  (db: Db) =>
    new Batcher<DirectSend, Record<string, unknown>>(
      (items) => writeOrIsolate(items, (some) => reserveDirect(db, some), isDatabaseUnavailable),
      200,
      2,
    ),
);

/** What a send needs of its contact: the rules (contactRefusal) and, for a provider refusal, its id. */
const SENDER_KEYS = ['id', 'isOptedIn', 'isTextable'] as const;
type SenderContact = Pick<ContactRow, (typeof SENDER_KEYS)[number]>;
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
  updated_at = now()`;

/** reserveDirect's statement, built once (db/rows.ts): the sends come as one JSON parameter. */
const RESERVE = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(
          i int, org uuid, phone text, "byId" boolean, wanted uuid, id uuid, body text, media text[], provider text,
          segments int, encoding text, credits int, key text, at timestamptz, eid uuid)
      ), cur as (
        -- One key lookup per send, in (organization, number) order, each row share-locked as it is found
        -- (consent is decided under the lock: a STOP committed first wins, one arriving now waits for us).
        select x.i, c.id, c.is_opted_in, c.is_textable
        from (select i, org, phone from x order by org, phone) x
        cross join lateral (
          select id, is_opted_in, is_textable from ${contacts} where organization_id = x.org and phone_number = x.phone for share
        ) c
      ), num as (
        select x.i, n.id as number_id, n.phone_number as number_phone
        from x cross join lateral (
          select id, phone_number from ${phoneNumbers} p
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
          segments, encoding, credits_charged, idempotency_key, created_at, updated_at)
        select a.org, a.id, conv.id, 'outgoing', a.body, a.media, 'queued', a.provider, a.number_id, a.segments, a.encoding, a.credits, a.key,
          a.at, a.at
        from accepted a join conv on conv.organization_id = a.org and conv.phone_number = a.phone
        order by a.i
        returning *
      ), queued as (
        insert into ${messageStatusEvents} (organization_id, id, message_id, status)
        select ins.organization_id, x.eid, ins.id, 'queued' from ins join x on x.id = ins.id
      )
      select x.i, (bal.id is not null) as org_found, num.number_id as n_id, num.number_phone as n_phone,
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
  const input = items.map(({ deps, organizationId, phoneNumber, byId, wantedId, composed, messageId, key, at }, i) => ({
    i,
    org: organizationId,
    phone: phoneNumber,
    byId,
    wanted: wantedId,
    id: messageId,
    body: composed.text,
    media: composed.mediaUrls,
    provider: deps.sms.name,
    segments: composed.segments,
    encoding: composed.encoding,
    credits: composed.credits,
    key,
    at,
    // The queued event's id, time-ordered (see ids.ts) as the message's own.
    eid: uuidv7(),
  }));
  const rows = await RESERVE.rows(db, { input: JSON.stringify(input) });
  const byIndex = new Map(rows.map((row) => [Number(row.i), row]));
  return items.map((_, i) => ({ ok: true, value: byIndex.get(i)! }));
}

type Sender = { contact: SenderContact; from: { id: string; phoneNumber: string } };

type DirectOutcome =
  | ({ kind: 'reserved'; message: MessageRow } & Sender)
  | { kind: 'refused'; error: AppError }
  | { kind: 'credits' }
  /** The contact's textability is not known yet: resolveRecipient settles it (or refuses). */
  | { kind: 'pending' };

/** A send without links: reserved in one statement (reserveDirect), or why not. Throws on a taken idempotency key. */
async function reserveWithoutLinks(
  deps: Deps,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
  composed: Composition,
  key: string | null,
): Promise<DirectOutcome> {
  const { wanted, byId, wantedId } = numberWanted(input);
  const send: DirectSend = { deps, organizationId, phoneNumber, byId, wantedId, composed, messageId: uuidv7(), key, at: new Date().toISOString() };
  let row = await directBatcherOf(deps.db).submit(send);
  // The batch's credits ran out before this send: alone, it is charged if the balance covers it now.
  if (row.eligible && !row.accepted) row = await reserveAlone(deps.db, send);
  return directOutcome(row, phoneNumber, wanted);
}

async function reserveAlone(db: DbOrTx, send: DirectSend): Promise<Record<string, unknown>> {
  const [result] = await reserveDirect(db, [send]);
  if (!result!.ok) throw result!.error;
  return result!.value;
}

/** What reserveDirect's row for one send says: reserved, or why not (the rules in the order sends check them). */
function directOutcome(row: Record<string, unknown>, phoneNumber: string, wanted: string | undefined): DirectOutcome {
  if (!row.org_found) return { kind: 'refused', error: new AppError('NOT_FOUND', 'Organization not found.') };
  const contact = row.c_id === null || row.c_id === undefined ? null : readDirectContact(row);
  const refusal = contactRefusal(contact, phoneNumber);
  if (refusal === 'pending') return { kind: 'pending' };
  if (refusal) return { kind: 'refused', error: refusal };
  if (!row.n_id) return { kind: 'refused', error: fromNumberRefusal(wanted) };
  if (!row.accepted) return { kind: 'credits' };
  return { kind: 'reserved', message: readMessage(row), contact: contact!, from: { id: row.n_id as string, phoneNumber: row.n_phone as string } };
}


/** The unique violation of messages_org_idempotency_key: another send took this idempotency key first. */
function isKeyCollision(error: unknown): boolean {
  return violatedUniqueConstraint(error) === 'messages_org_idempotency_key';
}

/**
 * writeAnswers' statement, built once. It stores an answer only while the send still waits for one
 * (queued, no provider id): the sweep of sends in doubt may have settled it. It returns only the columns it
 * sets: nothing else of a message changes while its send is in flight, so the row reserved plus these is
 * the stored row.
 */
const ANSWERS = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(i int, org uuid, id uuid, sid text, status text, eid uuid)
      ), answered as (
        update ${messages} set provider_message_id = x.sid, status = x.status, updated_at = now()
        from x where ${messages}.organization_id = x.org and ${messages}.id = x.id
          and ${messages}.status = 'queued' and ${messages}.provider_message_id is null
        returning ${messages}.organization_id, ${messages}.id, ${messages}.status, ${messages}.provider_message_id, ${messages}.updated_at
      ), moved as (
        insert into ${messageStatusEvents} (organization_id, id, message_id, status)
        select a.organization_id, x.eid, a.id, a.status from answered a join x on x.id = a.id where a.status <> 'queued'
      )
      select * from answered`,
);

type Answer = { organizationId: string; messageId: string; providerMessageId: string; status: string };
const ANSWERED_KEYS = ['id', 'status', 'providerMessageId', 'updatedAt'] as const;
type Answered = Pick<MessageRow, (typeof ANSWERED_KEYS)[number]>;
const readAnswered = rowReader(messages, '', ANSWERED_KEYS) as (row: Record<string, unknown>) => Answered;

/**
 * The provider's answers of the sends finishing together, in one statement (atomic by itself): each
 * message's provider id and status, and a status event where it moved past queued.
 */
async function writeAnswers(db: Db, answers: Answer[]): Promise<Settled<Answered | null>[]> {
  const input = answers.map((answer, i) => ({
    i,
    org: answer.organizationId,
    id: answer.messageId,
    sid: answer.providerMessageId,
    status: answer.status,
    eid: uuidv7(),
  }));
  const rows = await ANSWERS.rows(db, { input: JSON.stringify(input) });
  const byId = new Map(rows.map((row) => [row.id as string, readAnswered(row)]));
  // Null: settled meanwhile (or gone).
  return answers.map((answer) => ({ ok: true, value: byId.get(answer.messageId) ?? null }));
}

// Two batches of answers at once: answers touch distinct messages, so a second batch never waits on the
// first one's locks, only runs while it commits.
const answerBatcherOf = batcherPer(
  (db: Db) => new Batcher<Answer, Answered | null>((answers) => writeOrIsolate(answers, (some) => writeAnswers(db, some), isDatabaseUnavailable), 500, 2),
);

/**
 * Stores the provider's answer to a reserved send, batched with the answers arriving together: its
 * provider id, and its status where that moved past queued (subscribers are told). Null when the send was
 * settled meanwhile, by its own call or by the sweep of sends in doubt.
 */
export async function storeProviderAnswer(
  deps: Pick<Deps, 'db' | 'events'>,
  organizationId: string,
  queued: Pick<MessageRow, 'id' | 'conversationId'>,
  providerMessageId: string,
  status: string,
): Promise<Answered | null> {
  const moves = statusMovesForward('queued', status) ? status : 'queued';
  const answered = await answerBatcherOf(deps.db).submit({ organizationId, messageId: queued.id, providerMessageId, status: moves });
  if (answered && answered.status !== 'queued') {
    deps.events.publish('messageStatusChanged', organizationId, { messageId: queued.id, conversationId: queued.conversationId });
  }
  return answered;
}

export async function sendReply(deps: Deps, organizationId: string, input: SendReplyInput): Promise<SendReplyOutcome> {
  const shapeError = checkShape(input);
  if (shapeError) return { ok: false, error: shapeError };
  const key = checkIdempotencyKey(input.idempotencyKey);
  if (key instanceof AppError) return { ok: false, error: key };
  let phoneNumber: string;
  try {
    phoneNumber = normalizePhone(input.phoneNumber);
  } catch (error) {
    if (error instanceof AppError) return { ok: false, error };
    throw error;
  }
  if (key) {
    const first = await messageByIdempotencyKey(deps, organizationId, key);
    if (first) return replay(deps, organizationId, first);
  }

  // 1-2. Without links the text does not depend on the organization's short-link base, so the send is
  // checked and reserved in one statement (reserveWithoutLinks); with links they are stored first, in a
  // transaction with the reservation.
  const draft = compose(input, deps.config.publicBaseUrl, deps.config.mmsCreditPrice);
  if (draft.links.length > 0) return sendWithLinks(deps, organizationId, phoneNumber, input, key);
  if (draft.error) return { ok: false, error: draft.error };
  let direct: DirectOutcome;
  try {
    direct = await reserveWithoutLinks(deps, organizationId, phoneNumber, input, draft, key);
    if (direct.kind === 'pending') {
      // Settles the contact's textability (or refuses the send) as a send with links would, then once more.
      const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
      if (recipient instanceof AppError) return { ok: false, error: recipient };
      direct = await reserveWithoutLinks(deps, organizationId, phoneNumber, input, draft, key);
    }
  } catch (caught) {
    // Only the idempotency key can collide here: another call with this key got there first, and the
    // statement was undone whole.
    if (!isKeyCollision(caught)) throw caught;
    return afterRefusedReservation(deps, organizationId, input, key, 'duplicate', draft.credits);
  }
  if (direct.kind === 'refused') return { ok: false, error: direct.error };
  if (direct.kind === 'credits') return afterRefusedReservation(deps, organizationId, input, key, 'credits', draft.credits);
  if (direct.kind === 'pending') return { ok: false, error: textabilityPending(phoneNumber) };
  return deliver(deps, organizationId, phoneNumber, direct.message, direct, draft.route);
}

/**
 * A reservation that wrote nothing, for want of credits or because another send holds its idempotency key:
 * a first send with this key that committed meanwhile is the answer; otherwise the credits were short.
 */
async function afterRefusedReservation(
  deps: Deps,
  organizationId: string,
  input: SendReplyInput,
  key: string | null,
  reason: 'credits' | 'duplicate',
  credits: number,
): Promise<SendReplyOutcome> {
  if (key) {
    const first = await messageByIdempotencyKey(deps, organizationId, key);
    if (first) return replay(deps, organizationId, first);
    // The first attempt rolled back after we looked (it ran out of credits): try again from the top.
    if (reason === 'duplicate') return sendReply(deps, organizationId, input);
  }
  const balance = (await creditBalance(deps.db, organizationId)) ?? 0;
  return { ok: false, error: insufficientCredits(credits, balance) };
}

/** A send whose text has links: the links and the reservation are stored in one transaction. */
async function sendWithLinks(
  deps: Deps,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
  key: string | null,
): Promise<SendReplyOutcome> {
  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
  const composed = compose(
    input,
    recipient instanceof AppError ? deps.config.publicBaseUrl : recipient.shortLinkBase,
    deps.config.mmsCreditPrice,
  );
  if (composed.error) return { ok: false, error: composed.error };
  if (recipient instanceof AppError) return { ok: false, error: recipient };

  const { wanted, byId, wantedId } = numberWanted(input);
  let reserved: Extract<DirectOutcome, { kind: 'reserved' }>;
  try {
    const messageId = uuidv7();
    reserved = await deps.db.transaction(async (tx) => {
      const links = await storeShortLinks(tx, organizationId, messageId, { text: composed.text, links: composed.links });
      // The same statement as sends without links, alone: consent is checked again under the contact's
      // share lock, so a STOP committed since the read above wins.
      const send: DirectSend = {
        deps,
        organizationId,
        phoneNumber,
        byId,
        wantedId,
        composed: { ...composed, text: links.text },
        messageId,
        key,
        at: new Date().toISOString(),
      };
      const outcome = directOutcome(await reserveAlone(tx, send), phoneNumber, wanted);
      // Nothing was written but the links: undo them.
      if (outcome.kind !== 'reserved') throw new RollBack(outcome);
      return outcome;
    });
  } catch (caught) {
    // Only the idempotency key can collide here: another call with this key got there first, and the
    // transaction was undone whole.
    if (isKeyCollision(caught)) return afterRefusedReservation(deps, organizationId, input, key, 'duplicate', composed.credits);
    if (!(caught instanceof RollBack)) throw caught;
    const reason = caught.result;
    if (reason.kind === 'refused') return { ok: false, error: reason.error };
    if (reason.kind === 'pending') return { ok: false, error: textabilityPending(phoneNumber) };
    return afterRefusedReservation(deps, organizationId, input, key, 'credits', composed.credits);
  }
  return deliver(deps, organizationId, phoneNumber, reserved.message, reserved, composed.route);
}

/** Steps 3 and 4 of a reserved send: the provider, then its answer (or the refund). */
async function deliver(
  deps: Deps,
  organizationId: string,
  phoneNumber: string,
  queued: MessageRow,
  recipient: Sender,
  route: 'SMS' | 'MMS',
): Promise<SendReplyOutcome> {
  deps.events.publish('conversationUpdated', organizationId, { conversationId: queued.conversationId });

  // 3. The provider, outside any transaction.
  let result: SendResult;
  try {
    result = await deps.sms.send({
      organizationId,
      messageId: queued.id,
      to: phoneNumber,
      from: recipient.from.phoneNumber,
      body: queued.body,
      mediaUrls: queued.mediaUrls,
      sendAsMms: route === 'MMS',
      statusCallbackUrl: `${deps.config.publicBaseUrl}/webhooks/twilio/status`,
    });
  } catch (error) {
    // Providers report failures as values; a throw is a bug, and still must not keep the credits.
    deps.logger.error({ err: error, messageId: queued.id }, 'SMS provider threw');
    result = { ok: false, errorCode: null, message: error instanceof Error ? error.message : String(error) };
  }

  // 4. Record the answer.
  if (result.ok) {
    const answered = await storeProviderAnswer(deps, organizationId, queued, result.providerMessageId, result.status);
    if (!answered) throw new Error(`message ${queued.id} was settled before its answer was stored`);
    return success({ ...queued, ...answered });
  }

  deps.logger.warn({ messageId: queued.id, errorCode: result.errorCode, providerMessage: result.message }, 'provider refused a reply');
  await failReservedSend(deps, organizationId, queued, result.errorCode, recipient.contact);
  return { ok: false, error: providerFailure(result.errorCode, phoneNumber) };
}

/**
 * Fails a reserved send the provider refused or never got, and refunds its credits, in one transaction;
 * only while it still waits for its answer (queued, no provider id), so a send settled twice (by its own
 * call and by the sweep of sends in doubt) is refunded once. Null when it had been settled already.
 */
export async function failReservedSend(
  deps: Pick<Deps, 'db' | 'events'>,
  organizationId: string,
  queued: Pick<MessageRow, 'id' | 'creditsCharged'>,
  errorCode: number | null,
  contact: Pick<SenderContact, 'id'> | null,
): Promise<MessageRow | null> {
  const failed = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .update(messages)
      .set({ status: 'failed', errorCode, creditsCharged: 0, updatedAt: sql`now()` })
      .where(
        and(
          eq(messages.organizationId, organizationId),
          eq(messages.id, queued.id),
          eq(messages.status, 'queued'),
          isNull(messages.providerMessageId),
        ),
      )
      .returning();
    if (!row) return null;
    await refundCredits(tx, organizationId, queued.creditsCharged);
    await tx.insert(messageStatusEvents).values({ organizationId, id: uuidv7(), messageId: queued.id, status: 'failed', errorCode });
    if (contact) await applyRecipientError(tx, organizationId, contact, queued.id, errorCode);
    return row;
  });
  if (failed) {
    deps.events.publish('messageStatusChanged', organizationId, { messageId: failed.id, conversationId: failed.conversationId });
    deps.events.publish('conversationUpdated', organizationId, { conversationId: failed.conversationId });
  }
  return failed;
}

/** What a provider refusal tells us about the recipient: 21610 opted out, 21211/21614 not textable. */
async function applyRecipientError(tx: Tx, organizationId: string, contact: Pick<SenderContact, 'id'>, messageId: string, errorCode: number | null) {
  if (errorCode === PROVIDER_ERRORS.UNSUBSCRIBED) {
    const [changed] = await tx
      .update(contacts)
      .set({ isOptedIn: false, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id), eq(contacts.isOptedIn, true)))
      .returning({ id: contacts.id });
    if (changed) {
      await tx
        .insert(consentEvents)
        .values({ organizationId, contactId: contact.id, kind: 'opt_out', keyword: null, messageId, source: 'provider_error' });
    }
  } else if (errorCode === PROVIDER_ERRORS.INVALID_TO || errorCode === PROVIDER_ERRORS.NOT_MOBILE) {
    await tx
      .update(contacts)
      .set({ isTextable: false, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id)));
  }
}

function success(message: MessageRow): SendReplyOutcome {
  return {
    ok: true,
    message,
    provider: message.provider ?? 'unknown',
    providerMessageId: message.providerMessageId,
    segments: message.segments ?? 1,
    encoding: (message.encoding as Encoding | null) ?? 'GSM-7',
    creditsCharged: message.creditsCharged,
  };
}

async function messageByIdempotencyKey(deps: Deps, organizationId: string, key: string): Promise<MessageRow | null> {
  const [row] = await deps.db
    .select()
    .from(messages)
    .where(and(eq(messages.organizationId, organizationId), eq(messages.idempotencyKey, key)))
    .limit(1);
  return row ?? null;
}

/** A send still waiting for the provider's answer: queued, no provider id, no error. */
const inFlight = (message: MessageRow) => message.status === 'queued' && message.providerMessageId === null && message.errorCode === null;

/** The first result for an idempotency key; waits while the first attempt is still talking to the provider. */
async function replay(deps: Deps, organizationId: string, first: MessageRow): Promise<SendReplyOutcome> {
  let message = first;
  const deadline = Date.now() + deps.config.smsProviderTimeoutMs + 5_000;
  while (inFlight(message) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    message = (await messageByIdempotencyKey(deps, organizationId, first.idempotencyKey!)) ?? message;
  }
  if (message.providerMessageId === null && message.status === 'failed') {
    const [conversation] = await deps.db
      .select({ phoneNumber: conversations.phoneNumber })
      .from(conversations)
      .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, message.conversationId)));
    return { ok: false, error: providerFailure(message.errorCode, conversation?.phoneNumber ?? '') };
  }
  return success(message);
}
