import { and, asc, eq, sql } from 'drizzle-orm';
import type { Tx } from '../../db/client.js';
import { conversations, messages, messageStatusEvents, shortLinks, type MessageRow } from '../../db/tables.js';
import { AppError, badUserInput } from '../../errors.js';
import { isUuid } from '../cursors.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import { deleteJobByKey, enqueueJob, rescheduleJob } from '../jobs/queue.js';
import { storeShortLinks } from '../short-links.js';
import { compose, type Composition } from './compose.js';
import { messageByIdempotencyKey, openSend, replay } from './idempotency.js';
import { resolveRecipient, shortLinkBaseOf } from './recipient.js';
import { isKeyCollision } from './reserve.js';
import type { SendReplyInput, SendReplyOutcome } from './types.js';

// Scheduled replies (SendReplyInput.sendAt). Scheduling stores the reply as a message with status
// `scheduled` (created_at = its due time, so it sits where it will go out in the thread) and, in the same
// transaction, a job due at that time (jobs/). The contact, the sending number and the text are checked
// now; credits are checked and reserved when it goes out, as the published platform does
// (scheduled-send.ts). Reschedule and cancel act only while the reply is still `scheduled`, under the
// message's row lock, so they race the send cleanly: one of them wins.

export const SCHEDULED_REPLY_QUEUE = 'scheduled_reply';
export const scheduledReplyJobKey = (messageId: string) => `scheduled_reply:${messageId}`;

/** Closer than this, a reply goes out at once instead of being scheduled. */
export const SCHEDULE_MIN_LEAD_MS = 5_000;
/** The furthest ahead a reply can be scheduled. */
export const SCHEDULE_MAX_AHEAD_MS = 90 * 24 * 3600_000;

/** What a scheduled reply needs when it goes out (messages.send_options). */
export type ScheduledSendOptions = { route: 'SMS' | 'MMS'; credits: number };

/**
 * Whether a send with this sendAt is scheduled (`later`) or goes out at once (`now`: within 5 s);
 * BAD_USER_INPUT in the past or more than 90 days ahead. Slack of one second for clocks and transit.
 */
export function sendAtDecision(sendAt: Date, now = Date.now()): 'now' | 'later' {
  const ahead = sendAt.getTime() - now;
  if (!Number.isFinite(ahead)) throw badUserInput('sendAt must be a valid date-time.', { field: 'sendAt' });
  if (ahead < -1_000) throw badUserInput('sendAt is in the past.', { field: 'sendAt' });
  if (ahead > SCHEDULE_MAX_AHEAD_MS) throw badUserInput('sendAt must be within 90 days.', { field: 'sendAt', maximumDays: 90 });
  return ahead > SCHEDULE_MIN_LEAD_MS ? 'later' : 'now';
}

/** Stores a reply to go out at `sendAt` (more than 5 s ahead; see sendAtDecision). */
export async function scheduleReply(
  deps: Pick<ServiceDeps, 'db' | 'events' | 'sms' | 'config' | 'textability' | 'state'>,
  organizationId: string,
  input: SendReplyInput,
  sendAt: Date,
): Promise<SendReplyOutcome> {
  const opened = await openSend(deps, organizationId, input);
  if (opened.answered) return opened.answered;
  const { phoneNumber, key } = opened;
  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
  const composed = compose(input, recipient instanceof AppError ? deps.config.publicBaseUrl : recipient.shortLinkBase, deps.config.mmsCreditPrice);
  if (composed.error) return { ok: false, error: composed.error };
  if (recipient instanceof AppError) return { ok: false, error: recipient };

  const messageId = uuidv7();
  let message: MessageRow;
  try {
    message = await deps.db.transaction(async (tx) => {
      const links = await storeShortLinks(tx, organizationId, messageId, { text: composed.text, links: composed.links });
      // The thread exists from now on (a contact without one gets it), but its last message is still the last one sent.
      const [conversation] = await tx
        .insert(conversations)
        .values({ organizationId, phoneNumber, contactId: recipient.contact.id })
        .onConflictDoUpdate({
          target: [conversations.organizationId, conversations.phoneNumber],
          set: { contactId: sql`coalesce(${conversations.contactId}, excluded.contact_id)` },
        })
        .returning({ id: conversations.id });
      const options: ScheduledSendOptions = { route: composed.route, credits: composed.credits };
      const [row] = await tx
        .insert(messages)
        .values({
          organizationId,
          id: messageId,
          conversationId: conversation!.id,
          direction: 'outgoing',
          body: links.text,
          mediaUrls: composed.mediaUrls,
          status: 'scheduled',
          provider: deps.sms.name,
          fromPhoneNumberId: recipient.from.id,
          segments: composed.segments,
          encoding: composed.encoding,
          creditsCharged: 0,
          idempotencyKey: key,
          sentByUserId: input.sentByUserId ?? null,
          sendAt,
          sendOptions: options,
          createdAt: sendAt,
        })
        .returning();
      await tx.insert(messageStatusEvents).values({ organizationId, id: uuidv7(), messageId, status: 'scheduled' });
      await enqueueJob(tx, {
        queue: SCHEDULED_REPLY_QUEUE,
        key: scheduledReplyJobKey(messageId),
        organizationId,
        payload: { organizationId, messageId },
        runAt: sendAt,
      });
      return row!;
    });
  } catch (caught) {
    if (!isKeyCollision(caught) || !key) throw caught;
    const first = await messageByIdempotencyKey(deps, organizationId, key);
    if (!first) throw caught;
    return replay(deps, organizationId, first);
  }
  deps.events.publish('conversationUpdated', organizationId, { conversationId: message.conversationId });
  return {
    ok: true,
    message,
    provider: deps.sms.name,
    providerMessageId: null,
    segments: composed.segments,
    encoding: composed.encoding,
    creditsCharged: 0,
  };
}

const notScheduled = (status: string | null) =>
  new AppError('NOT_SCHEDULED', `This reply is ${String(status).toUpperCase()}, no longer SCHEDULED: it cannot be changed.`, { status });

/** The scheduled reply under its row lock; NOT_FOUND when the organization has no such outgoing message. */
async function lockScheduled(tx: Tx, organizationId: string, messageId: string): Promise<MessageRow & { phoneNumber: string }> {
  const [row] = isUuid(messageId)
    ? await tx
        .select({ message: messages, phoneNumber: conversations.phoneNumber })
        .from(messages)
        .innerJoin(conversations, and(eq(conversations.organizationId, messages.organizationId), eq(conversations.id, messages.conversationId)))
        .where(and(eq(messages.organizationId, organizationId), eq(messages.id, messageId), eq(messages.direction, 'outgoing')))
        .for('update', { of: messages })
    : [];
  if (!row) throw new AppError('NOT_FOUND', 'No scheduled reply with this id in your organization.', { id: messageId });
  if (row.message.status !== 'scheduled') throw notScheduled(row.message.status);
  return { ...row.message, phoneNumber: row.phoneNumber };
}

/** Moves a scheduled reply to another time, and changes its text when `message` is given. */
export async function rescheduleReply(
  deps: Pick<ServiceDeps, 'db' | 'events' | 'config'>,
  organizationId: string,
  messageId: string,
  sendAt: Date,
  message?: string | null,
): Promise<MessageRow> {
  // Rescheduled to within 5 s: the job runs at the next poll.
  sendAtDecision(sendAt);
  // Read before the transaction: on PGlite's single connection a read beside it would wait for it.
  const base = message !== null && message !== undefined ? await shortLinkBaseOf(deps, organizationId) : deps.config.publicBaseUrl;
  const updated = await deps.db.transaction(async (tx) => {
    const current = await lockScheduled(tx, organizationId, messageId);
    const options = current.sendOptions as ScheduledSendOptions;
    let text: Pick<Composition, 'segments' | 'encoding' | 'credits'> & { body: string } = {
      body: current.body,
      segments: current.segments ?? 1,
      encoding: current.encoding as Composition['encoding'],
      credits: options.credits,
    };
    if (message !== null && message !== undefined) {
      const forced = options.route === 'MMS' && current.mediaUrls.length === 0 ? 'MMS' : 'AUTO';
      const composed = compose({ phoneNumber: current.phoneNumber, message, mediaUrls: current.mediaUrls, forceRoute: forced }, base, deps.config.mmsCreditPrice);
      if (composed.error) throw composed.error;
      // The old text's links go; the new text's are stored (codes handed out only once, like any send's).
      await tx.delete(shortLinks).where(and(eq(shortLinks.organizationId, organizationId), eq(shortLinks.messageId, messageId)));
      const links = await storeShortLinks(tx, organizationId, messageId, { text: composed.text, links: composed.links });
      text = { body: links.text, segments: composed.segments, encoding: composed.encoding, credits: composed.credits };
    }
    const [row] = await tx
      .update(messages)
      .set({
        sendAt,
        createdAt: sendAt,
        body: text.body,
        segments: text.segments,
        encoding: text.encoding,
        sendOptions: { ...options, credits: text.credits },
        updatedAt: sql`now()`,
      })
      .where(and(eq(messages.organizationId, organizationId), eq(messages.id, messageId)))
      .returning();
    if (!(await rescheduleJob(tx, scheduledReplyJobKey(messageId), sendAt))) {
      // A scheduled reply always has its job; one lost (restored backup) is made again.
      await enqueueJob(tx, { queue: SCHEDULED_REPLY_QUEUE, key: scheduledReplyJobKey(messageId), organizationId, payload: { organizationId, messageId }, runAt: sendAt });
    }
    return row!;
  });
  deps.events.publish('conversationUpdated', organizationId, { conversationId: updated.conversationId });
  return updated;
}

/** Cancels a scheduled reply: status CANCELED (Twilio's word), never sent, nothing charged. */
export async function cancelScheduledReply(deps: Pick<ServiceDeps, 'db' | 'events'>, organizationId: string, messageId: string): Promise<MessageRow> {
  const canceled = await deps.db.transaction(async (tx) => {
    await lockScheduled(tx, organizationId, messageId);
    const [row] = await tx
      .update(messages)
      .set({ status: 'canceled', updatedAt: sql`now()` })
      .where(and(eq(messages.organizationId, organizationId), eq(messages.id, messageId)))
      .returning();
    await tx.insert(messageStatusEvents).values({ organizationId, id: uuidv7(), messageId, status: 'canceled' });
    await deleteJobByKey(tx, scheduledReplyJobKey(messageId));
    return row!;
  });
  deps.events.publish('messageStatusChanged', organizationId, { messageId, conversationId: canceled.conversationId });
  deps.events.publish('conversationUpdated', organizationId, { conversationId: canceled.conversationId });
  return canceled;
}

/** A conversation's replies still to go out, soonest first. */
export async function scheduledRepliesOf(deps: Pick<ServiceDeps, 'db'>, organizationId: string, conversationId: string): Promise<MessageRow[]> {
  return deps.db
    .select()
    .from(messages)
    .where(and(eq(messages.organizationId, organizationId), eq(messages.conversationId, conversationId), eq(messages.status, 'scheduled')))
    .orderBy(asc(messages.sendAt), asc(messages.id));
}
