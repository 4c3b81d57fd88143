import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Db, Tx } from '../../db/client.js';
import { isDatabaseUnavailable } from '../../db/failures.js';
import { HotQuery, rowReader } from '../../db/rows.js';
import { contacts, messages, messageStatusEvents, type MessageRow } from '../../db/tables.js';
import { PROVIDER_ERRORS } from '../../providers/sms-provider.js';
import { Batcher, instanceBatcher, writeOrIsolate, type Settled } from '../batcher.js';
import { changeConsent } from '../consent.js';
import { refundCredits } from '../credits.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import { statusMovesForward } from '../message-status.js';
import type { SenderContact } from './refusals.js';
import { webhookEventsFrom, messageData, recordMessageEvent } from '../webhooks/outbox.js';

// Settling a reserved send, the one way both sendReply and the sweep of sends in doubt do it: the
// provider's answer stored, or the send failed and refunded. Each is conditional on the send still
// waiting for its answer, so a send settled twice (its own call and a sweep) is settled once.

/**
 * writeAnswers' statement, built once. It stores an answer only while the send still waits for one
 * (queued, no provider id): the sweep of sends in doubt may have settled it. It returns only the columns it
 * sets: nothing else of a message changes while its send is in flight, so the row reserved plus these is
 * the stored row.
 */
const ANSWERS = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb) as x(i int, org uuid, id uuid, sid text, status text, eid uuid)
      ), answered as (
        update ${messages} set provider_message_id = x.sid, status = x.status, updated_at = now()
        from x where ${messages}.organization_id = x.org and ${messages}.id = x.id
          and ${messages}.status = 'queued' and ${messages}.provider_message_id is null
        returning ${messages}.organization_id, ${messages}.id, ${messages}.status, ${messages}.provider_message_id, ${messages}.updated_at
      ), moved as (
        insert into ${messageStatusEvents} (organization_id, id, message_id, status)
        select a.organization_id, x.eid, a.id, a.status from answered a join x on x.id = a.id where a.status <> 'queued'
      ), hook as (${webhookEventsFrom(
        'message.sent',
        sql`answered a join ${messages} m on m.organization_id = a.organization_id and m.id = a.id
          join conversations c on c.organization_id = m.organization_id and c.id = m.conversation_id`,
        { organization: sql`a.organization_id`, orderKey: sql`c.phone_number`, data: messageData('m', sql`c.phone_number`, { status: sql`a.status` }) },
      )})
      select * from answered`,
);

type Answer = { organizationId: string; messageId: string; providerMessageId: string; status: string };
const ANSWERED_KEYS = ['id', 'status', 'providerMessageId', 'updatedAt'] as const;
type Answered = Pick<MessageRow, (typeof ANSWERED_KEYS)[number]>;
const readAnswered = rowReader(messages, '', ANSWERED_KEYS) as (row: Record<string, unknown>) => Answered;

/**
 * The provider's answers of the sends finishing together, in one statement (atomic by itself): each
 * message's provider id and status, and a status event where it moved past queued.
 */
async function writeAnswers(db: Db, answers: Answer[]): Promise<Settled<Answered | null>[]> {
  const input = answers.map((answer, i) => ({
    i,
    org: answer.organizationId,
    id: answer.messageId,
    sid: answer.providerMessageId,
    status: answer.status,
    eid: uuidv7(),
  }));
  const rows = await ANSWERS.rows(db, { input: JSON.stringify(input) });
  const byId = new Map(rows.map((row) => [row.id as string, readAnswered(row)]));
  // Null: settled meanwhile (or gone).
  return answers.map((answer) => ({ ok: true, value: byId.get(answer.messageId) ?? null }));
}

// Two batches of answers at once: answers touch distinct messages, so a second batch never waits on the
// first one's locks, only runs while it commits.
const answerBatcherOf = instanceBatcher(
  'provider answers',
  ({ db }) => new Batcher<Answer, Answered | null>((answers) => writeOrIsolate(answers, (some) => writeAnswers(db, some), isDatabaseUnavailable), 500, 2),
);

/**
 * Stores the provider's answer to a reserved send, batched with the answers arriving together: its
 * provider id, and its status where that moved past queued (subscribers are told). Null when the send was
 * settled meanwhile, by its own call or by the sweep of sends in doubt.
 */
export async function storeProviderAnswer(
  deps: Pick<ServiceDeps, 'db' | 'events' | 'state'>,
  organizationId: string,
  queued: Pick<MessageRow, 'id' | 'conversationId'>,
  providerMessageId: string,
  status: string,
): Promise<Answered | null> {
  const moves = statusMovesForward('queued', status) ? status : 'queued';
  const answered = await answerBatcherOf(deps).submit({ organizationId, messageId: queued.id, providerMessageId, status: moves });
  if (answered && answered.status !== 'queued') {
    deps.events.publish('messageStatusChanged', organizationId, { messageId: queued.id, conversationId: queued.conversationId });
  }
  return answered;
}

/**
 * Fails a reserved send the provider refused or never got, and refunds its credits, in one transaction;
 * only while it still waits for its answer (queued, no provider id), so a send settled twice (by its own
 * call and by the sweep of sends in doubt) is refunded once. Null when it had been settled already.
 */
export async function failReservedSend(
  deps: Pick<ServiceDeps, 'db' | 'events'>,
  organizationId: string,
  queued: Pick<MessageRow, 'id' | 'creditsCharged'>,
  errorCode: number | null,
  contact: Pick<SenderContact, 'id'> | null,
  /** A scheduled reply keeps why it failed (our error code), as its caller is no longer there to hear it. */
  failureCode: string | null = null,
): Promise<MessageRow | null> {
  const failed = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .update(messages)
      .set({ status: 'failed', errorCode, failureCode, creditsCharged: 0, updatedAt: sql`now()` })
      .where(
        and(
          eq(messages.organizationId, organizationId),
          eq(messages.id, queued.id),
          eq(messages.status, 'queued'),
          isNull(messages.providerMessageId),
        ),
      )
      .returning();
    if (!row) return null;
    await refundCredits(tx, organizationId, queued.creditsCharged);
    await tx.insert(messageStatusEvents).values({ organizationId, id: uuidv7(), messageId: queued.id, status: 'failed', errorCode });
    await recordMessageEvent(tx, 'message.status_changed', organizationId, queued.id);
    if (contact) await applyRecipientError(tx, organizationId, contact, queued.id, errorCode);
    return row;
  });
  if (failed) {
    deps.events.publish('messageStatusChanged', organizationId, { messageId: failed.id, conversationId: failed.conversationId });
    deps.events.publish('conversationUpdated', organizationId, { conversationId: failed.conversationId });
  }
  return failed;
}

/**
 * Marks a reserved send whose provider call got no answer (SEND_IN_DOUBT): it stays queued and charged,
 * and the sweep of sends in doubt settles it once the provider can say. Null when settled meanwhile.
 */
export async function markInDoubt(deps: Pick<ServiceDeps, 'db'>, organizationId: string, queued: Pick<MessageRow, 'id'>): Promise<MessageRow | null> {
  const [row] = await deps.db
    .update(messages)
    .set({ inDoubtAt: sql`now()`, updatedAt: sql`now()` })
    .where(and(eq(messages.organizationId, organizationId), eq(messages.id, queued.id), eq(messages.status, 'queued'), isNull(messages.providerMessageId)))
    .returning();
  return row ?? null;
}

/** What a provider refusal tells us about the recipient: 21610 opted out, 21211/21614 not textable. */
async function applyRecipientError(tx: Tx, organizationId: string, contact: Pick<SenderContact, 'id'>, messageId: string, errorCode: number | null) {
  if (errorCode === PROVIDER_ERRORS.UNSUBSCRIBED) {
    await changeConsent(tx, organizationId, { contactId: contact.id }, { kind: 'opt_out', keyword: null, messageId, source: 'provider_error' });
  } else if (errorCode === PROVIDER_ERRORS.INVALID_TO || errorCode === PROVIDER_ERRORS.NOT_MOBILE) {
    await tx
      .update(contacts)
      .set({ isTextable: false, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id)));
  }
}
