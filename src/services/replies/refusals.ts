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
