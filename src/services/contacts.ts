import { and, eq, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { Db, DbOrTx } from '../db/client.js';
import { violatedForeignKey } from '../db/failures.js';
import { rawRows, rowReader } from '../db/rows.js';
import { contacts, conversations, messages, type ContactRow } from '../db/tables.js';
import { notes } from '../db/teamwork-tables.js';
import { AppError, badUserInput } from '../errors.js';
import { requireRole } from './access.js';
import { recordAudit } from './audit.js';
import type { Caller } from './auth.js';
import { changeConsent } from './consent.js';
import { cleanCustomFields, cleanTags, sameCustomFields, sameTags } from './contact-fields.js';
import { decodeCursor, encodeCursor, isUuid } from './cursors.js';
import { pageLimit } from './pages.js';
import { normalizePhone } from './phone.js';

export type NewContact = {
  phoneNumber: string;
  firstName?: string | null;
  lastName?: string | null;
  isOptedIn?: boolean;
  /** true, false, or null while a textability lookup is pending. */
  isTextable?: boolean | null;
  /** Cleaned by cleanTags (contact-fields.ts). */
  tags?: readonly string[] | null;
  /** Cleaned by cleanCustomFields (contact-fields.ts). */
  customFields?: Record<string, unknown> | null;
};

/** Longest first or last name kept; longer is BAD_USER_INPUT rather than megabytes in every inbox row. */
export const MAX_NAME_LENGTH = 200;

export const cleanName = (name: string | null | undefined) => {
  const trimmed = name?.trim();
  if (trimmed && trimmed.length > MAX_NAME_LENGTH) {
    throw new AppError('BAD_USER_INPUT', `Names must be at most ${MAX_NAME_LENGTH} characters.`, { maximum: MAX_NAME_LENGTH });
  }
  return trimmed ? trimmed : null;
};

/** Creates a contact; CONTACT_ALREADY_EXISTS when the organization has one with this number. */
export async function createContact(db: DbOrTx, organizationId: string, input: NewContact) {
  const phoneNumber = normalizePhone(input.phoneNumber);
  const values = {
    organizationId,
    phoneNumber,
    firstName: cleanName(input.firstName),
    lastName: cleanName(input.lastName),
    isOptedIn: input.isOptedIn ?? true,
    isTextable: input.isTextable === undefined ? null : input.isTextable,
    tags: cleanTags(input.tags ?? []),
    customFields: cleanCustomFields(input.customFields ?? {}),
  };
  const [row] = await db
    .insert(contacts)
    .values(values)
    .onConflictDoNothing({ target: [contacts.organizationId, contacts.phoneNumber] })
    .returning();
  if (!row) throw new AppError('CONTACT_ALREADY_EXISTS', `A contact with ${phoneNumber} already exists.`, { phoneNumber });
  // A conversation may predate the contact (an unknown sender); link it.
  await db
    .update(conversations)
    .set({ contactId: row.id, updatedAt: sql`now()` })
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.phoneNumber, phoneNumber)));
  return row;
}

export async function contactsByIds(db: DbOrTx, organizationId: string, ids: readonly string[]) {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return db.select().from(contacts).where(and(eq(contacts.organizationId, organizationId), inArray(contacts.id, valid)));
}

export async function contactsByPhones(db: DbOrTx, organizationId: string, phones: readonly string[]) {
  if (phones.length === 0) return [];
  return db
    .select()
    .from(contacts)
    .where(and(eq(contacts.organizationId, organizationId), inArray(contacts.phoneNumber, [...phones])));
}

export type ContactPatch = {
  /** undefined: unchanged; null or blank: cleared. */
  firstName?: string | null;
  lastName?: string | null;
  isOptedIn?: boolean;
  /** undefined: unchanged; otherwise replaces them (null or empty: none). */
  tags?: readonly string[] | null;
  /** undefined: unchanged; otherwise replaces them (null or empty: none). */
  customFields?: Record<string, unknown> | null;
};

/**
 * Changes a contact's names, tags, custom fields and consent; a consent change is kept in the contact's history
 * (source `api`). Only values that differ are written, and updated_at moves when one does.
 * CONTACT_NOT_FOUND when the organization has no such contact; BAD_USER_INPUT (nothing written) for a bad value.
 */
export async function updateContact(db: DbOrTx, organizationId: string, contactId: string, patch: ContactPatch) {
  if (!isUuid(contactId)) throw new AppError('CONTACT_NOT_FOUND', 'No contact with this id in your organization.', { contactId });
  // Checked before the transaction: a bad value changes nothing, consent included.
  const firstName = patch.firstName === undefined ? undefined : cleanName(patch.firstName);
  const lastName = patch.lastName === undefined ? undefined : cleanName(patch.lastName);
  const tags = patch.tags === undefined ? undefined : cleanTags(patch.tags ?? []);
  const customFields = patch.customFields === undefined ? undefined : cleanCustomFields(patch.customFields ?? {});
  return db.transaction(async (tx) => {
    // Row lock: concurrent consent changes are recorded in the order they apply.
    const [current] = await tx
      .select()
      .from(contacts)
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contactId)))
      .for('update');
    if (!current) throw new AppError('CONTACT_NOT_FOUND', 'No contact with this id in your organization.', { contactId });
    const set: Partial<typeof contacts.$inferInsert> = {};
    if (firstName !== undefined && firstName !== current.firstName) set.firstName = firstName;
    if (lastName !== undefined && lastName !== current.lastName) set.lastName = lastName;
    if (tags !== undefined && !sameTags(tags, current.tags)) set.tags = tags;
    if (customFields !== undefined && !sameCustomFields(customFields, current.customFields)) set.customFields = customFields;
    let row = current;
    if (patch.isOptedIn !== undefined && patch.isOptedIn !== current.isOptedIn) {
      const changed = await changeConsent(tx, organizationId, { contactId }, {
        kind: patch.isOptedIn ? 'opt_in' : 'opt_out',
        keyword: null,
        messageId: null,
        source: 'api',
      });
      // The row is locked above, so the change applies.
      row = changed!.contact;
    }
    if (Object.keys(set).length === 0) return row;
    const [updated] = await tx
      .update(contacts)
      .set({ ...set, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contactId)))
      .returning();
    return updated!;
  });
}

/** Whether the number has ever texted the organization: such a contact is textable whatever a lookup says. */
export async function hasInboundFrom(db: DbOrTx, organizationId: string, phoneNumber: string): Promise<boolean> {
  const rows = await db
    .select({ one: sql<number>`1` })
    .from(messages)
    .innerJoin(conversations, and(eq(conversations.organizationId, messages.organizationId), eq(conversations.id, messages.conversationId)))
    .where(
      and(
        eq(conversations.organizationId, organizationId),
        eq(conversations.phoneNumber, phoneNumber),
        eq(messages.organizationId, organizationId),
        eq(messages.direction, 'incoming'),
      ),
    )
    .limit(1);
  return rows.length > 0;
}

export type ContactFilter = {
  /** First or last name (case-insensitive, partial), or phone digits in any format ("(415) 555" finds +14155550123). */
  search?: string | null;
  /** Contacts with any (ANY, the default) or all (ALL) of these tags; cleaned like stored tags. Empty: no condition. */
  tags?: readonly string[] | null;
  tagsMode?: 'ANY' | 'ALL' | null;
  /** true: textable; false: not textable. A pending lookup (null) matches neither. */
  isTextable?: boolean | null;
  /** true: opted out; false: opted in. */
  optedOut?: boolean | null;
};

const MAX_SEARCH_LENGTH = 200;

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

export const contactCursor = (organizationId: string, row: Pick<ContactRow, 'updatedAt' | 'id'>) =>
  encodeCursor('contact', organizationId, { at: row.updatedAt, id: row.id });

/** The page's conditions: the organization, the cursor, then the filters (all checked along the index walk). */
function pageConditions(organizationId: string, after: string | null | undefined, filter: ContactFilter): SQL[] {
  const conditions: SQL[] = [eq(contacts.organizationId, organizationId)];
  if (after) {
    const key = decodeCursor('contact', organizationId, after, 'after');
    // A row comparison bounds the index scan.
    conditions.push(sql`(${contacts.updatedAt}, ${contacts.id}) < (${key.at.toISOString()}::timestamptz, ${key.id}::uuid)`);
  }
  const tags = filter.tags ? cleanTags(filter.tags, 'filter.tags') : [];
  if (tags.length > 0) {
    const array = sql`array[${sql.join(
      tags.map((tag) => sql`${tag}`),
      sql`, `,
    )}]::text[]`;
    conditions.push(filter.tagsMode === 'ALL' ? sql`${contacts.tags} @> ${array}` : sql`${contacts.tags} && ${array}`);
  }
  if (filter.isTextable != null) conditions.push(eq(contacts.isTextable, filter.isTextable));
  if (filter.optedOut != null) conditions.push(eq(contacts.isOptedIn, !filter.optedOut));
  const term = filter.search?.trim();
  if (term) {
    if (term.length > MAX_SEARCH_LENGTH) throw badUserInput(`filter.search must be at most ${MAX_SEARCH_LENGTH} characters.`, { field: 'filter.search' });
    const pattern = `%${escapeLike(term)}%`;
    const matches: SQL[] = [
      sql`${contacts.firstName} ilike ${pattern}`,
      sql`${contacts.lastName} ilike ${pattern}`,
      sql`(${contacts.firstName} || ' ' || ${contacts.lastName}) ilike ${pattern}`,
    ];
    // Phone numbers are stored as E.164, so the digits of any format are a substring of it.
    const digits = term.replace(/\D/g, '');
    if (digits.length > 0) matches.push(sql`${contacts.phoneNumber} like ${`%${digits}%`}`);
    conditions.push(or(...matches)!);
  }
  return conditions;
}

/**
 * A page of contacts as one statement: a walk down contacts_org_updated_idx (newest updated first) from the
 * cursor, the filters checked along it. A tag filter is written `tags && array` (ANY) / `tags @> array` (ALL),
 * which contacts_tags_idx (GIN) serves when the planner finds it cheaper than the walk (a rare tag).
 * BAD_USER_INPUT / INVALID_CURSOR for a bad filter or cursor, before anything runs.
 */
export function contactPageQuery(organizationId: string, options: { first: number; after?: string | null; filter?: ContactFilter | null }): SQL {
  return sql`select * from ${contacts} where ${and(...pageConditions(organizationId, options.after, options.filter ?? {}))}
    order by ${contacts.updatedAt} desc, ${contacts.id} desc limit ${pageLimit(options.first)}`; // the order of contacts_org_updated_idx
}

const readContact = rowReader(contacts);

/** A page of the organization's contacts, newest updated first, by keyset over (updated_at, id). */
export async function listContacts(
  db: DbOrTx,
  organizationId: string,
  options: { first: number; after?: string | null; filter?: ContactFilter | null },
): Promise<{ rows: ContactRow[]; hasNextPage: boolean }> {
  const found = (await rawRows(db, contactPageQuery(organizationId, options))).map(readContact);
  return { rows: found.slice(0, options.first), hasNextPage: found.length > options.first };
}

const contactNotFound = (contactId: string) => new AppError('CONTACT_NOT_FOUND', 'No contact with this id in your organization.', { contactId });

/**
 * Deletes a contact (ADMIN and OWNER). A contact with a conversation is CONTACT_HAS_CONVERSATION unless
 * `eraseHistory`: then its conversation goes too, in the same transaction, and the foreign keys cascade to
 * the messages (and their status events), the notes (and their mentions); the contact's consent history
 * cascades from the contact. Short links the messages carried have no key to them and keep redirecting.
 * Audited as `contact.deleted`, without the phone number: an erased person is not kept in the log.
 */
export async function deleteContact(
  // Not Pick<ServiceDeps, 'db'>: services/deps.ts reaches this module through textability.ts (an import cycle).
  deps: { db: Db },
  caller: Caller,
  contactId: string,
  options: { eraseHistory?: boolean | null } = {},
): Promise<{ contact: ContactRow; conversationId: string | null }> {
  requireRole(caller, 'ADMIN', 'delete contacts');
  if (!isUuid(contactId)) throw contactNotFound(contactId);
  const organizationId = caller.organizationId;
  try {
    return await deps.db.transaction(async (tx) => {
      // The contact, then its conversation: the order every writer locks them in (services/inbound.ts).
      const [contact] = await tx
        .select()
        .from(contacts)
        .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contactId)))
        .for('update');
      if (!contact) throw contactNotFound(contactId);
      const [conversation] = await tx
        .select({ id: conversations.id })
        .from(conversations)
        .where(
          and(
            eq(conversations.organizationId, organizationId),
            or(eq(conversations.phoneNumber, contact.phoneNumber), eq(conversations.contactId, contact.id)),
          ),
        )
        .for('update');
      let erased: { messages: number; notes: number } | null = null;
      if (conversation) {
        if (!options.eraseHistory) throw hasConversation(contact);
        const [counts] = await rawRows(
          tx,
          sql`select (select count(*) from ${messages} where organization_id = ${organizationId} and conversation_id = ${conversation.id}) as messages,
            (select count(*) from ${notes} where organization_id = ${organizationId} and conversation_id = ${conversation.id}) as notes`,
        );
        erased = { messages: Number(counts!.messages), notes: Number(counts!.notes) };
        await tx.delete(conversations).where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversation.id)));
      }
      await tx.delete(contacts).where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id)));
      await recordAudit(tx, caller, {
        action: 'contact.deleted',
        objectType: 'contact',
        objectId: contact.id,
        data: { eraseHistory: Boolean(options.eraseHistory), conversationId: conversation?.id ?? null, ...(erased ? { erased } : {}) },
      });
      return { contact, conversationId: conversation?.id ?? null };
    });
  } catch (error) {
    // A conversation linked to the contact after our read (an inbound message meanwhile) holds it.
    if (violatedForeignKey(error) === 'conversations_contact_fk') throw new AppError('CONTACT_HAS_CONVERSATION', 'The contact has a conversation now; nothing was deleted.', { contactId });
    throw error;
  }
}

const hasConversation = (contact: ContactRow) =>
  new AppError(
    'CONTACT_HAS_CONVERSATION',
    `The contact ${contact.phoneNumber} has a conversation; pass eraseHistory: true to delete it with its conversation, messages, notes and consent history.`,
    { contactId: contact.id, phoneNumber: contact.phoneNumber },
  );
