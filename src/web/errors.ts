// A clear sentence for every code of the gateway's error catalogue (src/errors.ts), as the page shows them.
const MESSAGES: Record<string, string> = {
  UNAUTHENTICATED: 'Your API token was not accepted. Sign in again.',
  FORBIDDEN: 'Your role does not allow this.',
  BAD_USER_INPUT: 'The gateway refused this input.',
  INVALID_PHONE_NUMBER: 'That is not a valid phone number.',
  INVALID_CURSOR: 'The list moved on; reload it.',
  INVALID_PARAMETER: 'A value was not accepted.',
  NOT_FOUND: 'Not found.',
  ORGANIZATION_REQUIRED: 'This token works in several organizations: give an organization id.',
  MEMBER_NOT_FOUND: 'That person is not a member of this organization.',
  NOT_SCHEDULED: 'That reply is no longer scheduled.',
  SCHEDULE_EXPIRED: 'The scheduled time passed before it could be sent.',
  RATE_LIMITED: 'Too many requests; try again in a moment.',
  QUERY_TOO_COMPLEX: 'The request was too large.',
  CONVERSATION_NOT_FOUND: 'No conversation with this number.',
  CONTACT_NOT_FOUND: 'No contact has this number.',
  CONTACT_OPTED_OUT: 'This contact opted out (STOP): they cannot be texted until they opt back in.',
  CONTACT_NON_TEXTABLE: 'This number cannot receive texts (a landline or VoIP line).',
  CONTACT_TEXTABILITY_PENDING: 'Still checking whether this number can receive texts; try again shortly.',
  NO_FROM_NUMBER: 'This organization has no number to send from.',
  FROM_NUMBER_FORBIDDEN: 'You may not send from that number.',
  INSUFFICIENT_CREDITS: 'Not enough credits to send this.',
  INVALID_MESSAGE: 'The message is empty or too long.',
  SAVED_REPLY_NOT_FOUND: 'That saved reply no longer exists.',
  PROVIDER_ERROR: 'The SMS provider refused the message.',
  SERVICE_UNAVAILABLE: 'The gateway is unavailable; retrying.',
  INTERNAL_SERVER_ERROR: 'Something went wrong on the server.',
};

export function describeError(code: string | undefined, fallback?: string): string {
  return (code && MESSAGES[code]) || fallback || 'Something went wrong.';
}

/** An urql CombinedError or a typed error result, as one sentence. */
export function errorText(error: { graphQLErrors?: Array<{ message: string; extensions?: Record<string, unknown> }>; networkError?: Error; message?: string } | null | undefined): string | null {
  if (!error) return null;
  if (error.networkError) return 'Cannot reach the gateway.';
  const first = error.graphQLErrors?.[0];
  const code = (first?.extensions?.errorCode ?? first?.extensions?.code) as string | undefined;
  return describeError(code, first?.message ?? error.message);
}
