import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Deps } from '../context.js';
import type { Tx } from '../db/client.js';
import {
  consentEvents,
  contacts,
  conversations,
  messages,
  messageStatusEvents,
  organizations,
  phoneNumbers,
  shortLinks,
  type ContactRow,
  type MessageRow,
} from '../db/tables.js';
import { AppError } from '../errors.js';
import { PROVIDER_ERRORS, type SendResult } from '../providers/sms-provider.js';
import { hasInboundFrom } from './contacts.js';
import { creditBalance, refundCredits, reserveCredits } from './credits.js';
import { isUuid } from './cursors.js';
import { statusMovesForward } from './message-status.js';
import { appendMessage } from './messages.js';
import { normalizePhone } from './phone.js';
import { planShortLinks, storeShortLinks, type PlannedLink } from './short-links.js';
import { bodyLength, MAX_BODY_CHARACTERS, measureSmsText, normalizeSmsText, type Encoding } from './sms-text.js';

// Sending a reply: the one place money is spent and a phone buzzes. The order of work makes it exact:
//  1. validate everything we can without writing (input, contact, sending number);
//  2. one transaction stores the message (status queued, with its idempotency key), its short links and
//     reserves the credits with a single conditional UPDATE. A concurrent duplicate key waits on the
//     unique index, then finds the first message and replays its result; too few credits roll it all back;
//  3. the provider is called outside any transaction;
//  4. a second transaction stores the provider's answer, or marks the message failed and refunds.
// Replies bypass quiet hours: they go out immediately at any hour.

export type Route = 'AUTO' | 'SMS' | 'MMS';
export type { Encoding };

export type SendReplyInput = {
  phoneNumber: string;
  message: string;
  fromPhoneNumberId?: string | null;
  mediaUrl?: string | null;
  mediaUrls?: string[] | null;
  normalizeText?: boolean | null;
  forceRoute?: Route | null;
  idempotencyKey?: string | null;
};

export type SendReplyOutcome =
  | {
      ok: true;
      message: MessageRow;
      provider: string;
      providerMessageId: string | null;
      segments: number;
      encoding: Encoding;
      creditsCharged: number;
    }
  | { ok: false; error: AppError };

export type ReplyPreview = {
  /** The text as it would go out: normalized, URLs replaced by short links (codes not yet reserved). */
  text: string;
  encoding: Encoding;
  segments: number;
  route: 'SMS' | 'MMS';
  credits: number;
  /** What sendReply would refuse with, if anything. */
  error: AppError | null;
};

export const MAX_MEDIA = 10;
const MAX_MEDIA_URL_LENGTH = 2048;
const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** The text part of a reply, worked out without touching the database. */
type Composition = {
  text: string;
  links: PlannedLink[];
  mediaUrls: string[];
  route: 'SMS' | 'MMS';
  encoding: Encoding;
  segments: number;
  credits: number;
  /** INVALID_MESSAGE, if the input breaks a rule. */
  error: AppError | null;
};

const invalidMessage = (message: string, details?: Record<string, unknown>) => new AppError('INVALID_MESSAGE', message, details);

function mediaOf(input: SendReplyInput): { urls: string[]; error: AppError | null } {
  const given = [...(input.mediaUrl ? [input.mediaUrl] : []), ...(input.mediaUrls ?? [])];
  const urls = [...new Set(given.map((url) => url.trim()))];
  if (urls.length > MAX_MEDIA)
    return { urls, error: invalidMessage(`At most ${MAX_MEDIA} media URLs can be attached.`, { maximum: MAX_MEDIA }) };
  for (const url of urls) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(url);
    } catch {
      parsed = null;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || url.length > MAX_MEDIA_URL_LENGTH) {
      return {
        urls,
        error: invalidMessage(`Media URLs must be absolute http(s) URLs: ${JSON.stringify(url.slice(0, 100))}`, { field: 'mediaUrls' }),
      };
    }
  }
  return { urls, error: null };
}

function compose(input: SendReplyInput, shortLinkBase: string, mmsPrice: number): Composition {
  const raw = typeof input.message === 'string' ? input.message : '';
  const media = mediaOf(input);
  const route: 'SMS' | 'MMS' = input.forceRoute === 'MMS' || (input.forceRoute !== 'SMS' && media.urls.length > 0) ? 'MMS' : 'SMS';
  if (bodyLength(raw) > MAX_BODY_CHARACTERS) {
    // Refused before segmenting: the segment calculator takes seconds to minutes on 100k-character inputs.
    const error = media.error ?? invalidMessage(`message must be at most ${MAX_BODY_CHARACTERS} characters.`, { field: 'message', maximum: MAX_BODY_CHARACTERS });
    return { text: raw.slice(0, MAX_BODY_CHARACTERS), links: [], mediaUrls: media.urls, route, encoding: 'GSM-7', segments: 0, credits: 0, error };
  }
  const trimmed = raw.trim();
  const normalized = input.normalizeText === false ? trimmed : normalizeSmsText(trimmed);
  const plan = planShortLinks(normalized, shortLinkBase);
  const measure = measureSmsText(plan.text);
  // An MMS is one message whatever its length; an SMS costs one credit per segment.
  const segments = route === 'MMS' ? 1 : measure.segments;
  const credits = route === 'MMS' ? mmsPrice : measure.segments;

  let error: AppError | null = media.error;
  if (!error && input.forceRoute === 'SMS' && media.urls.length > 0) {
    error = invalidMessage('Media cannot be sent with route SMS: use AUTO or MMS.', { field: 'forceRoute' });
  }
  if (!error && trimmed.length === 0 && media.urls.length === 0) error = invalidMessage('message must not be empty.', { field: 'message' });
  if (!error && bodyLength(raw) > MAX_BODY_CHARACTERS) {
    error = invalidMessage(`message must be at most ${MAX_BODY_CHARACTERS} characters.`, {
      field: 'message',
      maximum: MAX_BODY_CHARACTERS,
    });
  }
  if (!error && bodyLength(plan.text) > MAX_BODY_CHARACTERS) {
    error = invalidMessage(`message is longer than ${MAX_BODY_CHARACTERS} characters once its links are shortened.`, {
      field: 'message',
      maximum: MAX_BODY_CHARACTERS,
    });
  }
  return { text: plan.text, links: plan.links, mediaUrls: media.urls, route, encoding: measure.encoding, segments, credits, error };
}

type Recipient = {
  phoneNumber: string;
  contact: ContactRow;
  from: { id: string; phoneNumber: string };
  shortLinkBase: string;
  balance: number;
};

/** Contact, sending number and organization settings; the first rule broken comes back as an AppError. */
async function resolveRecipient(
  deps: Deps,
  organizationId: string,
  phoneNumber: string,
  input: SendReplyInput,
): Promise<Recipient | AppError> {
  const [org] = await deps.db
    .select({ credits: organizations.credits, shortLinkBaseUrl: organizations.shortLinkBaseUrl })
    .from(organizations)
    .where(eq(organizations.id, organizationId));
  if (!org) return new AppError('NOT_FOUND', 'Organization not found.');

  let [contact] = await deps.db
    .select()
    .from(contacts)
    .where(and(eq(contacts.organizationId, organizationId), eq(contacts.phoneNumber, phoneNumber)));
  if (!contact) {
    return new AppError('CONTACT_NOT_FOUND', `No contact with ${phoneNumber} exists in your organization. Create the contact first.`, {
      phoneNumber,
    });
  }
  if (!contact.isOptedIn)
    return new AppError('CONTACT_OPTED_OUT', `${phoneNumber} has opted out and cannot receive messages.`, { phoneNumber });
  if (contact.isTextable === null && (await hasInboundFrom(deps.db, organizationId, phoneNumber))) {
    // A number that texted us can receive texts, whatever a pending lookup will say.
    const [updated] = await deps.db
      .update(contacts)
      .set({ isTextable: true, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id)))
      .returning();
    contact = updated ?? contact;
  }
  if (contact.isTextable === false) {
    return new AppError('CONTACT_NON_TEXTABLE', `${phoneNumber} cannot receive text messages (landline, VoIP or invalid).`, {
      phoneNumber,
    });
  }
  if (contact.isTextable === null) {
    // Make sure a lookup is under way (it may have been lost to a restart); the send is refused meanwhile.
    void deps.textability.check(contact);
    return new AppError(
      'CONTACT_TEXTABILITY_PENDING',
      `The textability lookup for ${phoneNumber} has not completed yet; try again shortly.`,
      {
        phoneNumber,
      },
    );
  }

  const wanted = input.fromPhoneNumberId?.trim();
  let from: { id: string; phoneNumber: string } | undefined;
  if (wanted) {
    if (isUuid(wanted)) {
      [from] = await deps.db
        .select({ id: phoneNumbers.id, phoneNumber: phoneNumbers.phoneNumber })
        .from(phoneNumbers)
        .where(and(eq(phoneNumbers.organizationId, organizationId), eq(phoneNumbers.id, wanted)));
    }
    if (!from) {
      return new AppError('FROM_NUMBER_FORBIDDEN', 'The specified fromPhoneNumberId does not belong to your organization.', {
        fromPhoneNumberId: wanted.slice(0, 100),
      });
    }
  } else {
    [from] = await deps.db
      .select({ id: phoneNumbers.id, phoneNumber: phoneNumbers.phoneNumber })
      .from(phoneNumbers)
      .where(and(eq(phoneNumbers.organizationId, organizationId), eq(phoneNumbers.isDefault, true)));
    if (!from) return new AppError('NO_FROM_NUMBER', 'Your organization has no default phone number configured.');
  }
  return { phoneNumber, contact, from, shortLinkBase: org.shortLinkBaseUrl ?? deps.config.publicBaseUrl, balance: org.credits };
}

function insufficientCredits(required: number, balance: number) {
  return new AppError('INSUFFICIENT_CREDITS', `Sending needs ${required} credits; the balance is ${balance}.`, { required, balance });
}

/** Our error for a provider refusal; built from the code alone so an idempotent replay gets the same one. */
export function providerFailure(errorCode: number | null, phoneNumber: string): AppError {
  switch (errorCode) {
    case PROVIDER_ERRORS.UNSUBSCRIBED:
      return new AppError('CONTACT_OPTED_OUT', `${phoneNumber} has unsubscribed from this sender (provider error 21610).`, {
        phoneNumber,
        providerErrorCode: errorCode,
      });
    case PROVIDER_ERRORS.INVALID_TO:
    case PROVIDER_ERRORS.NOT_MOBILE:
      return new AppError('CONTACT_NON_TEXTABLE', `${phoneNumber} cannot receive text messages (provider error ${errorCode}).`, {
        phoneNumber,
        providerErrorCode: errorCode,
      });
    case null:
      return new AppError('PROVIDER_ERROR', 'The SMS provider could not be reached; nothing was charged.', { providerErrorCode: null });
    default:
      return new AppError('PROVIDER_ERROR', `The SMS provider rejected the message (Twilio error ${errorCode}); nothing was charged.`, {
        providerErrorCode: errorCode,
      });
  }
}

/** Shape checks for callers without a schema (REST bodies): wrong types are INVALID_PARAMETER, not a crash. */
function checkShape(input: SendReplyInput): AppError | null {
  const invalid = (field: string, expected: string) => new AppError('INVALID_PARAMETER', `${field} must be ${expected}.`, { field });
  const optional = (value: unknown) => value === null || value === undefined;
  if (typeof input.message !== 'string') return invalidMessage('message must be a string.', { field: 'message' });
  if (!optional(input.mediaUrl) && typeof input.mediaUrl !== 'string') return invalid('mediaUrl', 'a string');
  if (!optional(input.mediaUrls) && !(Array.isArray(input.mediaUrls) && input.mediaUrls.every((url) => typeof url === 'string'))) {
    return invalid('mediaUrls', 'an array of strings');
  }
  if (!optional(input.normalizeText) && typeof input.normalizeText !== 'boolean') return invalid('normalizeText', 'a boolean');
  if (!optional(input.forceRoute) && !['AUTO', 'SMS', 'MMS'].includes(input.forceRoute as string))
    return invalid('forceRoute', 'AUTO, SMS or MMS');
  if (!optional(input.fromPhoneNumberId) && typeof input.fromPhoneNumberId !== 'string') return invalid('fromPhoneNumberId', 'a string');
  return null;
}

function checkIdempotencyKey(key: string | null | undefined): string | null | AppError {
  if (key === null || key === undefined) return null;
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    return new AppError('INVALID_PARAMETER', `idempotencyKey must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`, {
      field: 'idempotencyKey',
    });
  }
  return key;
}

/** What sendReply would do, without storing, sending or charging anything. */
export async function previewReply(deps: Deps, organizationId: string, input: SendReplyInput): Promise<ReplyPreview> {
  const shapeError = checkShape(input);
  if (shapeError) throw shapeError;
  const phoneNumber = normalizePhone(input.phoneNumber);
  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
  const base = recipient instanceof AppError ? await shortLinkBaseOf(deps, organizationId) : recipient.shortLinkBase;
  const composed = compose(input, base, deps.config.mmsCreditPrice);
  const preview = {
    text: composed.text,
    encoding: composed.encoding,
    segments: composed.segments,
    route: composed.route,
    credits: composed.credits,
  };
  if (composed.error) return { ...preview, error: composed.error };
  if (recipient instanceof AppError) return { ...preview, error: recipient };
  const error = recipient.balance < composed.credits ? insufficientCredits(composed.credits, recipient.balance) : null;
  return { ...preview, error };
}

async function shortLinkBaseOf(deps: Deps, organizationId: string): Promise<string> {
  const [org] = await deps.db
    .select({ base: organizations.shortLinkBaseUrl })
    .from(organizations)
    .where(eq(organizations.id, organizationId));
  return org?.base ?? deps.config.publicBaseUrl;
}

type RollBackReason = { kind: 'duplicate' } | { kind: 'credits' } | { kind: 'refused'; error: AppError };

/** Thrown inside the sending transaction to undo it, carrying why. */
class RollBack extends Error {
  constructor(readonly result: RollBackReason) {
    super('rolled back');
  }
}

export async function sendReply(deps: Deps, organizationId: string, input: SendReplyInput): Promise<SendReplyOutcome> {
  const shapeError = checkShape(input);
  if (shapeError) return { ok: false, error: shapeError };
  const key = checkIdempotencyKey(input.idempotencyKey);
  if (key instanceof AppError) return { ok: false, error: key };
  let phoneNumber: string;
  try {
    phoneNumber = normalizePhone(input.phoneNumber);
  } catch (error) {
    if (error instanceof AppError) return { ok: false, error };
    throw error;
  }
  if (key) {
    const first = await messageByIdempotencyKey(deps, organizationId, key);
    if (first) return replay(deps, organizationId, first);
  }

  const recipient = await resolveRecipient(deps, organizationId, phoneNumber, input);
  const composed = compose(
    input,
    recipient instanceof AppError ? deps.config.publicBaseUrl : recipient.shortLinkBase,
    deps.config.mmsCreditPrice,
  );
  if (composed.error) return { ok: false, error: composed.error };
  if (recipient instanceof AppError) return { ok: false, error: recipient };

  // 2. Store + reserve, atomically.
  let queued: MessageRow;
  try {
    queued = await deps.db.transaction(async (tx) => {
      // Consent again, under a share lock taken first (as inbound messages lock the contact first): a STOP
      // committed since the checks above wins, and one arriving now waits for this send to be recorded.
      const [current] = await tx
        .select({ isOptedIn: contacts.isOptedIn, isTextable: contacts.isTextable })
        .from(contacts)
        .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, recipient.contact.id)))
        .for('share');
      if (!current)
        throw new RollBack({
          kind: 'refused',
          error: new AppError('CONTACT_NOT_FOUND', `No contact with ${phoneNumber} exists in your organization.`, { phoneNumber }),
        });
      if (!current.isOptedIn)
        throw new RollBack({
          kind: 'refused',
          error: new AppError('CONTACT_OPTED_OUT', `${phoneNumber} has opted out and cannot receive messages.`, { phoneNumber }),
        });
      if (current.isTextable === false) {
        throw new RollBack({
          kind: 'refused',
          error: new AppError('CONTACT_NON_TEXTABLE', `${phoneNumber} cannot receive text messages.`, { phoneNumber }),
        });
      }
      const links = await storeShortLinks(tx, organizationId, null, { text: composed.text, links: composed.links });
      const appended = await appendMessage(tx, organizationId, {
        phoneNumber,
        direction: 'outgoing',
        body: links.text,
        mediaUrls: composed.mediaUrls,
        status: 'queued',
        provider: deps.sms.name,
        fromPhoneNumberId: recipient.from.id,
        segments: composed.segments,
        encoding: composed.encoding,
        creditsCharged: composed.credits,
        idempotencyKey: key,
      });
      // Only the idempotency key can collide here: another call with this key got there first.
      if (!appended) throw new RollBack({ kind: 'duplicate' });
      const { message } = appended;
      if (links.links.length > 0) {
        await tx
          .update(shortLinks)
          .set({ messageId: message.id })
          .where(
            and(
              eq(shortLinks.organizationId, organizationId),
              inArray(
                shortLinks.id,
                links.links.map((link) => link.id),
              ),
            ),
          );
      }
      const balance = await reserveCredits(tx, organizationId, composed.credits);
      if (balance === null) throw new RollBack({ kind: 'credits' });
      await tx.insert(messageStatusEvents).values({ organizationId, messageId: message.id, status: 'queued' });
      return message;
    });
  } catch (error) {
    if (!(error instanceof RollBack)) throw error;
    const reason = error.result as RollBackReason;
    if (reason.kind === 'refused') return { ok: false, error: reason.error };
    if (reason.kind === 'duplicate') {
      const first = await messageByIdempotencyKey(deps, organizationId, key!);
      if (first) return replay(deps, organizationId, first);
      // The first attempt rolled back after we looked (it ran out of credits): try again from the top.
      return sendReply(deps, organizationId, input);
    }
    const balance = (await creditBalance(deps.db, organizationId)) ?? 0;
    return { ok: false, error: insufficientCredits(composed.credits, balance) };
  }
  deps.events.publish('conversationUpdated', organizationId, { conversationId: queued.conversationId });

  // 3. The provider, outside any transaction.
  let result: SendResult;
  try {
    result = await deps.sms.send({
      organizationId,
      messageId: queued.id,
      to: phoneNumber,
      from: recipient.from.phoneNumber,
      body: queued.body,
      mediaUrls: queued.mediaUrls,
      sendAsMms: composed.route === 'MMS',
      statusCallbackUrl: `${deps.config.publicBaseUrl}/webhooks/twilio/status`,
    });
  } catch (error) {
    // Providers report failures as values; a throw is a bug, and still must not keep the credits.
    deps.logger.error({ err: error, messageId: queued.id }, 'SMS provider threw');
    result = { ok: false, errorCode: null, message: error instanceof Error ? error.message : String(error) };
  }

  // 4. Record the answer.
  if (result.ok) {
    const answered = result;
    const message = await deps.db.transaction(async (tx) => {
      const moves = statusMovesForward('queued', answered.status) ? answered.status : 'queued';
      const [row] = await tx
        .update(messages)
        .set({ providerMessageId: answered.providerMessageId, status: moves, updatedAt: sql`now()` })
        .where(and(eq(messages.organizationId, organizationId), eq(messages.id, queued.id)))
        .returning();
      if (moves !== 'queued') await tx.insert(messageStatusEvents).values({ organizationId, messageId: queued.id, status: moves });
      return row!;
    });
    if (message.status !== 'queued') {
      deps.events.publish('messageStatusChanged', organizationId, { messageId: message.id, conversationId: message.conversationId });
    }
    return success(message);
  }

  deps.logger.warn({ messageId: queued.id, errorCode: result.errorCode, providerMessage: result.message }, 'provider refused a reply');
  const failed = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .update(messages)
      .set({ status: 'failed', errorCode: result.errorCode, creditsCharged: 0, updatedAt: sql`now()` })
      .where(and(eq(messages.organizationId, organizationId), eq(messages.id, queued.id)))
      .returning();
    await refundCredits(tx, organizationId, queued.creditsCharged);
    await tx.insert(messageStatusEvents).values({ organizationId, messageId: queued.id, status: 'failed', errorCode: result.errorCode });
    await applyRecipientError(tx, organizationId, recipient.contact, queued.id, result.errorCode);
    return row!;
  });
  deps.events.publish('messageStatusChanged', organizationId, { messageId: failed.id, conversationId: failed.conversationId });
  deps.events.publish('conversationUpdated', organizationId, { conversationId: failed.conversationId });
  return { ok: false, error: providerFailure(result.errorCode, phoneNumber) };
}

/** What a provider refusal tells us about the recipient: 21610 opted out, 21211/21614 not textable. */
async function applyRecipientError(tx: Tx, organizationId: string, contact: ContactRow, messageId: string, errorCode: number | null) {
  if (errorCode === PROVIDER_ERRORS.UNSUBSCRIBED) {
    const [changed] = await tx
      .update(contacts)
      .set({ isOptedIn: false, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id), eq(contacts.isOptedIn, true)))
      .returning({ id: contacts.id });
    if (changed) {
      await tx
        .insert(consentEvents)
        .values({ organizationId, contactId: contact.id, kind: 'opt_out', keyword: null, messageId, source: 'provider_error' });
    }
  } else if (errorCode === PROVIDER_ERRORS.INVALID_TO || errorCode === PROVIDER_ERRORS.NOT_MOBILE) {
    await tx
      .update(contacts)
      .set({ isTextable: false, updatedAt: sql`now()` })
      .where(and(eq(contacts.organizationId, organizationId), eq(contacts.id, contact.id)));
  }
}

function success(message: MessageRow): SendReplyOutcome {
  return {
    ok: true,
    message,
    provider: message.provider ?? 'unknown',
    providerMessageId: message.providerMessageId,
    segments: message.segments ?? 1,
    encoding: (message.encoding as Encoding | null) ?? 'GSM-7',
    creditsCharged: message.creditsCharged,
  };
}

async function messageByIdempotencyKey(deps: Deps, organizationId: string, key: string): Promise<MessageRow | null> {
  const [row] = await deps.db
    .select()
    .from(messages)
    .where(and(eq(messages.organizationId, organizationId), eq(messages.idempotencyKey, key)))
    .limit(1);
  return row ?? null;
}

/** A send still waiting for the provider's answer: queued, no provider id, no error. */
const inFlight = (message: MessageRow) => message.status === 'queued' && message.providerMessageId === null && message.errorCode === null;

/** The first result for an idempotency key; waits while the first attempt is still talking to the provider. */
async function replay(deps: Deps, organizationId: string, first: MessageRow): Promise<SendReplyOutcome> {
  let message = first;
  const deadline = Date.now() + deps.config.smsProviderTimeoutMs + 5_000;
  while (inFlight(message) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    message = (await messageByIdempotencyKey(deps, organizationId, first.idempotencyKey!)) ?? message;
  }
  if (message.providerMessageId === null && message.status === 'failed') {
    const [conversation] = await deps.db
      .select({ phoneNumber: conversations.phoneNumber })
      .from(conversations)
      .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, message.conversationId)));
    return { ok: false, error: providerFailure(message.errorCode, conversation?.phoneNumber ?? '') };
  }
  return success(message);
}
