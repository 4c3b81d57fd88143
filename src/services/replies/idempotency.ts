import { and, eq } from 'drizzle-orm';
import { conversations, messages, type MessageRow } from '../../db/tables.js';
import type { ServiceDeps } from '../deps.js';
import { providerFailure, sendInDoubt } from './refusals.js';
import { sendSucceeded, type SendReplyOutcome } from './types.js';

// Idempotency keys: a second send with a key answers with the first one's result, waiting while the first
// is still with the provider.

export async function messageByIdempotencyKey(deps: Pick<ServiceDeps, 'db'>, organizationId: string, key: string): Promise<MessageRow | null> {
  const [row] = await deps.db
    .select()
    .from(messages)
    .where(and(eq(messages.organizationId, organizationId), eq(messages.idempotencyKey, key)))
    .limit(1);
  return row ?? null;
}

/** A send still waiting for the provider's answer: queued, no provider id, no error. */
const awaitingAnswer = (message: MessageRow) => message.status === 'queued' && message.providerMessageId === null && message.errorCode === null;
/** Its call is still running (an in-doubt one has ended without an answer, and waits for the sweep instead). */
const inFlight = (message: MessageRow) => awaitingAnswer(message) && message.inDoubtAt === null;

/** The first result for an idempotency key; waits while the first attempt is still talking to the provider. */
export async function replay(deps: Pick<ServiceDeps, 'db' | 'config'>, organizationId: string, first: MessageRow): Promise<SendReplyOutcome> {
  let message = first;
  const deadline = Date.now() + deps.config.smsProviderTimeoutMs + 5_000;
  while (inFlight(message) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    message = (await messageByIdempotencyKey(deps, organizationId, first.idempotencyKey!)) ?? message;
  }
  // A scheduled reply answers with its message whatever became of it (its failure is on the message).
  if (message.sendAt !== null) return sendSucceeded(message);
  // In doubt still: its current state, and the same advice; never a second send.
  if (message.inDoubtAt !== null && awaitingAnswer(message)) {
    return { ok: false, error: sendInDoubt(deps.config.smsProviderTimeoutMs), inDoubt: message };
  }
  if (message.providerMessageId === null && message.status === 'failed') {
    const [conversation] = await deps.db
      .select({ phoneNumber: conversations.phoneNumber })
      .from(conversations)
      .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, message.conversationId)));
    return { ok: false, error: providerFailure(message.errorCode, conversation?.phoneNumber ?? '') };
  }
  return sendSucceeded(message);
}
