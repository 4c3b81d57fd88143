import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/client.js';
import { contacts, type ContactRow } from '../db/tables.js';
import type { SmsProvider } from '../providers/sms-provider.js';
import { createContact, hasInboundFrom, type NewContact } from './contacts.js';

// Whether a contact can receive texts. New contacts start pending (isTextable null) and are looked up
// with the provider (Twilio Lookup line type; the simulated provider's rule); the answer is stored only
// while the contact is still pending, so an inbound message that proved the number textable wins.
// A failed lookup leaves the contact pending and is retried with doubling delays.

const MAX_ATTEMPTS = 8;

export class TextabilityService {
  private readonly running = new Map<string, Promise<boolean | null>>();
  /** Retries waiting for their time, by contact: a check meanwhile does not start another paid lookup. */
  private readonly scheduled = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly provider: SmsProvider,
    private readonly logger: Logger,
    private readonly retryMs: number,
  ) {}

  /**
   * Looks the contact up unless a lookup for it is already running. Resolves to the stored value:
   * null while still pending (the lookup failed and a retry is scheduled).
   */
  check(contact: Pick<ContactRow, 'organizationId' | 'id' | 'phoneNumber'>): Promise<boolean | null> {
    const key = `${contact.organizationId}:${contact.id}`;
    const existing = this.running.get(key);
    if (existing) return existing;
    if (this.scheduled.has(key)) return Promise.resolve(null);
    return this.start(key, contact, 0);
  }

  private start(key: string, contact: Pick<ContactRow, 'organizationId' | 'id' | 'phoneNumber'>, attempt: number) {
    const run = this.lookUp(contact, attempt).finally(() => this.running.delete(key));
    this.running.set(key, run);
    return run;
  }

  /** Starts lookups for every pending contact (after a restart, retries that were scheduled are gone). */
  async resumePending(limit = 1000): Promise<number> {
    // Maintenance across organizations: no caller, and every write below is scoped to the row's own organization.
    const pending = await this.db
      .select({ organizationId: contacts.organizationId, id: contacts.id, phoneNumber: contacts.phoneNumber })
      .from(contacts)
      .where(isNull(contacts.isTextable))
      .limit(limit);
    for (const contact of pending) void this.check(contact);
    return pending.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.scheduled.values()) clearTimeout(timer);
    this.scheduled.clear();
    await Promise.allSettled([...this.running.values()]);
  }

  private async lookUp(contact: Pick<ContactRow, 'organizationId' | 'id' | 'phoneNumber'>, attempt: number): Promise<boolean | null> {
    if (this.closed) return null;
    let textable: boolean;
    try {
      // Settled meanwhile (an inbound message, another instance's lookup): no need to pay for a lookup.
      const [current] = await this.db
        .select({ isTextable: contacts.isTextable })
        .from(contacts)
        .where(and(eq(contacts.organizationId, contact.organizationId), eq(contacts.id, contact.id)));
      if (!current || current.isTextable !== null) return current?.isTextable ?? null;
      textable = (await hasInboundFrom(this.db, contact.organizationId, contact.phoneNumber))
        ? true
        : (await this.provider.lookupLineType(contact.phoneNumber)).textable;
    } catch (error) {
      if (this.closed) return null;
      const retryIn = this.retryMs * 2 ** attempt;
      const retrying = attempt + 1 < MAX_ATTEMPTS;
      this.logger.warn({ err: error, contactId: contact.id, attempt, retryIn: retrying ? retryIn : null }, 'textability lookup failed');
      if (retrying) this.retryLater(contact, attempt + 1, retryIn);
      return null;
    }
    try {
      const [updated] = await this.db
        .update(contacts)
        .set({ isTextable: textable, updatedAt: sql`now()` })
        .where(and(eq(contacts.organizationId, contact.organizationId), eq(contacts.id, contact.id), isNull(contacts.isTextable)))
        .returning({ isTextable: contacts.isTextable });
      if (updated) return updated.isTextable;
      const [current] = await this.db
        .select({ isTextable: contacts.isTextable })
        .from(contacts)
        .where(and(eq(contacts.organizationId, contact.organizationId), eq(contacts.id, contact.id)));
      return current?.isTextable ?? null;
    } catch (error) {
      if (!this.closed) this.logger.error({ err: error, contactId: contact.id }, 'storing a textability result failed');
      return null;
    }
  }

  private retryLater(contact: Pick<ContactRow, 'organizationId' | 'id' | 'phoneNumber'>, attempt: number, ms: number) {
    const key = `${contact.organizationId}:${contact.id}`;
    const timer = setTimeout(() => {
      this.scheduled.delete(key);
      if (!this.running.has(key)) void this.start(key, contact, attempt);
    }, ms);
    timer.unref();
    this.scheduled.set(key, timer);
  }
}

/**
 * Creates a contact as pending and starts its lookup, waiting up to `waitMs` for the answer so the
 * common case returns a settled contact. A number that has already texted us is textable at once.
 */
export async function createContactWithLookup(
  deps: { db: Db; textability: TextabilityService },
  organizationId: string,
  input: Omit<NewContact, 'isTextable'>,
  waitMs = 2_000,
): Promise<ContactRow> {
  const created = await createContact(deps.db, organizationId, { ...input, isTextable: null });
  const lookup = deps.textability.check(created);
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    lookup.then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), waitMs);
    }),
  ]);
  clearTimeout(timer);
  if (!settled) return created;
  const [row] = await deps.db
    .select()
    .from(contacts)
    .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, created.id)));
  return row ?? created;
}
