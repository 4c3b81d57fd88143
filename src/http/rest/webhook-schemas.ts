import { z } from 'zod';
import { WEBHOOK_EVENT_TYPES } from '../../services/webhooks/endpoints.js';
import { ConversationJson, MessageJson } from './schemas.js';

// The bodies of outgoing webhooks as zod schemas, in the REST reference's shapes (schemas.ts), served as
// JSON Schema at /api/webhooks/schema.json; tests validate every body received against them.

const timestamp = z.iso.datetime({ precision: 3 });
const uuid = z.guid();

export const WebhookMessageJson = MessageJson.extend({
  phoneNumber: z.string().meta({ description: "The contact's number, E.164." }),
  conversationId: uuid,
});
export const WebhookMessageStatusJson = WebhookMessageJson.extend({
  providerStatus: z.string().meta({ description: "The provider's own status (queued, sent, delivered, undelivered, failed, read, ...)." }),
  errorCode: z.int().nullable().meta({ description: "The provider's error code (Twilio's numeric codes), when it gave one." }),
});
export const WebhookConversationJson = ConversationJson.extend({
  id: uuid,
  status: z.enum(['OPEN', 'PENDING', 'RESOLVED', 'SNOOZED']),
  assigneeId: uuid.nullable().meta({ description: 'The member it is assigned to; null when unassigned.' }),
});
export const WebhookConsentJson = z.strictObject({
  id: uuid.meta({ description: "The contact's id." }),
  phoneNumber: z.string(),
  firstName: z.string().nullable(),
  lastName: z.string().nullable(),
  isOptedIn: z.boolean(),
  keyword: z.string().nullable().meta({ description: 'The keyword received (STOP, START, ...), null otherwise.' }),
  source: z.enum(['keyword', 'provider_error', 'api']),
  messageId: uuid.nullable().meta({ description: 'The message that caused it, when one did.' }),
  timestamp,
});
export const WebhookTestJson = z.strictObject({ endpointId: uuid, message: z.string() });

const event = <T extends string, D extends z.ZodType>(type: T, data: D, description: string) =>
  z.strictObject({ type: z.literal(type), timestamp: timestamp.meta({ description: 'When the event was written.' }), data }).meta({ description });

export const webhookEventSchemas = {
  'message.received': event('message.received', WebhookMessageJson, 'An inbound message was stored.'),
  'message.sent': event('message.sent', WebhookMessageJson, 'The provider accepted a reply.'),
  'message.status_changed': event('message.status_changed', WebhookMessageStatusJson, "A reply's delivery status moved forward."),
  'conversation.updated': event('conversation.updated', WebhookConversationJson, 'A conversation was read, archived, starred, its status changed or it was (un)assigned.'),
  'contact.opted_out': event('contact.opted_out', WebhookConsentJson, 'A contact opted out (STOP, a provider refusal, the API).'),
  'contact.opted_in': event('contact.opted_in', WebhookConsentJson, 'A contact opted in (START, the API).'),
  'webhook.test': event('webhook.test', WebhookTestJson, 'Sent by sendTestWebhook.'),
} satisfies Record<(typeof WEBHOOK_EVENT_TYPES)[number] | 'webhook.test', z.ZodType>;

export const WebhookEventJson = z.discriminatedUnion('type', Object.values(webhookEventSchemas) as never);

/** One JSON Schema document: the union of every event body, each also under $defs by its type. */
export function buildWebhookJsonSchema(): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  for (const [type, schema] of Object.entries(webhookEventSchemas)) registry.add(schema, { id: type });
  const { schemas } = z.toJSONSchema(registry, { uri: (id) => `#/$defs/${id}` });
  const $defs = Object.fromEntries(Object.entries(schemas).map(([id, schema]) => [id, { ...schema, $schema: undefined, $id: undefined }]));
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'Conversations gateway webhook event',
    description: 'The body of every outgoing webhook (Standard Webhooks headers: webhook-id, webhook-timestamp, webhook-signature).',
    oneOf: Object.keys(webhookEventSchemas).map((type) => ({ $ref: `#/$defs/${type}` })),
    $defs,
  };
}
