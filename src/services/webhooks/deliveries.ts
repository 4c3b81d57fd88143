import { and, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { webhookAttempts, webhookDeliveries, type WebhookAttemptRow, type WebhookDeliveryRow } from '../../db/webhook-tables.js';
import { AppError } from '../../errors.js';
import { requireRole } from '../access.js';
import type { Caller } from '../auth.js';
import { isUuid } from '../cursors.js';
import { uuidv7 } from '../ids.js';
import { TEST_EVENT_TYPE, webhookEndpointById } from './endpoints.js';
import { isoTime } from './outbox.js';

// What was sent to an endpoint and how it answered (WebhookEndpoint.deliveries), and the two ways to send
// by hand: redeliver one event, or a `webhook.test` event.

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export type DeliveryPage = { deliveries: WebhookDeliveryRow[]; endCursor: string | null; hasNextPage: boolean };

const MAX_PAGE = 100;

const badCursor = (after: string) => new AppError('INVALID_CURSOR', `Not a deliveries cursor: ${JSON.stringify(after.slice(0, 100))}.`);

/** Newest first; the cursor is the delivery's sequence number. */
export async function deliveriesOfEndpoint(
  db: Db,
  organizationId: string,
  endpointId: string,
  options: { first?: number | null; after?: string | null; status?: readonly DeliveryStatus[] | null },
): Promise<DeliveryPage> {
  const first = Math.min(Math.max(options.first ?? 20, 1), MAX_PAGE);
  let after: number | null = null;
  if (options.after) {
    if (!/^\d{1,15}$/.test(options.after)) throw badCursor(options.after);
    after = Number(options.after);
  }
  const rows = await db
    .select()
    .from(webhookDeliveries)
    .where(
      and(
        eq(webhookDeliveries.organizationId, organizationId),
        eq(webhookDeliveries.endpointId, endpointId),
        after !== null ? lt(webhookDeliveries.seq, after) : undefined,
        options.status && options.status.length > 0 ? inArray(webhookDeliveries.status, [...options.status]) : undefined,
      ),
    )
    .orderBy(desc(webhookDeliveries.seq))
    .limit(first + 1);
  const page = rows.slice(0, first);
  return { deliveries: page, endCursor: page.length > 0 ? String(page[page.length - 1]!.seq) : null, hasNextPage: rows.length > first };
}

/** Attempts of these deliveries, oldest first (one statement for a page). */
export async function attemptsOfDeliveries(db: Db, organizationId: string, deliveryIds: readonly string[]): Promise<WebhookAttemptRow[]> {
  if (deliveryIds.length === 0) return [];
  return db
    .select()
    .from(webhookAttempts)
    .where(and(eq(webhookAttempts.organizationId, organizationId), inArray(webhookAttempts.deliveryId, [...deliveryIds])))
    .orderBy(webhookAttempts.deliveryId, webhookAttempts.attempt);
}

async function deliveryById(db: Db, organizationId: string, id: string): Promise<WebhookDeliveryRow> {
  const notFound = new AppError('WEBHOOK_DELIVERY_NOT_FOUND', `No webhook delivery ${JSON.stringify(id.slice(0, 100))} in this organization.`);
  if (!isUuid(id)) throw notFound;
  const [row] = await db.select().from(webhookDeliveries).where(and(eq(webhookDeliveries.organizationId, organizationId), eq(webhookDeliveries.id, id)));
  if (!row) throw notFound;
  return row;
}

/**
 * Sends the event again, with the same `webhook-id` (receivers that processed it already skip it): the
 * delivery is pending again and due now; its attempts go on counting.
 */
export async function redeliverWebhookEvent(db: Db, caller: Caller, deliveryId: string): Promise<WebhookDeliveryRow> {
  requireRole(caller, 'ADMIN', 'manage webhook endpoints');
  const delivery = await deliveryById(db, caller.organizationId, deliveryId);
  await webhookEndpointById(db, caller, delivery.endpointId);
  const [row] = await db
    .update(webhookDeliveries)
    .set({ status: 'pending', nextAttemptAt: sql`now()` as unknown as Date, leaseUntil: null })
    .where(and(eq(webhookDeliveries.organizationId, caller.organizationId), eq(webhookDeliveries.id, deliveryId)))
    .returning();
  return row!;
}

/** A `webhook.test` event to this endpoint, due now (sent while the endpoint is enabled). */
export async function sendTestWebhook(db: Db, caller: Caller, endpointId: string): Promise<WebhookDeliveryRow> {
  const endpoint = await webhookEndpointById(db, caller, endpointId);
  const id = uuidv7();
  const [row] = await db
    .insert(webhookDeliveries)
    .values({
      organizationId: caller.organizationId,
      id,
      endpointId: endpoint.id,
      eventType: TEST_EVENT_TYPE,
      orderKey: null,
      body: sql`jsonb_build_object('type', ${TEST_EVENT_TYPE}::text, 'timestamp', ${isoTime(sql`now()`)}, 'data', jsonb_build_object('endpointId', ${endpoint.id}::text, 'message', 'A test event from the conversations gateway.'))` as unknown as Record<string, unknown>,
    })
    .returning();
  return row!;
}
