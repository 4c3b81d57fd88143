import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { consentEvents, contacts, type ConsentEventRow } from '../db/tables.js';
import { isUuid } from './cursors.js';

export type ConsentChange = {
  contactId: string;
  kind: 'opt_out' | 'opt_in';
  /** The keyword as received (upper case), null when the change did not come from a keyword. */
  keyword: string | null;
  messageId: string | null;
  /** What caused it: `keyword` (an inbound STOP/START), `provider_error` (Twilio 21610), ... */
  source: string;
};

/**
 * Sets the contact's consent and appends the change to its history, in the caller's transaction. Every
 * keyword is recorded, even when the contact was already in that state: the history is the audit trail
 * of what the contact sent.
 */
export async function recordConsent(db: DbOrTx, organizationId: string, change: ConsentChange) {
  const [contact] = await db
    .update(contacts)
    .set({ isOptedIn: change.kind === 'opt_in', updatedAt: sql`now()` })
    .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, change.contactId)))
    .returning();
  const [event] = await db
    .insert(consentEvents)
    .values({ organizationId, contactId: change.contactId, kind: change.kind, keyword: change.keyword, messageId: change.messageId, source: change.source })
    .returning();
  return { contact: contact!, event: event! };
}

/** Consent histories of many contacts in one statement, oldest first. */
export async function consentEventsByContacts(db: DbOrTx, organizationId: string, contactIds: readonly string[]): Promise<ConsentEventRow[]> {
  const valid = contactIds.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select()
    .from(consentEvents)
    .where(and(eq(consentEvents.organizationId, organizationId), inArray(consentEvents.contactId, valid)))
    .orderBy(asc(consentEvents.createdAt), asc(consentEvents.id));
}
