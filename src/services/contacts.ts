import { and, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { contacts, conversations } from '../db/tables.js';
import { AppError } from '../errors.js';
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

const cleanName = (name: string | null | undefined) => {
  const trimmed = name?.trim();
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
