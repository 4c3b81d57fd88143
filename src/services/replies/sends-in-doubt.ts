import { and, eq, sql } from 'drizzle-orm';
import { conversations, messages, phoneNumbers } from '../../db/tables.js';
import type { ServiceDeps } from '../deps.js';
import { PeriodicTask } from '../periodic.js';
import { failReservedSend, storeProviderAnswer } from './settle.js';

// A send is in doubt when the process making it stopped (a crash, a kill, a lost database) between
// reserving it and storing the provider's answer: its message stays queued with no provider id and its
// credits charged, though the provider may have it. No live send waits longer than the provider timeout,
// so sends older than SENDS_IN_DOUBT_AFTER_MS are settled by asking the provider (SmsProvider.findSend):
// - one it has gets its provider id and status, as a late answer (later callbacks then find it);
// - one it never got fails and is refunded, as a refusal would;
// - when it cannot tell, the send waits for the next sweep.
// Every instance sweeps. Each update is conditional on the send still being in doubt, so a send settled
// by two (instances, or a late answer and a sweep) is settled once. A send that charged nothing (an MMS at
// MMS_CREDIT_PRICE=0) is not swept: no money is held, and the index stays off the status column.
// A send whose own call timed out or lost its connection (in_doubt_at, SEND_IN_DOUBT) need not wait that
// long: its call is over, so one more SMS_PROVIDER_TIMEOUT_MS (for Twilio to finish creating it) is enough.

type SweepDeps = Pick<ServiceDeps, 'db' | 'sms' | 'events' | 'logger' | 'config' | 'state'>;

export type SweepResult = { sent: number; failed: number; unknown: number };

/** Sends looked at per sweep, oldest first. */
const SWEEP_LIMIT = 100;

export async function settleSendsInDoubt(deps: SweepDeps, limit = SWEEP_LIMIT): Promise<SweepResult> {
  const afterSeconds = deps.config.sendsInDoubtAfterMs / 1000;
  // The conditions are literals, as the partial index messages_awaiting_answer_idx states them, so the
  // planner can use it whatever plan it caches.
  const inDoubt = await deps.db
    .select({
      organizationId: messages.organizationId,
      id: messages.id,
      conversationId: messages.conversationId,
      body: messages.body,
      creditsCharged: messages.creditsCharged,
      createdAt: messages.createdAt,
      to: conversations.phoneNumber,
      from: phoneNumbers.phoneNumber,
      messagingServiceSid: phoneNumbers.messagingServiceSid,
    })
    .from(messages)
    .innerJoin(conversations, and(eq(conversations.organizationId, messages.organizationId), eq(conversations.id, messages.conversationId)))
    .leftJoin(phoneNumbers, and(eq(phoneNumbers.organizationId, messages.organizationId), eq(phoneNumbers.id, messages.fromPhoneNumberId)))
    .where(
      and(
        sql`${messages.providerMessageId} is null and ${messages.direction} = 'outgoing' and ${messages.creditsCharged} > 0`,
        sql`${messages.status} = 'queued'`,
        sql`(${messages.createdAt} < now() - make_interval(secs => ${afterSeconds})
          or ${messages.inDoubtAt} < now() - make_interval(secs => ${deps.config.smsProviderTimeoutMs / 1000}))`,
        // A scheduled reply's own job settles it (and sends it again if the provider never got it).
        sql`${messages.sendAt} is null`,
        // Only the provider that made the send can say what became of it.
        eq(messages.provider, deps.sms.name),
      ),
    )
    .orderBy(messages.createdAt)
    .limit(limit);

  const result: SweepResult = { sent: 0, failed: 0, unknown: 0 };
  for (const send of inDoubt) {
    const context = { organizationId: send.organizationId, messageId: send.id };
    // One send that cannot be settled (its SID already taken, say) must not stop the others.
    try {
      const record = send.from
        ? await deps.sms.findSend(
            { to: send.to, from: send.from, messagingServiceSid: send.messagingServiceSid, body: send.body, createdAt: send.createdAt },
            deps.config.smsProviderTimeoutMs,
          )
        : ({ kind: 'unknown', reason: 'its sending number is gone' } as const);
      if (record.kind === 'sent') {
        // The provider's answer, late: stored as any answer, only while the send still waits for one.
        const answered = await storeProviderAnswer(deps, send.organizationId, send, record.providerMessageId, record.status);
        if (answered) {
          result.sent += 1;
          // Still queued at the provider: storeProviderAnswer told no one, yet the reply is no longer in doubt.
          if (answered.status === 'queued') {
            deps.events.publish('messageStatusChanged', send.organizationId, { messageId: send.id, conversationId: send.conversationId });
          }
          deps.logger.warn({ ...context, providerMessageId: record.providerMessageId }, 'send in doubt: the provider has it; its id is stored');
        }
      } else if (record.kind === 'not_sent') {
        if (await failReservedSend(deps, send.organizationId, send, null, null)) {
          result.failed += 1;
          deps.logger.warn({ ...context, credits: send.creditsCharged }, 'send in doubt: the provider never got it; failed and refunded');
        }
      } else {
        result.unknown += 1;
        deps.logger.info({ ...context, reason: record.reason }, 'send in doubt: the provider cannot say yet; tried again later');
      }
    } catch (error) {
      result.unknown += 1;
      deps.logger.warn({ ...context, err: error }, 'send in doubt: could not be settled; tried again later');
    }
  }
  return result;
}

/**
 * Sweeps at start and then every so often: a fifth of SENDS_IN_DOUBT_AFTER_MS, at most a minute, and at most
 * half of SMS_PROVIDER_TIMEOUT_MS, so a SEND_IN_DOUBT is settled within about twice the provider timeout.
 */
export class SendsInDoubtSweeper extends PeriodicTask {
  constructor(deps: SweepDeps) {
    const everyMs = Math.max(200, Math.min(60_000, Math.floor(deps.config.sendsInDoubtAfterMs / 5), Math.floor(deps.config.smsProviderTimeoutMs / 2)));
    super('settling sends in doubt', everyMs, () => settleSendsInDoubt(deps), deps.logger);
  }
}
