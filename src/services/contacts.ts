import { and, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { contacts, conversations, messages } from '../db/tables.js';
import { AppError } from '../errors.js';
import { changeConsent } from './consent.js';
import { isUuid } from './cursors.js';
import { normalizePhone } from './phone.js';

export type NewContact = {
  phoneNumber: string;
  firstName?: string | null;
  lastName?: string | null;
  isOptedIn?: boolean;
  /** true, false, or null while a textability lookup is pending. */
  isTextable?: boolean | null;
};

/** Longest first or last name kept; longer is BAD_USER_INPUT rather than megabytes in every inbox row. */
export const MAX_NAME_LENGTH = 200;

const cleanName = (name: string | null | undefined) => {
  const trimmed = name?.trim();
  if (trimmed && trimmed.length > MAX_NAME_LENGTH) {
    throw new AppError('BAD_USER_INPUT', `Names must be at most ${MAX_NAME_LENGTH} characters.`, { maximum: MAX_NAME_LENGTH });
  }
  return trimmed ? trimmed : null;
};

/** Creates a contact; CONTACT_ALREADY_EXISTS when the organization has one with this number. */
export async function createContact(db: DbOrTx, organizationId: string, input: NewContact) {
  const phoneNumber = normalizePhone(input.phoneNumber);
  const [row] = await db
    .insert(contacts)
    .values({
      organizationId,
      phoneNumber,
      firstName: cleanName(input.firstName),
      lastName: cleanName(input.lastName),
      isOptedIn: input.isOptedIn ?? true,
      isTextable: input.isTextable === undefined ? null : input.isTextable,
    })
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
};

/**
 * Changes a contact's names and consent; a consent change is kept in the contact's history (source `api`).
 * CONTACT_NOT_FOUND when the organization has no such contact.
 */
export async function updateContact(db: DbOrTx, organizationId: string, contactId: string, patch: ContactPatch) {
  if (!isUuid(contactId)) throw new AppError('CONTACT_NOT_FOUND', 'No contact with this id in your organization.', { contactId });
  return db.transaction(async (tx) => {
    // Row lock: concurrent consent changes are recorded in the order they apply.
    const [current] = await tx
      .select()
      .from(contacts)
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contactId)))
      .for('update');
    if (!current) throw new AppError('CONTACT_NOT_FOUND', 'No contact with this id in your organization.', { contactId });
    const set: Partial<typeof contacts.$inferInsert> = {};
    if (patch.firstName !== undefined) set.firstName = cleanName(patch.firstName);
    if (patch.lastName !== undefined) set.lastName = cleanName(patch.lastName);
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
