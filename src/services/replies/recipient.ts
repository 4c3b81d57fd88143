import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { isDatabaseUnavailable } from '../../db/failures.js';
import { columnsOf, HotQuery, rowReader } from '../../db/rows.js';
import { contacts, organizations, phoneNumbers, type ContactRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import { Batcher, instanceBatcher, writeOrIsolate, type Settled } from '../batcher.js';
import { hasInboundFrom } from '../contacts.js';
import { isUuid } from '../cursors.js';
import type { ServiceDeps } from '../deps.js';
import { contactRefusal, fromNumberRefusal, textabilityPending } from './refusals.js';
import type { SendReplyInput } from './types.js';

/** What reading a send's recipient needs: the database, the textability lookup, the public base URL. */
export type RecipientDeps = Pick<ServiceDeps, 'db' | 'textability' | 'config' | 'state'>;

export type Recipient = {
  phoneNumber: string;
  contact: ContactRow;
  from: { id: string; phoneNumber: string; messagingServiceSid: string | null };
  shortLinkBase: string;
  balance: number;
};

const RECIPIENT_CONTACT_COLUMNS = columnsOf(contacts, 'c', 'c_');
const readRecipientContact = rowReader(contacts, 'c_');

type RecipientKey = { org: string; phone: string; byId: boolean; wanted: string | null };

/** readRecipients' statement, built once (db/rows.ts): the keys come as one JSON parameter. */
const RECIPIENTS = new HotQuery(
  sql`select x.i, o.credits as o_credits, o.short_link_base_url as o_base, n.id as n_id, n.phone_number as n_phone, n.messaging_service_sid as n_mg, ${RECIPIENT_CONTACT_COLUMNS}
    from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(i int, org uuid, phone text, "byId" boolean, wanted uuid)
    join ${organizations} o on o.id = x.org
    left join ${contacts} c on c.organization_id = o.id and c.phone_number = x.phone
    left join lateral (
      select id, phone_number, messaging_service_sid from ${phoneNumbers} p
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

const recipientBatcherOf = instanceBatcher(
  'reply recipients',
  ({ db }) =>
    new Batcher<RecipientKey, Record<string, unknown> | undefined>(
      (keys) => writeOrIsolate(keys, (some) => readRecipients(db, some), isDatabaseUnavailable),
      500,
      2,
    ),
);

/** How a send names its sending number to the SQL: the number asked for when it is an id at all (no match otherwise), else the default one. */
export function numberWanted(input: SendReplyInput): { wanted: string | undefined; byId: boolean; wantedId: string | null } {
  const wanted = input.fromPhoneNumberId?.trim();
  return { wanted, byId: Boolean(wanted), wantedId: wanted && isUuid(wanted) ? wanted : null };
}

/** Contact, sending number and organization settings; the first rule broken comes back as an AppError. */
export async function resolveRecipient(
  deps: RecipientDeps,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
  /** `preview` stores nothing: previewReply is a query, which may run on a read replica. */
  mode: 'send' | 'preview' = 'send',
): Promise<Recipient | AppError> {
  const { wanted, byId, wantedId } = numberWanted(input);
  const row = await recipientBatcherOf(deps).submit({ org: organizationId, phone: phoneNumber, byId, wanted: wantedId });
  if (!row) return new AppError('NOT_FOUND', 'Organization not found.');

  let contact = row.c_id === null || row.c_id === undefined ? null : readRecipientContact(row);
  let refusal = contactRefusal(contact, phoneNumber);
  if (refusal === 'pending' && (await hasInboundFrom(deps.db, organizationId, phoneNumber))) {
    // A number that texted us can receive texts, whatever a pending lookup will say (stored by the send).
    const [updated] =
      mode === 'preview'
        ? [{ ...contact!, isTextable: true }]
        : await deps.db
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

  const from = row.n_id ? { id: row.n_id as string, phoneNumber: row.n_phone as string, messagingServiceSid: (row.n_mg as string | null) ?? null } : undefined;
  if (!from) return fromNumberRefusal(wanted);
  const shortLinkBase = (row.o_base as string | null) ?? deps.config.publicBaseUrl;
  return { phoneNumber, contact: contact!, from, shortLinkBase, balance: Number(row.o_credits) };
}

export async function shortLinkBaseOf(deps: Pick<ServiceDeps, 'db' | 'config'>, organizationId: string): Promise<string> {
  const [org] = await deps.db
    .select({ base: organizations.shortLinkBaseUrl })
    .from(organizations)
    .where(eq(organizations.id, organizationId));
  return org?.base ?? deps.config.publicBaseUrl;
}
