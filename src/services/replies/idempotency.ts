import { and, eq } from 'drizzle-orm';
import { conversations, messages, type MessageRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import type { ServiceDeps } from '../deps.js';
import { normalizePhone } from '../phone.js';
import { checkIdempotencyKey, checkShape } from './compose.js';
import { providerFailure, sendInDoubt } from './refusals.js';
import { sendSucceeded, type SendReplyInput, type SendReplyOutcome } from './types.js';

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

/**
 * The first steps of a send or a schedule: the input's shape, its idempotency key and number; then, for a key
 * used before, the first result (`answered`). Otherwise the normalized number and key to go on with.
 */
export async function openSend(
  deps: Pick<ServiceDeps, 'db' | 'config'>,
  organizationId: string,
  input: SendReplyInput,
): Promise<{ answered: SendReplyOutcome } | { answered: null; phoneNumber: string; key: string | null }> {
  const shapeError = checkShape(input);
  if (shapeError) return { answered: { ok: false, error: shapeError } };
  const key = checkIdempotencyKey(input.idempotencyKey);
  if (key instanceof AppError) return { answered: { ok: false, error: key } };
  let phoneNumber: string;
  try {
    phoneNumber = normalizePhone(input.phoneNumber);
  } catch (error) {
    if (error instanceof AppError) return { answered: { ok: false, error } };
    throw error;
  }
  if (key) {
    const first = await messageByIdempotencyKey(deps, organizationId, key);
    if (first) return { answered: await replay(deps, organizationId, first) };
  }
  return { answered: null, phoneNumber, key };
}
