import type { WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow } from '../../db/webhook-tables.js';
import { AppError } from '../../errors.js';
import {
  attemptsOfDeliveries,
  deliveriesOfEndpoint,
  DELIVERY_STATUSES,
  redeliverWebhookEvent,
  sendTestWebhook,
} from '../../services/webhooks/deliveries.js';
import {
  createWebhookEndpoint,
  deleteWebhookEndpoint,
  listWebhookEndpoints,
  rotateWebhookSecret,
  updateWebhookEndpoint,
  WEBHOOK_EVENT_TYPES,
} from '../../services/webhooks/endpoints.js';
import { builder } from '../builder.js';
import { InvalidWebhookEndpointError, typedError, WebhookDeliveryNotFoundError, WebhookEndpointNotFoundError } from './errors.js';

// Outgoing webhooks (ADMIN and OWNER, integration tokens included): endpoints, their secrets, what was sent.

const enumName = (type: string) => type.replace('.', '_').toUpperCase();

const WebhookEventTypeEnum = builder.enumType('WebhookEventType', {
  description: 'What an endpoint subscribes to; the body `type` is the lower-case dotted form (MESSAGE_RECEIVED -> message.received).',
  values: Object.fromEntries(WEBHOOK_EVENT_TYPES.map((type) => [enumName(type), { value: type, description: `\`${type}\`` }])) as Record<
    string,
    { value: (typeof WEBHOOK_EVENT_TYPES)[number] }
  >,
});

const WebhookDeliveryStatusEnum = builder.enumType('WebhookDeliveryStatus', {
  values: {
    PENDING: { value: 'pending', description: 'Not delivered yet: due, in flight, or waiting for its next attempt.' },
    SUCCEEDED: { value: 'succeeded', description: 'The endpoint answered 2xx.' },
    FAILED: { value: 'failed', description: 'Every attempt of the retry schedule failed.' },
  } as const,
});

const WebhookAttemptRef = builder.objectRef<WebhookAttemptRow>('WebhookAttempt').implement({
  description: 'One POST of a delivery and what the endpoint answered.',
  fields: (t) => ({
    attempt: t.exposeInt('attempt', { description: '1 for the first attempt.' }),
    httpStatus: t.exposeInt('httpStatus', { nullable: true, description: 'null when no answer came (timeout, refused address, connection error).' }),
    durationMs: t.exposeInt('durationMs'),
    error: t.exposeString('error', { nullable: true }),
    response: t.exposeString('response', { nullable: true, description: "The first 1 KB of the answer's body." }),
    at: t.expose('at', { type: 'DateTime' }),
  }),
});

const WebhookDeliveryRef = builder.objectRef<WebhookDeliveryRow>('WebhookDelivery').implement({
  description: 'One event for one endpoint. Its id is the `webhook-id` header, the same on every attempt.',
  fields: (t) => ({
    id: t.exposeID('id'),
    eventType: t.exposeString('eventType', { description: 'The body `type` (message.received, ..., webhook.test).' }),
    status: t.field({ type: WebhookDeliveryStatusEnum, resolve: (row) => row.status as 'pending' }),
    attemptCount: t.exposeInt('attempts', { description: 'Attempts made (or under way).' }),
    nextAttemptAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the next attempt is due; null once it succeeded or failed.',
      resolve: (row) => (row.status === 'pending' ? row.nextAttemptAt : null),
    }),
    payload: t.field({ type: 'JSONObject', description: 'The body sent.', resolve: (row) => row.body }),
    attempts: t.field({
      type: [WebhookAttemptRef],
      description: 'Every attempt, oldest first.',
      resolve: (row, _args, ctx) => attemptsOfDeliveries(ctx.deps.db, row.organizationId, [row.id]),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const WebhookDeliveryConnectionRef = builder.connectionObject(
  { type: WebhookDeliveryRef, name: 'WebhookDeliveryConnection', description: 'Deliveries, newest first.' },
  { name: 'WebhookDeliveryEdge' },
);

const WebhookEndpointRef = builder.objectRef<WebhookEndpointRow>('WebhookEndpoint').implement({
  description: "A customer's URL that receives signed events (Standard Webhooks). Its secret is shown only when made (create, rotate).",
  fields: (t) => ({
    id: t.exposeID('id'),
    url: t.exposeString('url'),
    description: t.exposeString('description', { nullable: true }),
    events: t.field({ type: [WebhookEventTypeEnum], resolve: (row) => row.eventTypes as (typeof WEBHOOK_EVENT_TYPES)[number][] }),
    enabled: t.exposeBoolean('enabled'),
    disabledReason: t.exposeString('disabledReason', { nullable: true, description: 'Why the service disabled it (every attempt failing for 5 days).' }),
    secretRotationEndsAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: "Until then, deliveries carry the previous secret's signature too.",
      resolve: (row) => (row.previousSecretUntil && row.previousSecretUntil > new Date() ? row.previousSecretUntil : null),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    deliveries: t.field({
      type: WebhookDeliveryConnectionRef,
      description: 'Every event sent (or to send) to this endpoint, newest first, with each attempt. Default page 20, at most 100.',
      args: {
        first: t.arg.int(),
        after: t.arg.string(),
        status: t.arg({ type: [WebhookDeliveryStatusEnum], description: 'Only deliveries in these states.' }),
      },
      resolve: async (row, args, ctx) => {
        const page = await deliveriesOfEndpoint(ctx.deps.db, row.organizationId, row.id, args);
        const edges = page.deliveries.map((node) => ({ cursor: String(node.seq), node }));
        return {
          edges,
          pageInfo: { hasNextPage: page.hasNextPage, hasPreviousPage: Boolean(args.after), startCursor: edges[0]?.cursor ?? null, endCursor: page.endCursor },
        };
      },
    }),
  }),
});

const rethrowTyped = (error: unknown): never => {
  throw error instanceof AppError ? typedError(error) : error;
};

builder.queryField('webhookEndpoints', (t) =>
  t.field({
    type: [WebhookEndpointRef],
    description: "The organization's webhook endpoints (ADMIN and OWNER).",
    resolve: (_root, _args, ctx) => listWebhookEndpoints(ctx.deps.db, ctx.caller),
  }),
);

const CreateWebhookEndpointInput = builder.inputType('CreateWebhookEndpointInput', {
  fields: (t) => ({
    url: t.string({ required: true, description: 'https, resolving to public addresses only.' }),
    events: t.field({ type: [WebhookEventTypeEnum], required: true }),
    description: t.string(),
  }),
});

const UpdateWebhookEndpointInput = builder.inputType('UpdateWebhookEndpointInput', {
  description: 'Omitted (or null) fields stay as they are. enabled: true resumes delivery of what waited.',
  fields: (t) => ({
    url: t.string(),
    events: t.field({ type: [WebhookEventTypeEnum] }),
    description: t.string(),
    enabled: t.boolean(),
  }),
});

const EndpointWithSecret = (name: string, description: string) =>
  builder.objectRef<{ endpoint: WebhookEndpointRow; secret: string }>(name).implement({
    description,
    fields: (t) => ({
      endpoint: t.field({ type: WebhookEndpointRef, resolve: (p) => p.endpoint }),
      secret: t.exposeString('secret', { description: '`whsec_` + base64 of 32 random bytes: the key that signs. Shown this once.' }),
    }),
  });
const CreateWebhookEndpointPayload = EndpointWithSecret('CreateWebhookEndpointPayload', 'The new endpoint and its secret.');
const RotateWebhookSecretPayload = EndpointWithSecret('RotateWebhookSecretPayload', 'The new secret; the old one still signs too for 24 hours.');
const endpointPayload = (name: string, description: string) =>
  builder.objectRef<{ endpoint: WebhookEndpointRow }>(name).implement({
    description,
    fields: (t) => ({ endpoint: t.field({ type: WebhookEndpointRef, resolve: (p) => p.endpoint }) }),
  });
const UpdateWebhookEndpointPayload = endpointPayload('UpdateWebhookEndpointPayload', 'The endpoint as changed.');
const DeleteWebhookEndpointPayload = endpointPayload('DeleteWebhookEndpointPayload', 'The endpoint as it was; its pending deliveries are dropped.');
const deliveryPayload = (name: string, description: string) =>
  builder.objectRef<{ delivery: WebhookDeliveryRow }>(name).implement({
    description,
    fields: (t) => ({ delivery: t.field({ type: WebhookDeliveryRef, resolve: (p) => p.delivery }) }),
  });
const RedeliverWebhookEventPayload = deliveryPayload('RedeliverWebhookEventPayload', 'The delivery, due again now.');
const SendTestWebhookPayload = deliveryPayload('SendTestWebhookPayload', 'The `webhook.test` delivery, due now.');

builder.mutationFields((t) => ({
  createWebhookEndpoint: t.field({
    type: CreateWebhookEndpointPayload,
    description: 'Adds an endpoint (ADMIN and OWNER). A refused URL is BAD_USER_INPUT with extensions.errorCode INVALID_WEBHOOK_URL.',
    args: { input: t.arg({ type: CreateWebhookEndpointInput, required: true }) },
    errors: { types: [InvalidWebhookEndpointError], directResult: true, union: { name: 'CreateWebhookEndpointResult' } },
    resolve: (_root, { input }, ctx) => createWebhookEndpoint(ctx.deps, ctx.caller, input).catch(rethrowTyped),
  }),
  updateWebhookEndpoint: t.field({
    type: UpdateWebhookEndpointPayload,
    description: 'Changes an endpoint (ADMIN and OWNER); a new URL is checked as on create.',
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateWebhookEndpointInput, required: true }) },
    errors: { types: [WebhookEndpointNotFoundError, InvalidWebhookEndpointError], directResult: true, union: { name: 'UpdateWebhookEndpointResult' } },
    resolve: async (_root, { id, input }, ctx) => ({ endpoint: await updateWebhookEndpoint(ctx.deps, ctx.caller, String(id), input).catch(rethrowTyped) }),
  }),
  deleteWebhookEndpoint: t.field({
    type: DeleteWebhookEndpointPayload,
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [WebhookEndpointNotFoundError], directResult: true, union: { name: 'DeleteWebhookEndpointResult' } },
    resolve: async (_root, { id }, ctx) => ({ endpoint: await deleteWebhookEndpoint(ctx.deps.db, ctx.caller, String(id)).catch(rethrowTyped) }),
  }),
  rotateWebhookSecret: t.field({
    type: RotateWebhookSecretPayload,
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [WebhookEndpointNotFoundError], directResult: true, union: { name: 'RotateWebhookSecretResult' } },
    resolve: (_root, { id }, ctx) => rotateWebhookSecret(ctx.deps.db, ctx.caller, String(id)).catch(rethrowTyped),
  }),
  redeliverWebhookEvent: t.field({
    type: RedeliverWebhookEventPayload,
    args: { deliveryId: t.arg.id({ required: true }) },
    errors: { types: [WebhookDeliveryNotFoundError, WebhookEndpointNotFoundError], directResult: true, union: { name: 'RedeliverWebhookEventResult' } },
    resolve: async (_root, { deliveryId }, ctx) => ({ delivery: await redeliverWebhookEvent(ctx.deps.db, ctx.caller, String(deliveryId)).catch(rethrowTyped) }),
  }),
  sendTestWebhook: t.field({
    type: SendTestWebhookPayload,
    args: { endpointId: t.arg.id({ required: true }) },
    errors: { types: [WebhookEndpointNotFoundError], directResult: true, union: { name: 'SendTestWebhookResult' } },
    resolve: async (_root, { endpointId }, ctx) => ({ delivery: await sendTestWebhook(ctx.deps.db, ctx.caller, String(endpointId)).catch(rethrowTyped) }),
  }),
}));
