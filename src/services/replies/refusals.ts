import type { ContactRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import { PROVIDER_ERRORS } from '../../providers/sms-provider.js';

// Why a send is refused: the catalogue's errors for a contact, a sending number, credits or a provider refusal.

const contactNotFound = (phoneNumber: string) =>
  new AppError('CONTACT_NOT_FOUND', `No contact with ${phoneNumber} exists in your organization. Create the contact first.`, { phoneNumber });
const contactOptedOut = (phoneNumber: string) =>
  new AppError('CONTACT_OPTED_OUT', `${phoneNumber} has opted out and cannot receive messages.`, { phoneNumber });
export const textabilityPending = (phoneNumber: string) =>
  new AppError('CONTACT_TEXTABILITY_PENDING', `The textability lookup for ${phoneNumber} has not completed yet; try again shortly.`, { phoneNumber });
const contactNonTextable = (phoneNumber: string) =>
  new AppError('CONTACT_NON_TEXTABLE', `${phoneNumber} cannot receive text messages (landline, VoIP or invalid).`, { phoneNumber });

/** What a send needs of its contact: the rules (contactRefusal) and, for a provider refusal, its id. */
export const SENDER_KEYS = ['id', 'isOptedIn', 'isTextable'] as const;
export type SenderContact = Pick<ContactRow, (typeof SENDER_KEYS)[number]>;

/**
 * The first rule the stored contact breaks, in the order sends check them; `pending` while its textability
 * is unknown (resolveRecipient settles that case). Null: the contact can be texted.
 */
export function contactRefusal(contact: SenderContact | null, phoneNumber: string): AppError | 'pending' | null {
  if (!contact) return contactNotFound(phoneNumber);
  if (!contact.isOptedIn) return contactOptedOut(phoneNumber);
  if (contact.isTextable === null) return 'pending';
  if (contact.isTextable === false) return contactNonTextable(phoneNumber);
  return null;
}

/** No sending number: the one asked for is not the organization's, or it has no default. */
export function fromNumberRefusal(wanted: string | undefined): AppError {
  if (wanted) {
    return new AppError('FROM_NUMBER_FORBIDDEN', 'The specified fromPhoneNumberId does not belong to your organization.', {
      fromPhoneNumberId: wanted.slice(0, 100),
    });
  }
  return new AppError('NO_FROM_NUMBER', 'Your organization has no default phone number configured.');
}

export function insufficientCredits(required: number, balance: number) {
  return new AppError('INSUFFICIENT_CREDITS', `Sending needs ${required} credits; the balance is ${balance}.`, { required, balance });
}

/** No free slot for a Twilio call within the provider timeout: nothing was sent or charged. */
export const providerBusy = () =>
  new AppError('PROVIDER_BUSY', 'The SMS provider is at its concurrency limit and the send waited too long for a turn; nothing was sent or charged. Try again.', {
    providerErrorCode: null,
  });

/** The provider call got no answer: the reply may be out. Says not to resend, as the reply will be settled. */
export function sendInDoubt(timeoutMs: number): AppError {
  const seconds = Math.max(1, Math.ceil((2 * timeoutMs) / 1000));
  return new AppError(
    'SEND_IN_DOUBT',
    `The SMS provider did not answer in time, so this reply may or may not have gone out. Do not send it again: ` +
      `it stays QUEUED with its credits reserved and is settled within about ${seconds} seconds ` +
      `(sent, or failed and refunded). Watch its status, or retry with the same idempotency key.`,
  );
}

/** Twilio's page for an error code (its more_info link). */
export const twilioMoreInfo = (errorCode: number) => `https://www.twilio.com/docs/errors/${errorCode}`;

// Errors a person can act on, worded for them (Twilio's own texts name parameters, not causes).
const ACTIONABLE: Record<number, string> = {
  21408: 'Sending to this region is not enabled on the Twilio account (Geo Permissions in the Twilio console)',
  21612: 'This number cannot be reached from this sender (a carrier or country that the sending number does not serve)',
  30003: 'The handset is unreachable (switched off or out of coverage); it may work later',
  30005: 'The number is unknown to its carrier or no longer in service',
  30007: 'The carrier filtered the message as spam; change its wording or register the sender',
  30034: 'The sending number is not registered for A2P 10DLC; register it (or its Messaging Service) with Twilio',
};

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
      return new AppError(
        'PROVIDER_ERROR',
        ACTIONABLE[errorCode]
          ? `${ACTIONABLE[errorCode]} (Twilio error ${errorCode}); nothing was charged.`
          : `The SMS provider rejected the message (Twilio error ${errorCode}); nothing was charged.`,
        { providerErrorCode: errorCode, moreInfo: twilioMoreInfo(errorCode) },
      );
  }
}
