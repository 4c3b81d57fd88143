import { z } from 'zod';

// The published REST contract as zod schemas: the reply body is validated with them, response mappers are
// typed by them, and the OpenAPI document's JSON Schemas are generated from them, so the three cannot drift.

/** UTC ISO 8601 with milliseconds and `Z`, as `Date#toISOString` writes it. */
const timestamp = z.iso.datetime({ precision: 3 });
const uuid = z.guid();
const e164 = z
  .string()
  .regex(/^\+[1-9]\d{1,14}$/)
  .meta({ description: 'E.164 phone number.', examples: ['+19195551234'] });

export const ConversationJson = z
  .strictObject({
    phoneNumber: e164,
    contactId: uuid.nullable().meta({ description: 'null when the number has no contact record.' }),
    firstName: z.string().nullable(),
    lastName: z.string().nullable(),
    lastMessage: z.string().nullable().meta({ description: 'Text of the most recent message.' }),
    lastMessageAt: timestamp,
    unreadCount: z.int().min(0),
    isArchived: z.boolean(),
    isStarred: z.boolean(),
  })
  .meta({ description: 'One two-way thread, keyed by the contact phone number.' });

export const messageStatuses = ['sent', 'delivered', 'failed', 'undelivered'] as const;
export const MessageStatusJson = z
  .enum(messageStatuses)
  .meta({ description: 'Provider states before `sent` (accepted, scheduled, queued, sending) are shown as `sent`.' });

export const MessageJson = z
  .strictObject({
    id: uuid,
    direction: z.enum(['incoming', 'outgoing']),
    message: z.string(),
    mediaUrl: z.string().nullable().meta({ description: 'First media URL, or null.' }),
    mediaUrls: z.array(z.string()).nullable().meta({ description: 'Every media URL, or null when there is none.' }),
    status: MessageStatusJson.nullable().meta({ description: 'Delivery status of an outgoing message; null for incoming.' }),
    sentiment: z.enum(['positive', 'negative', 'neutral']).nullable(),
    sentimentScore: z.number().nullable(),
    messageCategory: z.string().nullable().meta({ description: 'general, question, opt_out, opt_in or help.' }),
    requiresResponse: z.boolean().nullable(),
    optOutDetected: z.boolean().nullable(),
    timestamp,
  })
  .meta({ description: 'One SMS or MMS.' });

export const MessagePageJson = z.strictObject({
  messages: z.array(MessageJson).meta({ description: 'Newest first.' }),
  timezone: z.string().meta({ description: "The organization's IANA timezone.", examples: ['America/New_York'] }),
  cursor: z.string().nullable().meta({ description: 'Pass as `cursor` to read the next, older page; null on the last page.' }),
  hasMore: z.boolean().meta({ description: 'true when older messages remain.' }),
});

/** The reply body. Unknown fields are ignored, as clients may send more than we read. */
export const ReplyRequestJson = z.object({
  message: z.string().min(1).meta({ description: 'The message text to send. Must be a non-empty string.' }),
  fromPhoneNumberId: uuid
    .nullish()
    .meta({ description: "UUID of the sending phone number. Defaults to the organization's default phone number." }),
  mediaUrl: z.string().nullish().meta({ description: 'Public URL of media to attach; the message is then sent as MMS.' }),
  mediaUrls: z.array(z.string()).nullish().meta({ description: 'Several media URLs (an extension of the published API).' }),
  normalizeText: z
    .boolean()
    .nullish()
    .meta({ description: 'When true (default), smart quotes and other non-GSM characters are normalized before sending.' }),
  forceRoute: z.enum(['AUTO', 'SMS', 'MMS']).nullish().meta({ description: 'Override routing: AUTO (default), SMS or MMS.' }),
});
export type ReplyRequest = z.infer<typeof ReplyRequestJson>;

export const ReplyResponseJson = z.strictObject({
  success: z.literal(true),
  messageLog: z.strictObject({
    id: uuid,
    phoneNumber: e164,
    message: z.string().meta({ description: 'The text as sent (normalized, links shortened).' }),
    status: MessageStatusJson,
    sentAt: timestamp,
  }),
  provider: z.string().meta({ examples: ['twilio'] }),
  providerMessageId: z.string().nullable(),
});

export const ErrorJson = z.strictObject({
  success: z.literal(false),
  code: z.string().meta({ description: 'Machine-readable error code.' }),
  message: z.string().min(1).meta({ description: 'Human-readable explanation.' }),
});

/** HTTP 504 of a reply: the provider did not answer, the reply stays queued and is settled later (do not resend). */
export const SendInDoubtJson = z.strictObject({
  success: z.literal(false),
  code: z.literal('SEND_IN_DOUBT'),
  message: z.string().min(1).meta({ description: 'Why, and that the reply must not be sent again: it will be settled.' }),
  messageLog: z.strictObject({
    id: uuid,
    phoneNumber: e164,
    message: z.string(),
    status: z.string().meta({ description: '`queued` until settled: then `sent` (or later) or `failed` and refunded.', examples: ['queued'] }),
    sentAt: timestamp,
  }),
});

export type ConversationJson = z.infer<typeof ConversationJson>;
export type MessageJson = z.infer<typeof MessageJson>;
export type MessagePageJson = z.infer<typeof MessagePageJson>;
export type ReplyResponseJson = z.infer<typeof ReplyResponseJson>;
export type ErrorJson = z.infer<typeof ErrorJson>;
export type SendInDoubtJson = z.infer<typeof SendInDoubtJson>;

/** Named schemas, emitted as `#/components/schemas/<name>` in the OpenAPI document. */
export const componentSchemas = {
  Conversation: ConversationJson,
  Message: MessageJson,
  MessagePage: MessagePageJson,
  ReplyRequest: ReplyRequestJson,
  ReplyResponse: ReplyResponseJson,
  Error: ErrorJson,
  SendInDoubt: SendInDoubtJson,
} as const;
