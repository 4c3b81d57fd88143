import { and, eq, sql } from 'drizzle-orm';
import { contacts, conversations, messages, messageStatusEvents, phoneNumbers, type MessageRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import { JOB_DONE, type JobHandler, type JobOutcome } from '../jobs/runner.js';
import { resolveRecipient } from './recipient.js';
import { reserveDueReply } from './reserve-scheduled.js';
import type { ScheduledSendOptions } from './schedule.js';
import { deliver } from './send.js';
import { storeProviderAnswer } from './settle.js';
import type { SendReplyOutcome } from './types.js';

// A scheduled reply going out: the job handler of scheduled replies (jobs/runner.ts runs it when the job
// is due). Exactly once, across instances, restarts and a SIGKILL at any moment:
// - the reply moves from `scheduled` to `queued` (credits reserved) in one transaction under its row lock,
//   so one run, and never a cancel as well, takes it;
// - the job lives on until the provider's answer is stored: if the instance dies after the reservation,
//   the job is claimed again when its lease ends, finds the reply queued with no answer, and asks the
//   provider (as the sweep of sends in doubt does, which leaves scheduled replies to this): a send it has
//   gets its id; one it never got is sent now, with the credits already reserved.
// Any refusal at send time (opted out meanwhile, too few credits, not textable, the provider) fails the
// reply with its error code (messages.failure_code) and tells messageStatusChanged's subscribers.

type HandlerDeps = Pick<ServiceDeps, 'db' | 'events' | 'sms' | 'config' | 'textability' | 'state' | 'logger'>;

type Scheduled = MessageRow & { phoneNumber: string };

/** A pending textability lookup holds a due reply back this long, then it is looked at again. */
const PENDING_RETRY_MS = 5_000;

export function scheduledReplyHandler(deps: HandlerDeps): JobHandler {
  return async (job) => {
    const { organizationId, messageId } = job.payload as { organizationId: string; messageId: string };
    const [row] = await deps.db
      .select({ message: messages, phoneNumber: conversations.phoneNumber })
      .from(messages)
      .innerJoin(conversations, and(eq(conversations.organizationId, messages.organizationId), eq(conversations.id, messages.conversationId)))
      .where(and(eq(messages.organizationId, organizationId), eq(messages.id, messageId)));
    // Erased with its contact's history meanwhile.
    if (!row) return JOB_DONE;
    const reply: Scheduled = { ...row.message, phoneNumber: row.phoneNumber };
    if (reply.status === 'scheduled') return sendDue(deps, reply);
    if (reply.status === 'queued' && reply.providerMessageId === null) return resumeInterrupted(deps, reply);
    // Canceled, or settled already (by this job's earlier run).
    return JOB_DONE;
  };
}

async function sendDue(deps: HandlerDeps, reply: Scheduled): Promise<JobOutcome> {
  const { organizationId } = reply;
  const dueAt = reply.sendAt!.getTime();
  // Rescheduled later while the job was being claimed.
  if (dueAt > Date.now() + 1_000) return { runAt: reply.sendAt!, reason: 'not due yet' };
  if (Date.now() - dueAt > deps.config.scheduledReplyMaxLatenessMs) {
    const minutes = Math.round((Date.now() - dueAt) / 60_000);
    await failScheduled(deps, reply, new AppError('SCHEDULE_EXPIRED', `The reply was due ${minutes} minutes ago, longer than SCHEDULED_REPLY_MAX_LATENESS_MS allows; it was not sent.`));
    return JOB_DONE;
  }
  // The contact and the number as of now (a pending textability lookup is settled or started here).
  const recipient = await resolveRecipient(deps, organizationId, reply.phoneNumber, {
    phoneNumber: reply.phoneNumber,
    message: reply.body,
    fromPhoneNumberId: reply.fromPhoneNumberId,
  });
  if (recipient instanceof AppError) {
    if (recipient.code === 'CONTACT_TEXTABILITY_PENDING') return { runAt: new Date(Date.now() + PENDING_RETRY_MS), reason: 'textability lookup pending' };
    await failScheduled(deps, reply, recipient);
    return JOB_DONE;
  }

  const options = reply.sendOptions as ScheduledSendOptions;
  const reserved = await reserveDueReply(deps, {
    organizationId,
    messageId: reply.id,
    phoneNumber: reply.phoneNumber,
    credits: options.credits,
    fromId: recipient.from.id,
  });
  if (reserved.kind === 'gone') return JOB_DONE;
  if (reserved.kind === 'pending') return { runAt: new Date(Date.now() + PENDING_RETRY_MS), reason: 'textability lookup pending' };
  if (reserved.kind === 'refused') {
    await failScheduled(deps, reply, reserved.error);
    return JOB_DONE;
  }
  deps.events.publish('messageStatusChanged', organizationId, { messageId: reply.id, conversationId: reply.conversationId });
  // deliver() stores the answer, or fails and refunds the reply keeping the provider's reason; in doubt,
  // the reply stays queued and this job settles it (resumeInterrupted) once the provider can say.
  const outcome = await deliver(deps, organizationId, reply.phoneNumber, reserved.message, { contact: reserved.contact, from: recipient.from }, options.route);
  return afterDelivery(deps, outcome);
}

/**
 * A reply reserved by a run that never stored the provider's answer (its instance died). Once no live call
 * can still answer (SENDS_IN_DOUBT_AFTER_MS after the reservation), the provider says whether it has it.
 */
async function resumeInterrupted(deps: HandlerDeps, reply: Scheduled): Promise<JobOutcome> {
  const { organizationId } = reply;
  const reservedAt = reply.updatedAt.getTime();
  // A call that ended without an answer (in_doubt_at) leaves nothing live: one provider timeout is enough.
  const settleAt = reply.inDoubtAt ? reply.inDoubtAt.getTime() + deps.config.smsProviderTimeoutMs : reservedAt + deps.config.sendsInDoubtAfterMs;
  if (Date.now() < settleAt) return { runAt: new Date(settleAt), reason: 'a send may still be with the provider' };
  const [from] = await deps.db
    .select({ id: phoneNumbers.id, phoneNumber: phoneNumbers.phoneNumber, messagingServiceSid: phoneNumbers.messagingServiceSid })
    .from(phoneNumbers)
    .where(and(eq(phoneNumbers.organizationId, organizationId), eq(phoneNumbers.id, reply.fromPhoneNumberId ?? sql`null`)));
  const record = from
    ? await deps.sms.findSend(
        { to: reply.phoneNumber, from: from.phoneNumber, messagingServiceSid: from.messagingServiceSid, body: reply.body, createdAt: reply.updatedAt },
        deps.config.smsProviderTimeoutMs,
      )
    : ({ kind: 'unknown', reason: 'its sending number is gone' } as const);
  const context = { organizationId, messageId: reply.id };
  if (record.kind === 'sent') {
    await storeProviderAnswer(deps, organizationId, reply, record.providerMessageId, record.status);
    deps.logger.warn({ ...context, providerMessageId: record.providerMessageId }, 'scheduled reply: the provider has it; its id is stored');
    return JOB_DONE;
  }
  if (record.kind === 'unknown') return { runAt: new Date(Date.now() + Math.max(1_000, deps.config.sendsInDoubtAfterMs / 5)), reason: record.reason };
  // The provider never got it: this run sends it (the job's lease keeps others off; the reservation is kept).
  // The contact exists: one with a conversation is deleted only with its history, this reply included.
  const [contact] = await deps.db
    .select({ id: contacts.id, isOptedIn: contacts.isOptedIn, isTextable: contacts.isTextable })
    .from(contacts)
    .where(and(eq(contacts.organizationId, organizationId), eq(contacts.phoneNumber, reply.phoneNumber)));
  const [touched] = await deps.db
    .update(messages)
    .set({ updatedAt: sql`now()`, inDoubtAt: null })
    .where(and(eq(messages.organizationId, organizationId), eq(messages.id, reply.id), eq(messages.status, 'queued'), sql`${messages.providerMessageId} is null`))
    .returning();
  if (!touched) return JOB_DONE;
  deps.logger.warn(context, 'scheduled reply: the provider never got it; sending it now');
  const options = reply.sendOptions as ScheduledSendOptions;
  return afterDelivery(deps, await deliver(deps, organizationId, reply.phoneNumber, touched, { contact: contact!, from: from! }, options.route));
}

/** Done, unless the send is in doubt: then the job comes back to settle it once the provider can say. */
function afterDelivery(deps: HandlerDeps, outcome: SendReplyOutcome): JobOutcome {
  if (outcome.ok || !outcome.inDoubt) return JOB_DONE;
  const inDoubtAt = outcome.inDoubt.inDoubtAt?.getTime() ?? Date.now();
  return { runAt: new Date(inDoubtAt + deps.config.smsProviderTimeoutMs), reason: 'the send is in doubt' };
}

/** Fails a reply that is still scheduled, keeping why; nothing was charged. */
async function failScheduled(deps: Pick<ServiceDeps, 'db' | 'events' | 'logger'>, reply: Scheduled, error: AppError): Promise<void> {
  const { organizationId } = reply;
  const failed = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .update(messages)
      .set({ status: 'failed', failureCode: error.code, updatedAt: sql`now()` })
      .where(and(eq(messages.organizationId, organizationId), eq(messages.id, reply.id), eq(messages.status, 'scheduled')))
      .returning({ id: messages.id });
    if (row) await tx.insert(messageStatusEvents).values({ organizationId, id: uuidv7(), messageId: reply.id, status: 'failed' });
    return Boolean(row);
  });
  if (!failed) return;
  deps.logger.info({ organizationId, messageId: reply.id, code: error.code }, 'scheduled reply refused when due');
  deps.events.publish('messageStatusChanged', organizationId, { messageId: reply.id, conversationId: reply.conversationId });
  deps.events.publish('conversationUpdated', organizationId, { conversationId: reply.conversationId });
}

