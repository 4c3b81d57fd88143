import type { MessageRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import type { SendResult } from '../../providers/sms-provider.js';
import { creditBalance } from '../credits.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import { storeShortLinks } from '../short-links.js';
import { compose } from './compose.js';
import { messageByIdempotencyKey, openSend, replay } from './idempotency.js';
import { numberWanted, resolveRecipient } from './recipient.js';
import { insufficientCredits, providerBusy, providerFailure, sendInDoubt, textabilityPending } from './refusals.js';
import { directOutcome, directSend, isKeyCollision, reserveAlone, reserveWithoutLinks, RollBack, type DirectOutcome, type Sender } from './reserve.js';
import { failReservedSend, markInDoubt, storeProviderAnswer } from './settle.js';
import { sendSucceeded, type SendReplyInput, type SendReplyOutcome } from './types.js';

// Sending a reply: the one place money is spent and a phone buzzes. The order of work makes it exact:
//  1. validate the input without touching the database (compose.ts);
//  2. one statement checks the contact and sending number under lock, stores the message (status queued,
//     with its idempotency key) and reserves the credits with a conditional UPDATE (reserve.ts). With
//     short links, a transaction stores them and the reservation after one read of contact and number.
//     A concurrent duplicate key waits on the unique index, fails, then finds the first message and
//     replays its result; a refused contact or too few credits write nothing;
//  3. the provider is called outside any transaction;
//  4. one statement stores the provider's answer, or a transaction marks the message failed and refunds
//     (settle.ts, shared with the sweep of sends in doubt). A call that got no answer (a timeout, a lost
//     connection) is in doubt: the reply stays queued and charged until the provider says (SEND_IN_DOUBT).
// Replies bypass quiet hours: they go out immediately at any hour.

export async function sendReply(deps: ServiceDeps, organizationId: string, input: SendReplyInput): Promise<SendReplyOutcome> {
  const opened = await openSend(deps, organizationId, input);
  if (opened.answered) return opened.answered;
  const { phoneNumber, key } = opened;

  // 1-2. Without links the text does not depend on the organization's short-link base, so the send is
  // checked and reserved in one statement (reserveWithoutLinks); with links they are stored first, in a
  // transaction with the reservation.
  const draft = compose(input, deps.config.publicBaseUrl, deps.config.mmsCreditPrice);
  if (draft.links.length > 0) return sendWithLinks(deps, organizationId, phoneNumber, input, key);
  if (draft.error) return { ok: false, error: draft.error };
  let direct: DirectOutcome;
  try {
    direct = await reserveWithoutLinks(deps, organizationId, phoneNumber, input, draft, key);
    if (direct.kind === 'pending') {
      // Settles the contact's textability (or refuses the send) as a send with links would, then once more.
      const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
      if (recipient instanceof AppError) return { ok: false, error: recipient };
      direct = await reserveWithoutLinks(deps, organizationId, phoneNumber, input, draft, key);
    }
  } catch (caught) {
    // Only the idempotency key can collide here: another call with this key got there first, and the
    // statement was undone whole.
    if (!isKeyCollision(caught)) throw caught;
    return afterRefusedReservation(deps, organizationId, input, key, 'duplicate', draft.credits);
  }
  if (direct.kind === 'refused') return { ok: false, error: direct.error };
  if (direct.kind === 'credits') return afterRefusedReservation(deps, organizationId, input, key, 'credits', draft.credits);
  if (direct.kind === 'pending') return { ok: false, error: textabilityPending(phoneNumber) };
  return deliver(deps, organizationId, phoneNumber, direct.message, direct, draft.route);
}

/**
 * A reservation that wrote nothing, for want of credits or because another send holds its idempotency key:
 * a first send with this key that committed meanwhile is the answer; otherwise the credits were short.
 */
async function afterRefusedReservation(
  deps: ServiceDeps,
  organizationId: string,
  input: SendReplyInput,
  key: string | null,
  reason: 'credits' | 'duplicate',
  credits: number,
): Promise<SendReplyOutcome> {
  if (key) {
    const first = await messageByIdempotencyKey(deps, organizationId, key);
    if (first) return replay(deps, organizationId, first);
    // The first attempt rolled back after we looked (it ran out of credits): try again from the top.
    if (reason === 'duplicate') return sendReply(deps, organizationId, input);
  }
  const balance = (await creditBalance(deps.db, organizationId)) ?? 0;
  return { ok: false, error: insufficientCredits(credits, balance) };
}

/** A send whose text has links: the links and the reservation are stored in one transaction. */
async function sendWithLinks(
  deps: ServiceDeps,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
  key: string | null,
): Promise<SendReplyOutcome> {
  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
  const composed = compose(
    input,
    recipient instanceof AppError ? deps.config.publicBaseUrl : recipient.shortLinkBase,
    deps.config.mmsCreditPrice,
  );
  if (composed.error) return { ok: false, error: composed.error };
  if (recipient instanceof AppError) return { ok: false, error: recipient };

  const { wanted } = numberWanted(input);
  let reserved: Extract<DirectOutcome, { kind: 'reserved' }>;
  try {
    const messageId = uuidv7();
    reserved = await deps.db.transaction(async (tx) => {
      const links = await storeShortLinks(tx, organizationId, messageId, { text: composed.text, links: composed.links });
      // The same statement as sends without links, alone: consent is checked again under the contact's
      // share lock, so a STOP committed since the read above wins.
      const send = directSend(deps, organizationId, phoneNumber, input, { ...composed, text: links.text }, key, messageId);
      const outcome = directOutcome(await reserveAlone(tx, send), phoneNumber, wanted);
      // Nothing was written but the links: undo them.
      if (outcome.kind !== 'reserved') throw new RollBack(outcome);
      return outcome;
    });
  } catch (caught) {
    // Only the idempotency key can collide here: another call with this key got there first, and the
    // transaction was undone whole.
    if (isKeyCollision(caught)) return afterRefusedReservation(deps, organizationId, input, key, 'duplicate', composed.credits);
    if (!(caught instanceof RollBack)) throw caught;
    const reason = caught.result;
    if (reason.kind === 'refused') return { ok: false, error: reason.error };
    if (reason.kind === 'pending') return { ok: false, error: textabilityPending(phoneNumber) };
    return afterRefusedReservation(deps, organizationId, input, key, 'credits', composed.credits);
  }
  return deliver(deps, organizationId, phoneNumber, reserved.message, reserved, composed.route);
}

/** Steps 3 and 4 of a reserved send: the provider, then its answer (or the refund). Also runs due scheduled replies. */
export async function deliver(
  deps: ServiceDeps,
  organizationId: string,
  phoneNumber: string,
  queued: MessageRow,
  recipient: Sender,
  route: 'SMS' | 'MMS',
): Promise<SendReplyOutcome> {
  deps.events.publish('conversationUpdated', organizationId, { conversationId: queued.conversationId });

  // 3. The provider, outside any transaction.
  let result: SendResult;
  try {
    result = await deps.sms.send({
      organizationId,
      messageId: queued.id,
      to: phoneNumber,
      from: recipient.from.phoneNumber,
      messagingServiceSid: recipient.from.messagingServiceSid ?? null,
      body: queued.body,
      mediaUrls: queued.mediaUrls,
      sendAsMms: route === 'MMS',
      statusCallbackUrl: `${deps.config.publicBaseUrl}/webhooks/twilio/status`,
    });
  } catch (error) {
    // Providers report failures as values; a throw is a bug, and still must not keep the credits.
    deps.logger.error({ err: error, messageId: queued.id }, 'SMS provider threw');
    result = { ok: false, errorCode: null, message: error instanceof Error ? error.message : String(error) };
  }

  // 4. Record the answer.
  if (result.ok) {
    const answered = await storeProviderAnswer(deps, organizationId, queued, result.providerMessageId, result.status);
    if (!answered) throw new Error(`message ${queued.id} was settled before its answer was stored`);
    return sendSucceeded({ ...queued, ...answered });
  }

  if (result.inDoubt) {
    // The provider may have it: the reply stays queued with its credits, and is settled by asking the
    // provider (sends-in-doubt.ts, or a scheduled reply's own job). Refunding now could pay for a text
    // the contact got, and tell a person to send it twice.
    deps.logger.warn({ messageId: queued.id, providerMessage: result.message }, 'provider call in doubt: settled later');
    const marked = await markInDoubt(deps, organizationId, queued);
    return { ok: false, error: sendInDoubt(deps.config.smsProviderTimeoutMs), inDoubt: marked ?? queued };
  }
  deps.logger.warn({ messageId: queued.id, errorCode: result.errorCode, providerMessage: result.message }, 'provider refused a reply');
  const error = result.busy ? providerBusy() : providerFailure(result.errorCode, phoneNumber);
  await failReservedSend(deps, organizationId, queued, result.errorCode, recipient.contact, queued.sendAt ? error.code : null);
  return { ok: false, error };
}
