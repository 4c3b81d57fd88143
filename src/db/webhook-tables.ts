import { sql } from 'drizzle-orm';
import { bigserial, boolean, foreignKey, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { organizations } from './tables.js';

// Outgoing webhooks (issue 18): the customer's endpoints; the outbox (each event written once, in the
// transaction of the change it reports); the deliveries the dispatchers fan each event out to (one per event
// and endpoint) with every attempt made. organization_id leads the keys as in tables.ts.

const timestamptz = (name: string) => timestamp(name, { withTimezone: true, precision: 3, mode: 'date' });

export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull(),
    url: text('url').notNull(),
    description: text('description'),
    /** Event type strings (`message.received`, ...) it is subscribed to. */
    eventTypes: text('event_types').array().notNull(),
    enabled: boolean('enabled').notNull().default(true),
    /** Why it was disabled by the service (every attempt failing for days); null when enabled or disabled by hand. */
    disabledReason: text('disabled_reason'),
    /** `whsec_…`: the signing key must be known in full to sign, so it is kept as given (see README Security). */
    secret: text('secret').notNull(),
    /** The secret before the last rotation: deliveries carry its signature too until previous_secret_until. */
    previousSecret: text('previous_secret'),
    previousSecretUntil: timestamptz('previous_secret_until'),
    /** First failed attempt since the last success: past WEBHOOK_DISABLE_AFTER_MS the endpoint is disabled. */
    failingSince: timestamptz('failing_since'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.id] })],
);

/**
 * The outbox: each event once, written in the statement or transaction of the change it reports (only when
 * an enabled endpoint of its organization subscribes to its type). A dispatcher moves events from here into
 * webhook_deliveries, one per subscribed endpoint, deleting them in the same statement: the request that
 * made the change writes one row, whatever the number of endpoints. `seq` is the order events are fanned
 * out in (so deliveries of one key keep it).
 */
export const webhookEvents = pgTable('webhook_events', {
  seq: bigserial('seq', { mode: 'number' }).primaryKey(),
  organizationId: uuid('organization_id').notNull(),
  type: text('type').notNull(),
  orderKey: text('order_key'),
  /** The body to send: `{ type, timestamp, data }`. */
  body: jsonb('body').$type<Record<string, unknown>>().notNull(),
  createdAt: timestamptz('created_at').notNull().defaultNow(),
});

/**
 * One event for one endpoint. Its id is the `webhook-id` header (the same on every retry). `seq` orders the
 * events of one `order_key` (a conversation, or a contact for consent events) for one endpoint: a delivery
 * is claimed only when no earlier one of its key is still pending.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    organizationId: uuid('organization_id').notNull(),
    id: uuid('id').notNull(),
    endpointId: uuid('endpoint_id').notNull(),
    seq: bigserial('seq', { mode: 'number' }).notNull(),
    eventType: text('event_type').notNull(),
    orderKey: text('order_key'),
    /** The body sent: `{ type, timestamp, data }`. */
    body: jsonb('body').$type<Record<string, unknown>>().notNull(),
    /** pending | succeeded | failed */
    status: text('status').notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamptz('next_attempt_at').notNull().defaultNow(),
    /** Set while an instance is making an attempt; once past, the attempt's instance is taken as dead. */
    leaseUntil: timestamptz('lease_until'),
    lastAttemptAt: timestamptz('last_attempt_at'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    foreignKey({
      name: 'webhook_deliveries_endpoint_fk',
      columns: [t.organizationId, t.endpointId],
      foreignColumns: [webhookEndpoints.organizationId, webhookEndpoints.id],
    }).onDelete('cascade'),
    // Per endpoint in the claim's order, so a claim reads only as many due rows as it takes of each endpoint.
    index('webhook_deliveries_due_idx').on(t.endpointId, t.nextAttemptAt, t.seq).where(sql`status = 'pending'`),
    // Not partial, and with status: the dispatcher's head-of-key probe can use no other index, whatever the
    // statistics say (a partial index's stats from a drained outbox made the planner filter a burst row by row).
    index('webhook_deliveries_order_idx').on(t.endpointId, t.orderKey, t.status, t.seq),
    index('webhook_deliveries_endpoint_recent_idx').on(t.organizationId, t.endpointId, t.seq.desc()),
  ],
);

/** Every attempt of a delivery: what the endpoint answered, for the deliveries list. */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    organizationId: uuid('organization_id').notNull(),
    deliveryId: uuid('delivery_id').notNull(),
    attempt: integer('attempt').notNull(),
    /** The HTTP status, null when there was no answer (refused address, timeout, connection error). */
    httpStatus: integer('http_status'),
    durationMs: integer('duration_ms').notNull(),
    error: text('error'),
    /** The first 1 KB of the answer's body. */
    response: text('response'),
    at: timestamptz('at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.deliveryId, t.attempt] }),
    foreignKey({
      name: 'webhook_attempts_delivery_fk',
      columns: [t.organizationId, t.deliveryId],
      foreignColumns: [webhookDeliveries.organizationId, webhookDeliveries.id],
    }).onDelete('cascade'),
  ],
);

export type WebhookEndpointRow = typeof webhookEndpoints.$inferSelect;
export type WebhookEventRow = typeof webhookEvents.$inferSelect;
export type WebhookDeliveryRow = typeof webhookDeliveries.$inferSelect;
export type WebhookAttemptRow = typeof webhookAttempts.$inferSelect;
