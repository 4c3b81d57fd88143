import { GraphQLError } from 'graphql';

// Error codes are defined once here and flow to every surface: GraphQL (`extensions.code` is the
// GraphQL category, `extensions.errorCode` the domain code) and REST (`code` plus the HTTP status).

export const errorCatalog = {
  UNAUTHENTICATED: { status: 401, category: 'UNAUTHENTICATED' },
  FORBIDDEN: { status: 403, category: 'FORBIDDEN' },
  /** A webhook whose X-Twilio-Signature does not match: not from Twilio, or altered on the way. */
  INVALID_SIGNATURE: { status: 403, category: 'FORBIDDEN' },
  BAD_USER_INPUT: { status: 400, category: 'BAD_USER_INPUT' },
  INVALID_PHONE_NUMBER: { status: 400, category: 'BAD_USER_INPUT' },
  INVALID_CURSOR: { status: 400, category: 'BAD_USER_INPUT' },
  INVALID_PARAMETER: { status: 400, category: 'BAD_USER_INPUT' },
  INVALID_BODY: { status: 400, category: 'BAD_USER_INPUT' },
  NOT_FOUND: { status: 404, category: 'NOT_FOUND' },
  /** A user token of someone in several organizations, without x-organization-id to pick one. */
  ORGANIZATION_REQUIRED: { status: 400, category: 'BAD_USER_INPUT' },
  /** A user id that names no member of the caller's organization. */
  MEMBER_NOT_FOUND: { status: 400, category: 'BAD_USER_INPUT' },
  /** addMember for someone who is a member already. */
  MEMBER_ALREADY_EXISTS: { status: 409, category: 'BAD_USER_INPUT' },
  /** A change that would leave the organization without an OWNER. */
  LAST_OWNER: { status: 400, category: 'BAD_USER_INPUT' },
  /** rescheduleReply or cancelScheduledReply on a reply that is no longer SCHEDULED (sent, failed, canceled). */
  NOT_SCHEDULED: { status: 409, category: 'BAD_USER_INPUT' },
  /** A scheduled reply due longer ago than SCHEDULED_REPLY_MAX_LATENESS_MS when an instance got to it: failed, not sent. */
  SCHEDULE_EXPIRED: { status: 410, category: 'SCHEDULE_EXPIRED' },
  METHOD_NOT_ALLOWED: { status: 405, category: 'BAD_REQUEST' },
  PAYLOAD_TOO_LARGE: { status: 413, category: 'BAD_USER_INPUT' },
  /** Too many requests for one API token in the current minute (RATE_LIMIT_PER_MINUTE); retry after Retry-After. */
  RATE_LIMITED: { status: 429, category: 'RATE_LIMITED' },
  /** A GraphQL operation over the depth, alias, directive, token or cost limits. */
  QUERY_TOO_COMPLEX: { status: 400, category: 'QUERY_TOO_COMPLEX' },
  CONVERSATION_NOT_FOUND: { status: 404, category: 'NOT_FOUND' },
  CONTACT_NOT_FOUND: { status: 400, category: 'CONTACT_NOT_FOUND' },
  CONTACT_OPTED_OUT: { status: 400, category: 'CONTACT_OPTED_OUT' },
  CONTACT_NON_TEXTABLE: { status: 400, category: 'CONTACT_NON_TEXTABLE' },
  CONTACT_TEXTABILITY_PENDING: { status: 400, category: 'CONTACT_TEXTABILITY_PENDING' },
  CONTACT_ALREADY_EXISTS: { status: 409, category: 'CONTACT_ALREADY_EXISTS' },
  /** deleteContact of a contact that has a conversation, without eraseHistory. */
  CONTACT_HAS_CONVERSATION: { status: 409, category: 'CONTACT_HAS_CONVERSATION' },
  NO_FROM_NUMBER: { status: 400, category: 'NO_FROM_NUMBER' },
  FROM_NUMBER_FORBIDDEN: { status: 403, category: 'FROM_NUMBER_FORBIDDEN' },
  INSUFFICIENT_CREDITS: { status: 402, category: 'INSUFFICIENT_CREDITS' },
  INVALID_MESSAGE: { status: 400, category: 'INVALID_MESSAGE' },
  /** A saved reply id that names none of the organization's saved replies. */
  SAVED_REPLY_NOT_FOUND: { status: 404, category: 'NOT_FOUND' },
  /** Another saved reply of the organization has this name (compared case-insensitively). */
  SAVED_REPLY_NAME_TAKEN: { status: 409, category: 'BAD_USER_INPUT' },
  /** A saved reply's name or body is empty or too long. */
  INVALID_SAVED_REPLY: { status: 400, category: 'BAD_USER_INPUT' },
  /** A webhook URL refused: not https (without WEBHOOK_ALLOW_INSECURE), or not resolving to public addresses only. */
  INVALID_WEBHOOK_URL: { status: 400, category: 'BAD_USER_INPUT' },
  /** A webhook endpoint's events list or description is empty or too long. */
  INVALID_WEBHOOK_ENDPOINT: { status: 400, category: 'BAD_USER_INPUT' },
  /** An endpoint or delivery id that names none of the organization's. */
  WEBHOOK_ENDPOINT_NOT_FOUND: { status: 404, category: 'NOT_FOUND' },
  WEBHOOK_DELIVERY_NOT_FOUND: { status: 404, category: 'NOT_FOUND' },
  PROVIDER_ERROR: { status: 502, category: 'PROVIDER_ERROR' },
  /** No free slot among TWILIO_MAX_CONCURRENT_REQUESTS within SMS_PROVIDER_TIMEOUT_MS: nothing sent, nothing charged. */
  PROVIDER_BUSY: { status: 503, category: 'PROVIDER_ERROR' },
  /** The provider call got no answer: the reply stays queued and charged, and is settled with the provider. Do not resend. */
  SEND_IN_DOUBT: { status: 504, category: 'SEND_IN_DOUBT' },
  SERVICE_UNAVAILABLE: { status: 503, category: 'SERVICE_UNAVAILABLE' },
  INTERNAL_ERROR: { status: 500, category: 'INTERNAL_SERVER_ERROR' },
} as const;

export type ErrorCode = keyof typeof errorCatalog;

/** An error we throw on purpose: its message is safe to show to the caller. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;
  /**
   * A refusal of one field (a role without the right to it), not of the whole request: on GraphQL the
   * rest of the operation still answers, with HTTP 200.
   */
  readonly fieldLevel: boolean;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options: { fieldLevel?: boolean } = {}) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = errorCatalog[code].status;
    this.details = details;
    this.fieldLevel = options.fieldLevel ?? false;
  }
}

export const badUserInput = (message: string, details?: Record<string, unknown>) =>
  new AppError('BAD_USER_INPUT', message, details);

/** Errors about the credentials of the whole request (raised before any field runs): they set the HTTP status. */
const REQUEST_LEVEL = new Set<ErrorCode>(['UNAUTHENTICATED', 'FORBIDDEN', 'ORGANIZATION_REQUIRED']);

/** The GraphQL face of an AppError: not masked, carries its codes and HTTP status. */
export function toGraphQLError(error: AppError, located?: GraphQLError): GraphQLError {
  const { category } = errorCatalog[error.code];
  return new GraphQLError(error.message, {
    nodes: located?.nodes,
    source: located?.source,
    positions: located?.positions,
    path: located?.path,
    originalError: error,
    extensions: {
      code: category,
      ...(category !== error.code ? { errorCode: error.code } : {}),
      ...error.details,
      // Only errors that concern the whole request set the HTTP status; a field error keeps 200.
      ...(REQUEST_LEVEL.has(error.code) && !error.fieldLevel ? { http: { status: error.status } } : {}),
    },
  });
}
