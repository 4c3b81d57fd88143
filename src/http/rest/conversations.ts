import type { ConversationRow, MessageRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import type { Loaders } from '../../loaders/index.js';
import { listConversations, type ConversationListItem } from '../../services/conversations.js';
import { messageColumns, messageCursor, messagePageRequest } from '../../services/messages.js';
import { getOrganization } from '../../services/organizations.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../../services/pages.js';
import { sendReply } from '../../services/replies/index.js';
import type { RestRoute } from './route.js';
import { booleanParam, limitParam, phoneParam, readJsonObject, singleParam } from './request.js';
import { ReplyRequestJson, type ConversationJson, type MessageJson, type MessagePageJson, type ReplyResponseJson, type SendInDoubtJson } from './schemas.js';

// The published conversations API (shared/spec/rest-conversations.md) over the same services and
// loaders as the GraphQL resolvers: these handlers only translate parameters and shapes.

const shownStatus: Record<string, MessageJson['status']> = {
  accepted: 'sent',
  scheduled: 'sent',
  queued: 'sent',
  sending: 'sent',
  sent: 'sent',
  delivered: 'delivered',
  read: 'delivered',
  partially_delivered: 'delivered',
  undelivered: 'undelivered',
  failed: 'failed',
  canceled: 'failed',
};

/** The published API knows four delivery states; earlier provider states read as `sent`. null for incoming. */
export function publishedStatus(message: Pick<MessageRow, 'direction' | 'status'>): MessageJson['status'] {
  if (message.direction !== 'outgoing') return null;
  return shownStatus[message.status ?? ''] ?? 'sent';
}

export function conversationJson({ conversation, contact, lastMessage }: ConversationListItem): ConversationJson {
  return {
    phoneNumber: conversation.phoneNumber,
    contactId: contact?.id ?? null,
    firstName: contact?.firstName ?? null,
    lastName: contact?.lastName ?? null,
    lastMessage: lastMessage?.body ?? conversation.lastMessageBody ?? null,
    lastMessageAt: conversation.lastMessageAt.toISOString(),
    unreadCount: conversation.unreadCount,
    isArchived: conversation.isArchived,
    isStarred: conversation.isStarred,
  };
}

export function messageJson(message: MessageRow): MessageJson {
  const mediaUrls = message.mediaUrls.length > 0 ? message.mediaUrls : null;
  return {
    id: message.id,
    direction: message.direction,
    message: message.body,
    mediaUrl: mediaUrls?.[0] ?? null,
    mediaUrls,
    status: publishedStatus(message),
    sentiment: message.sentiment ?? null,
    sentimentScore: message.sentimentScore ?? null,
    messageCategory: message.category ?? null,
    requiresResponse: message.requiresResponse ?? null,
    optOutDetected: message.optOutDetected ?? null,
    timestamp: message.createdAt.toISOString(),
  };
}

/** What messageJson reads: a page reads only these columns. */
const MESSAGE_JSON_COLUMNS = messageColumns([
  'direction',
  'body',
  'mediaUrls',
  'status',
  'sentiment',
  'sentimentScore',
  'category',
  'requiresResponse',
  'optOutDetected',
] satisfies (keyof MessageRow)[]);

const authErrors = ['UNAUTHENTICATED', 'FORBIDDEN', 'ORGANIZATION_REQUIRED'] as const;

export const listConversationsRoute: RestRoute = {
  method: 'GET',
  path: '/api/conversations',
  operationId: 'listConversations',
  summary: 'List conversations',
  description:
    'Every conversation of the organization matching the filters, most recent activity first. Archived conversations are left out unless `includeArchived=true`.',
  query: {
    unread: { type: 'boolean', description: 'When `true`, only conversations with unread inbound messages.' },
    unresponded: {
      type: 'boolean',
      description: 'When `true`, only conversations whose last message was inbound (the contact is waiting for a reply).',
    },
    search: { type: 'string', description: 'Contact first or last name (case-insensitive, partial) or phone digits in any format.' },
    includeArchived: { type: 'boolean', description: 'When `true`, archived conversations are included. Defaults to `false`.' },
  },
  response: { description: 'The matching conversations, most recent first.', schema: { type: 'array', items: { $ref: 'Conversation' } } },
  errors: ['INVALID_PARAMETER', ...authErrors],
  async handle({ deps, caller, query }) {
    const filter = {
      unread: booleanParam(query, 'unread'),
      unresponded: booleanParam(query, 'unresponded'),
      includeArchived: booleanParam(query, 'includeArchived'),
      search: singleParam(query, 'search'),
    };
    // No `first`: every match, still one statement joining contact and last message.
    const { items } = await listConversations(deps.db, caller.organizationId, { filter });
    return { status: 200, body: items.map(conversationJson) };
  },
};

export const conversationMessagesRoute: RestRoute = {
  method: 'GET',
  path: '/api/conversations/{phoneNumber}/messages',
  operationId: 'getConversationMessages',
  summary: 'Get conversation messages',
  description:
    'Message history of one conversation, newest first, with keyset pagination: pass the returned `cursor` to read older messages. A number without a conversation answers an empty list.',
  pathParams: {
    phoneNumber: {
      description:
        "The contact's phone number in any standard US format, URL-encoded or not (`%2B19195551234`, `(919) 555-1234`, `919.555.1234`).",
    },
  },
  query: {
    limit: {
      type: 'integer',
      minimum: 1,
      description: `Messages per page. Default ${DEFAULT_PAGE_SIZE}; values above ${MAX_PAGE_SIZE} are read as ${MAX_PAGE_SIZE}.`,
    },
    cursor: { type: 'string', description: 'The `cursor` of a previous response, to fetch older messages.' },
  },
  response: { description: 'One page of messages, newest first.', schema: { $ref: 'MessagePage' } },
  errors: ['INVALID_PHONE_NUMBER', 'INVALID_PARAMETER', 'INVALID_CURSOR', ...authErrors],
  async handle({ deps, caller, loaders, query, params }) {
    const phoneNumber = phoneParam(params.phoneNumber!);
    const limit = limitParam(query, 'limit', DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    const cursor = singleParam(query, 'cursor') || null;
    // One statement: the organization's timezone, the conversation and its page (LATERAL joins).
    // Replies still scheduled, or canceled, are no part of the history the published route describes (its
    // statuses are sent, delivered, failed, undelivered): historyOnly leaves them out of the page.
    const read = await loaders.conversationPageWithTimezone(phoneNumber, { first: limit, after: cursor, historyOnly: true }, MESSAGE_JSON_COLUMNS);
    // No organization (deleted under a cached token): getOrganization answers as it always has.
    const timezone = read?.timezone ?? (await getOrganization(deps.db, caller.organizationId)).timezone;
    const conversation = read?.conversation ?? null;
    // Cursors are scoped to a conversation, so none is valid for a number without one.
    if (!conversation && cursor) throw invalidCursor();
    const page = conversation ? await readPage(loaders, conversation, limit, cursor) : null;
    const messages = page?.messages ?? [];
    const body: MessagePageJson = {
      messages: messages.map(messageJson),
      timezone,
      cursor: page?.hasNextPage && messages.length > 0 ? messageCursor(messages.at(-1)!) : null,
      hasMore: page?.hasNextPage ?? false,
    };
    return { status: 200, body };
  },
};

const invalidCursor = () =>
  new AppError('INVALID_CURSOR', 'cursor is not a valid cursor for this conversation: pass the `cursor` of a previous response.', {
    parameter: 'cursor',
  });

async function readPage(loaders: Loaders, conversation: ConversationRow, limit: number, cursor: string | null) {
  let request;
  try {
    // The GraphQL connection's own page rules: `after` walks to older messages.
    request = messagePageRequest(conversation.id, { first: limit, after: cursor, historyOnly: true }, MESSAGE_JSON_COLUMNS);
  } catch (error) {
    throw error instanceof AppError && error.code === 'INVALID_CURSOR' ? invalidCursor() : error;
  }
  // Read already by conversationWithMessagePage, unless its cursor was refused (then the line above threw).
  return loaders.messagePage(conversation.id, request);
}

export const replyRoute: RestRoute = {
  method: 'POST',
  path: '/api/conversations/{phoneNumber}/reply',
  operationId: 'sendReply',
  summary: 'Send a reply',
  description:
    'Sends a reply to the contact with this phone number. The contact must exist, be textable and opted in. Replies bypass quiet hours. With an `Idempotency-Key` header, a retried request answers the first result and sends nothing twice.',
  pathParams: {
    phoneNumber: { description: "The recipient's phone number in any standard US format, URL-encoded or not." },
  },
  headers: {
    'Idempotency-Key': {
      description: 'Optional. Requests with the same key send at most one message; a retry gets the first answer.',
      maxLength: 255,
    },
  },
  requestBody: { $ref: 'ReplyRequest' },
  response: { description: 'The message was handed to the provider.', schema: { $ref: 'ReplyResponse' } },
  errors: [
    'INVALID_PHONE_NUMBER',
    'INVALID_BODY',
    'INVALID_MESSAGE',
    'INVALID_PARAMETER',
    'CONTACT_NOT_FOUND',
    'CONTACT_OPTED_OUT',
    'CONTACT_NON_TEXTABLE',
    'CONTACT_TEXTABILITY_PENDING',
    'NO_FROM_NUMBER',
    'INSUFFICIENT_CREDITS',
    'FROM_NUMBER_FORBIDDEN',
    'PAYLOAD_TOO_LARGE',
    'PROVIDER_ERROR',
    'PROVIDER_BUSY',
    ...authErrors,
  ],
  otherResponses: {
    '504': {
      description:
        '`SEND_IN_DOUBT`: the SMS provider did not answer in time, so the reply may or may not have gone out. Do not send it again: it stays queued with its credits reserved and is settled (sent, or failed and refunded) within about twice the provider timeout. A retry with the same `Idempotency-Key` answers its state.',
      schema: { $ref: 'SendInDoubt' },
    },
  },
  async handle({ deps, caller, req, params }) {
    const phoneNumber = phoneParam(params.phoneNumber!);
    const idempotencyKey = idempotencyKeyOf(req.headers['idempotency-key']);
    const body = parseReplyBody(await readJsonObject(req));
    const outcome = await sendReply(deps, caller.organizationId, { ...body, phoneNumber, idempotencyKey, sentByUserId: caller.userId });
    if (!outcome.ok && outcome.inDoubt) {
      const inDoubt: SendInDoubtJson = {
        success: false,
        code: 'SEND_IN_DOUBT',
        message: outcome.error.message,
        messageLog: {
          id: outcome.inDoubt.id,
          phoneNumber,
          message: outcome.inDoubt.body,
          status: outcome.inDoubt.status ?? 'queued',
          sentAt: outcome.inDoubt.createdAt.toISOString(),
        },
      };
      return { status: 504, body: inDoubt };
    }
    if (!outcome.ok) throw outcome.error;
    const response: ReplyResponseJson = {
      success: true,
      messageLog: {
        id: outcome.message.id,
        phoneNumber,
        message: outcome.message.body,
        status: publishedStatus(outcome.message) ?? 'sent',
        sentAt: outcome.message.createdAt.toISOString(),
      },
      provider: outcome.provider,
      providerMessageId: outcome.providerMessageId,
    };
    return { status: 200, body: response };
  },
};

/** The header as given: its rules (length) are sendReply's, shared with GraphQL. */
const idempotencyKeyOf = (header: string | string[] | undefined): string | null =>
  header === undefined ? null : Array.isArray(header) ? header.join(',') : header;

/** Type checks only; what a message may contain is sendReply's rule. A bad `message` is INVALID_MESSAGE. */
function parseReplyBody(raw: Record<string, unknown>) {
  const parsed = ReplyRequestJson.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.join('.') || 'body';
  if (field === 'message') {
    throw new AppError('INVALID_MESSAGE', 'message is required and must be a non-empty string.', { field });
  }
  throw new AppError('INVALID_BODY', `${field}: ${issue.message}`, { field });
}
