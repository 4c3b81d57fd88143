import { and, eq, sql } from 'drizzle-orm';
import type { Deps } from '../context.js';
import { contacts, conversations, messages, phoneNumbers, type ContactRow, type ConversationRow, type MessageRow } from '../db/tables.js';
import { AppError } from '../errors.js';
import { analysisColumns, analyzeInbound, type MessageAnalysis } from './analysis.js';
import { recordConsent } from './consent.js';
import { isInbound } from './realtime.js';
import { appendMessage } from './messages.js';
import { organizationExists } from './organizations.js';
import { normalizePhone } from './phone.js';

// The one path for inbound messages: Twilio's webhook and the CLI's `inbound` command both come
// through here. One transaction stores the message, finds or creates the sender's contact, applies
// consent keywords and the analysis; events are published only after it commits.

export type InboundMessage = {
  /** The organization's number the message was sent to (Twilio `To`): routes it to its organization. */
  to?: string;
  /** The organization, when the caller already knows it (CLI); `to` is then optional. */
  organizationId?: string;
  /** The sender (Twilio `From`), any standard format. */
  from: string;
  body: string;
  mediaUrls?: string[];
  /** `twilio`, or `cli` for injected demo messages. */
  provider: string;
  /** Twilio's MessageSid: one message per SID, so retried webhooks store nothing twice. */
  providerMessageId?: string | null;
};

export type InboundOutcome =
  | {
      outcome: 'stored';
      organizationId: string;
      message: MessageRow;
      conversation: ConversationRow;
      contact: ContactRow;
      analysis: MessageAnalysis;
    }
  | { outcome: 'duplicate'; organizationId: string };

/** Distinguishes our advisory locks from anyone else's (first key of pg_advisory_xact_lock(int, int)). */
const INBOUND_LOCK_NAMESPACE = 0x1b0d;

class DuplicateDelivery extends Error {}

/** The organization owning an inbound number, and that number's id; NOT_FOUND for a number nobody owns. */
async function routeInbound(deps: Pick<Deps, 'db'>, input: InboundMessage): Promise<{ organizationId: string; phoneNumberId: string | null }> {
  if (input.to !== undefined) {
    const to = normalizePhone(input.to, 'To');
    const conditions = [eq(phoneNumbers.phoneNumber, to)];
    if (input.organizationId) conditions.push(eq(phoneNumbers.organizationId, input.organizationId));
    const [owner] = await deps.db
      .select({ organizationId: phoneNumbers.organizationId, phoneNumberId: phoneNumbers.id })
      .from(phoneNumbers)
      .where(and(...conditions))
      .limit(1);
    if (!owner) throw new AppError('NOT_FOUND', `No organization receives messages on ${to}.`, { to });
    return owner;
  }
  if (input.organizationId && (await organizationExists(deps.db, input.organizationId))) {
    const [number] = await deps.db
      .select({ id: phoneNumbers.id })
      .from(phoneNumbers)
      .where(and(eq(phoneNumbers.organizationId, input.organizationId), eq(phoneNumbers.isDefault, true)))
      .limit(1);
    return { organizationId: input.organizationId, phoneNumberId: number?.id ?? null };
  }
  throw new AppError('NOT_FOUND', input.organizationId ? `No organization with id ${input.organizationId}.` : 'No recipient number given.');
}

export async function receiveInbound(deps: Pick<Deps, 'db' | 'events' | 'logger'>, input: InboundMessage): Promise<InboundOutcome> {
  const from = normalizePhone(input.from, 'From');
  const { organizationId, phoneNumberId } = await routeInbound(deps, input);
  const body = input.body ?? '';
  const analysis = analyzeInbound(body);

  let stored: Omit<Extract<InboundOutcome, { outcome: 'stored' }>, 'outcome' | 'organizationId' | 'analysis'>;
  try {
    stored = await deps.db.transaction(async (tx) => {
      // The sender texted us, so the number can receive texts: find or create the contact as textable.
      const [sender] = await tx
        .insert(contacts)
        .values({ organizationId, phoneNumber: from, isTextable: true })
        .onConflictDoUpdate({
          target: [contacts.organizationId, contacts.phoneNumber],
          set: {
            isTextable: true,
            updatedAt: sql`case when ${contacts.isTextable} is true then ${contacts.updatedAt} else now() end`,
          },
        })
        .returning();

      // Inbound messages of one organization commit one at a time (the lock is held until commit), each
      // stamped later than the last. So commit order is (createdAt, id) order, and a subscriber resuming
      // from the cursor of the last message it saw never misses one that committed late with an earlier time.
      await tx.execute(sql`select pg_advisory_xact_lock(${INBOUND_LOCK_NAMESPACE}, hashtext(${organizationId}))`);
      const [stamp] = await tx
        .select({
          ms: sql<number>`(extract(epoch from greatest(clock_timestamp()::timestamptz(3), max(${messages.createdAt}) + interval '1 millisecond')) * 1000)::float8`,
        })
        .from(messages)
        .where(and(eq(messages.organizationId, organizationId), isInbound));
      const createdAt = new Date(Math.round(Number(stamp!.ms)));

      const appended = await appendMessage(tx, organizationId, {
        phoneNumber: from,
        direction: 'incoming',
        body,
        mediaUrls: input.mediaUrls ?? [],
        provider: input.provider,
        providerMessageId: input.providerMessageId ?? null,
        // For an inbound message: the organization's number it arrived on (replies go out from it).
        fromPhoneNumberId: phoneNumberId,
        ...analysisColumns(analysis),
        createdAt,
      });
      // Already stored (a Twilio retry): undo the contact upsert too, so a retry changes nothing at all.
      if (!appended) throw new DuplicateDelivery();

      let conversation = appended.conversation;
      if (conversation.contactId !== sender!.id) {
        // A conversation that predates the contact (or was linked to none): link it now.
        [conversation] = await tx
          .update(conversations)
          .set({ contactId: sender!.id })
          .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversation.id)))
          .returning();
      }

      let contact = sender!;
      const keyword = analysis.keyword;
      if (keyword && keyword.kind !== 'help') {
        ({ contact } = await recordConsent(tx, organizationId, {
          contactId: contact.id,
          kind: keyword.kind,
          keyword: keyword.keyword,
          messageId: appended.message.id,
          source: 'keyword',
        }));
      }
      return { message: appended.message, conversation: conversation!, contact };
    });
  } catch (error) {
    if (error instanceof DuplicateDelivery) {
      deps.logger.info({ organizationId, providerMessageId: input.providerMessageId }, 'duplicate inbound delivery ignored');
      return { outcome: 'duplicate', organizationId };
    }
    throw error;
  }

  // Committed: now, and only now, tell subscribers.
  const { message, conversation } = stored;
  deps.events.publish('messageReceived', organizationId, { messageId: message.id, conversationId: conversation.id });
  deps.events.publish('conversationUpdated', organizationId, { conversationId: conversation.id });
  return { outcome: 'stored', organizationId, analysis, ...stored };
}
