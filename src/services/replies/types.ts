import type { MessageRow } from '../../db/tables.js';
import type { AppError } from '../../errors.js';
import type { Encoding } from '../sms-text.js';

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
  /** The member sending it (Message.sentBy); null for integration tokens. */
  sentByUserId?: string | null;
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
  /** `inDoubt`: SEND_IN_DOUBT, the reply as stored (queued, charged) until the provider's answer is known. */
  | { ok: false; error: AppError; inDoubt?: MessageRow };

/** The outcome of a send the provider took: from its stored message, so an idempotent replay answers the same. */
export function sendSucceeded(message: MessageRow): SendReplyOutcome {
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
