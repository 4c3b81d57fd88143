import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { consentEvents, contacts, type ConsentEventRow, type ContactRow } from '../db/tables.js';
import { isUuid } from './cursors.js';
import { recordConsentEvent } from './webhooks/outbox.js';

// Consent changes in one place: every writer (inbound keywords, provider error 21610 on a send or a
// status callback, the API) goes through changeConsent, in its own transaction, so the contact's state and
// its history never disagree.

export type ConsentChange = {
  kind: 'opt_out' | 'opt_in';
  /** The keyword as received (upper case), null when the change did not come from a keyword. */
  keyword: string | null;
  messageId: string | null;
  /** What caused it: `keyword` (an inbound STOP/START), `provider_error` (Twilio 21610), `api`. */
  source: 'keyword' | 'provider_error' | 'api';
};

/** The contact whose consent changes: by id, or by its (normalized) phone number. */
export type ConsentSubject = { contactId: string } | { phoneNumber: string };

/**
 * Sets the contact's consent and appends the change to its history, in the caller's transaction.
 * A keyword is recorded even when the contact was already in that state (the history is the audit
 * trail of what the contact sent); any other source is recorded only when it changes the state. Null
 * when nothing changed (or there is no such contact).
 */
export async function changeConsent(
  db: DbOrTx,
  organizationId: string,
  subject: ConsentSubject,
  change: ConsentChange,
): Promise<{ contact: ContactRow; event: ConsentEventRow } | null> {
  const optedIn = change.kind === 'opt_in';
  const [contact] = await db
    .update(contacts)
    .set({ isOptedIn: optedIn, updatedAt: sql`now()` })
    .where(
      and(
        eq(contacts.organizationId, organizationId),
        'contactId' in subject ? eq(contacts.id, subject.contactId) : eq(contacts.phoneNumber, subject.phoneNumber),
        change.source === 'keyword' ? undefined : eq(contacts.isOptedIn, !optedIn),
      ),
    )
    .returning();
  if (!contact) return null;
  const [event] = await db
    .insert(consentEvents)
    .values({ organizationId, contactId: contact.id, kind: change.kind, keyword: change.keyword, messageId: change.messageId, source: change.source })
    .returning();
  // Every recorded change is reported (a repeated STOP too: the contact asked again).
  {
    await recordConsentEvent(db, organizationId, optedIn ? 'contact.opted_in' : 'contact.opted_out', contact.phoneNumber, {
      id: contact.id,
      phoneNumber: contact.phoneNumber,
      firstName: contact.firstName,
      lastName: contact.lastName,
      isOptedIn: contact.isOptedIn,
      keyword: change.keyword,
      source: change.source,
      messageId: change.messageId,
      timestamp: event!.createdAt.toISOString(),
    });
  }
  return { contact, event: event! };
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
