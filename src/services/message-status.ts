import { and, eq, sql } from 'drizzle-orm';
import type { Deps } from '../context.js';
import type { Tx } from '../db/client.js';
import { consentEvents, contacts, conversations, messages, messageStatusEvents } from '../db/tables.js';

// The one path for delivery status updates: Twilio's status callbacks and the simulated provider both
// come through here. Callbacks can arrive late or out of order, so a status only moves forward and a
// final one is never undone; every callback is kept in the message's status history.

const RANK: Record<string, number> = {
  accepted: 0,
  scheduled: 0,
  queued: 1,
  sending: 2,
  sent: 3,
  delivered: 4,
  undelivered: 4,
  failed: 4,
  canceled: 4,
  read: 5,
};
const FINAL = new Set(['delivered', 'undelivered', 'failed', 'canceled', 'read']);

export const KNOWN_STATUSES = Object.keys(RANK);

/** Whether a message in status `from` may move to `to`. */
export function statusMovesForward(from: string | null, to: string): boolean {
  if (!(to in RANK)) return false;
  if (from === null || !(from in RANK)) return true;
  if (FINAL.has(from)) return from === 'delivered' && to === 'read';
  return RANK[to]! > RANK[from]!;
}

/** Twilio error 21610: the recipient replied STOP to this sender; we must not text them again. */
export const TWILIO_UNSUBSCRIBED = 21610;

export type StatusUpdate = {
  providerMessageId: string;
  status: string;
  errorCode?: number | null;
  /** Narrows the lookup when the caller knows the organization (the simulated provider does). */
  organizationId?: string;
};

export type StatusOutcome =
  | { outcome: 'unknown_message' }
  | { outcome: 'unknown_status' }
  | { outcome: 'applied' | 'ignored'; organizationId: string; messageId: string; status: string };

export async function applyMessageStatus(deps: Pick<Deps, 'db' | 'events' | 'logger'>, update: StatusUpdate): Promise<StatusOutcome> {
  const status = update.status.trim().toLowerCase();
  if (!(status in RANK)) {
    deps.logger.warn({ update }, 'ignoring unknown message status');
    return { outcome: 'unknown_status' };
  }
  const errorCode = update.errorCode ?? null;

  const result = await deps.db.transaction(async (tx) => {
    const conditions = [eq(messages.providerMessageId, update.providerMessageId)];
    if (update.organizationId) conditions.push(eq(messages.organizationId, update.organizationId));
    // Row lock: concurrent callbacks for one message apply one after the other.
    const [message] = await tx
      .select()
      .from(messages)
      .where(and(...conditions))
      .limit(1)
      .for('update');
    if (!message) return null;

    await tx.insert(messageStatusEvents).values({ organizationId: message.organizationId, messageId: message.id, status, errorCode });
    if (!statusMovesForward(message.status, status)) {
      return { outcome: 'ignored' as const, message, status: message.status ?? status };
    }
    await tx
      .update(messages)
      .set({ status, errorCode: errorCode ?? message.errorCode, updatedAt: sql`now()` })
      .where(and(eq(messages.organizationId, message.organizationId), eq(messages.id, message.id)));

    if (status === 'failed' || status === 'undelivered') {
      if (errorCode === TWILIO_UNSUBSCRIBED) await optOutRecipient(tx, message.organizationId, message.conversationId, message.id);
    }
    return { outcome: 'applied' as const, message, status };
  });

  if (!result) {
    deps.logger.info({ providerMessageId: update.providerMessageId, status }, 'status for an unknown message ignored');
    return { outcome: 'unknown_message' };
  }
  const { message } = result;
  if (result.outcome === 'applied') {
    deps.events.publish('messageStatusChanged', message.organizationId, { messageId: message.id, conversationId: message.conversationId });
  }
  return { outcome: result.outcome, organizationId: message.organizationId, messageId: message.id, status: result.status };
}



async function optOutRecipient(tx: Tx, organizationId: string, conversationId: string, messageId: string) {
  const [conversation] = await tx
    .select({ phoneNumber: conversations.phoneNumber })
    .from(conversations)
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversationId)));
  if (!conversation) return;
  const [contact] = await tx
    .update(contacts)
    .set({ isOptedIn: false, updatedAt: sql`now()` })
    .where(and(eq(contacts.organizationId, organizationId), eq(contacts.phoneNumber, conversation.phoneNumber), eq(contacts.isOptedIn, true)))
    .returning({ id: contacts.id });
  if (contact) {
    await tx.insert(consentEvents).values({ organizationId, contactId: contact.id, kind: 'opt_out', keyword: null, messageId, source: 'provider_error' });
  }
}
