import { AppError, type ErrorCode } from '../../errors.js';
import { builder } from '../builder.js';

// Typed errors for result unions (Pothos errors plugin). Services return or throw AppErrors; resolvers
// turn them into these classes with `typedError`, and a field lists the ones it may answer with in
// `errors.types`. Every type implements `Error { code message }`, `code` being the AppError code.

/** The GraphQL face of an AppError in a result union; keeps the AppError for the error mask. */
export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  /** Walked by the error mask when a typed error escapes a field that does not list it. */
  readonly originalError: AppError;

  constructor(error: AppError) {
    super(error.message);
    this.code = error.code;
    this.details = error.details ?? {};
    this.originalError = error;
  }
}

export const ErrorInterface = builder.interfaceRef<DomainError>('Error').implement({
  description: 'An expected failure: `code` is a stable machine-readable code (the REST API uses the same ones), `message` is for people.',
  fields: (t) => ({
    code: t.exposeString('code'),
    message: t.exposeString('message'),
  }),
});

/**
 * A typed error as a plain value, for fields that return an `Error` rather than throw one (graphql-js
 * treats a returned Error instance as a field error).
 */
type ErrorView = Pick<DomainError, 'code' | 'message' | 'details'> & { typeName: string };

const registry = new Map<ErrorCode, { ErrorClass: new (error: AppError) => DomainError; name: string }>();
const detail = (error: DomainError, name: string) => error.details[name];

function errorType<Extra extends 'phoneNumber' | 'phoneNumberAndProvider' | 'credits' | 'provider' | 'field' | 'none'>(
  name: string,
  code: ErrorCode,
  description: string,
  extra: Extra,
) {
  const ErrorClass = class extends DomainError {};
  Object.defineProperty(ErrorClass, 'name', { value: name });
  builder.objectType(ErrorClass, {
    name,
    description,
    interfaces: [ErrorInterface],
    isTypeOf: (value) => value instanceof ErrorClass || (value as unknown as ErrorView).typeName === name,
    fields: (t) => ({
      ...(extra === 'phoneNumber' || extra === 'phoneNumberAndProvider'
        ? {
            phoneNumber: t.string({
              nullable: true,
              description: 'The contact number concerned, E.164.',
              resolve: (e) => (detail(e, 'phoneNumber') as string | undefined) ?? null,
            }),
          }
        : {}),
      ...(extra === 'credits'
        ? {
            required: t.int({ description: 'Credits the message needs.', resolve: (e) => Number(detail(e, 'required') ?? 0) }),
            balance: t.int({ description: "The organization's balance.", resolve: (e) => Number(detail(e, 'balance') ?? 0) }),
          }
        : {}),
      ...(extra === 'provider' || extra === 'phoneNumberAndProvider'
        ? {
            providerErrorCode: t.int({
              nullable: true,
              description: "The provider's error code (Twilio's numeric codes), when the provider refused the send.",
              resolve: (e) => (detail(e, 'providerErrorCode') as number | null | undefined) ?? null,
            }),
            moreInfo: t.string({
              nullable: true,
              description: "The provider's documentation page for its error code (Twilio's more_info link).",
              resolve: (e) => (detail(e, 'moreInfo') as string | null | undefined) ?? null,
            }),
          }
        : {}),
      ...(extra === 'field'
        ? {
            field: t.string({
              nullable: true,
              description: 'The input field concerned.',
              resolve: (e) => (detail(e, 'field') as string | undefined) ?? null,
            }),
          }
        : {}),
    }),
  });
  registry.set(code, { ErrorClass, name });
  return ErrorClass;
}

export const ContactNotFoundError = errorType(
  'ContactNotFoundError',
  'CONTACT_NOT_FOUND',
  'No contact with this phone number in your organization. Create the contact first.',
  'phoneNumber',
);
export const ContactOptedOutError = errorType(
  'ContactOptedOutError',
  'CONTACT_OPTED_OUT',
  'The contact has opted out (STOP, or the provider reported error 21610) and cannot receive messages.',
  'phoneNumberAndProvider',
);
export const ContactNonTextableError = errorType(
  'ContactNonTextableError',
  'CONTACT_NON_TEXTABLE',
  "The contact's number cannot receive texts (landline, VoIP, invalid; or the provider reported 21211/21614).",
  'phoneNumberAndProvider',
);
export const ContactTextabilityPendingError = errorType(
  'ContactTextabilityPendingError',
  'CONTACT_TEXTABILITY_PENDING',
  "The contact's textability lookup has not completed; replies are blocked until it does.",
  'phoneNumber',
);
export const NoFromNumberError = errorType(
  'NoFromNumberError',
  'NO_FROM_NUMBER',
  'The organization has no default sending number.',
  'none',
);
export const FromNumberForbiddenError = errorType(
  'FromNumberForbiddenError',
  'FROM_NUMBER_FORBIDDEN',
  "`fromPhoneNumberId` does not name one of your organization's numbers.",
  'none',
);
export const InsufficientCreditsError = errorType(
  'InsufficientCreditsError',
  'INSUFFICIENT_CREDITS',
  'Not enough credits: nothing was sent and nothing was charged.',
  'credits',
);
export const InvalidMessageError = errorType(
  'InvalidMessageError',
  'INVALID_MESSAGE',
  'The message breaks a rule: empty without media, over 1,600 characters, bad media URLs, or media with route SMS.',
  'none',
);
export const ProviderError = errorType(
  'ProviderError',
  'PROVIDER_ERROR',
  'The SMS provider refused the message or could not be reached; the credits were refunded. `code` is PROVIDER_BUSY when the send waited too long for a free slot (TWILIO_MAX_CONCURRENT_REQUESTS): nothing was sent.',
  'provider',
);
// PROVIDER_BUSY (no free slot for a Twilio call in time; nothing sent or charged) is a ProviderError too.
registry.set('PROVIDER_BUSY', registry.get('PROVIDER_ERROR')!);

export const ContactAlreadyExistsError = errorType(
  'ContactAlreadyExistsError',
  'CONTACT_ALREADY_EXISTS',
  'Your organization already has a contact with this phone number.',
  'phoneNumber',
);

export const MemberNotFoundError = errorType(
  'MemberNotFoundError',
  'MEMBER_NOT_FOUND',
  'A user id that names no member of your organization (an unknown id, or someone who is not a member).',
  'none',
);
export const SavedReplyNotFoundError = errorType(
  'SavedReplyNotFoundError',
  'SAVED_REPLY_NOT_FOUND',
  "No saved reply with this id in your organization: nothing was sent or charged.",
  'none',
);
export const SavedReplyNameTakenError = errorType(
  'SavedReplyNameTakenError',
  'SAVED_REPLY_NAME_TAKEN',
  'Another saved reply of your organization has this name (names are compared ignoring case).',
  'field',
);
export const InvalidSavedReplyError = errorType(
  'InvalidSavedReplyError',
  'INVALID_SAVED_REPLY',
  "A saved reply's name or body is empty or too long (name: 100 characters; body: 1,600, a message's limit). `field` names which.",
  'field',
);
export const ContactHasConversationError = errorType(
  'ContactHasConversationError',
  'CONTACT_HAS_CONVERSATION',
  'The contact has a conversation: deleteContact needs eraseHistory: true to delete it with its conversation, messages, notes and consent history.',
  'phoneNumber',
);
export const InvalidWebhookEndpointError = errorType(
  'InvalidWebhookEndpointError',
  'INVALID_WEBHOOK_ENDPOINT',
  "A webhook endpoint's events list is empty or names an unknown type, its description is too long (500 characters), or the organization has 20 endpoints already. `field` names which.",
  'field',
);
export const WebhookEndpointNotFoundError = errorType(
  'WebhookEndpointNotFoundError',
  'WEBHOOK_ENDPOINT_NOT_FOUND',
  'No webhook endpoint with this id in your organization.',
  'none',
);
export const WebhookDeliveryNotFoundError = errorType(
  'WebhookDeliveryNotFoundError',
  'WEBHOOK_DELIVERY_NOT_FOUND',
  'No webhook delivery with this id in your organization.',
  'none',
);

/** The union member for an AppError when one is registered, otherwise the AppError itself (a GraphQL error). */
export function typedError(error: AppError): Error {
  const entry = registry.get(error.code);
  return entry ? new entry.ErrorClass(error) : error;
}

/** The same, as a value to return from an `Error`-typed field; null when no type is registered for the code. */
export function errorView(error: AppError): DomainError | null {
  const entry = registry.get(error.code);
  if (!entry) return null;
  const view: ErrorView = { typeName: entry.name, code: error.code, message: error.message, details: error.details ?? {} };
  return view as unknown as DomainError;
}
