import { randomBytes } from 'node:crypto';
import { and, asc, eq, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { webhookEndpoints, type WebhookEndpointRow } from '../../db/webhook-tables.js';
import { AppError } from '../../errors.js';
import { requireRole } from '../access.js';
import type { Caller } from '../auth.js';
import { isUuid } from '../cursors.js';
import type { ServiceDeps } from '../deps.js';
import { uuidv7 } from '../ids.js';
import { checkWebhookUrl, type LookupAll } from './url-policy.js';

// The customer's webhook endpoints (ADMIN and OWNER, integration tokens included). A secret is shown once,
// when it is made (create, rotate); it is the key that signs (Standard Webhooks: `whsec_` + base64 key).

export const WEBHOOK_EVENT_TYPES = [
  'message.received',
  'message.sent',
  'message.status_changed',
  'conversation.updated',
  'contact.opted_out',
  'contact.opted_in',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
/** Sent by sendTestWebhook only; no endpoint subscribes to it. */
export const TEST_EVENT_TYPE = 'webhook.test';

/** After a rotation, deliveries carry the old secret's signature too for this long. */
export const ROTATION_OVERLAP_MS = 24 * 3_600_000;
export const MAX_DESCRIPTION_CHARACTERS = 500;
export const MAX_ENDPOINTS_PER_ORGANIZATION = 20;

export type EndpointDeps = Pick<ServiceDeps, 'db' | 'config'> & { webhookLookup: LookupAll };

export const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

const notFound = (id: string) => new AppError('WEBHOOK_ENDPOINT_NOT_FOUND', `No webhook endpoint ${JSON.stringify(id.slice(0, 100))} in this organization.`);
const invalid = (field: string, message: string) => new AppError('INVALID_WEBHOOK_ENDPOINT', message, { field });

export type EndpointInput = { url?: string | null; events?: readonly string[] | null; description?: string | null; enabled?: boolean | null };

function checkedEvents(events: readonly string[]): string[] {
  const unique = [...new Set(events)];
  if (unique.length === 0) throw invalid('events', 'An endpoint needs at least one event type.');
  for (const type of unique) if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(type)) throw invalid('events', `Unknown event type ${JSON.stringify(type)}.`);
  return unique;
}

function checkedDescription(description: string | null | undefined): string | null {
  const text = description?.trim() ?? '';
  if (text.length > MAX_DESCRIPTION_CHARACTERS) throw invalid('description', `description must be at most ${MAX_DESCRIPTION_CHARACTERS} characters.`);
  return text.length > 0 ? text : null;
}

export async function listWebhookEndpoints(db: Db, caller: Caller): Promise<WebhookEndpointRow[]> {
  requireRole(caller, 'ADMIN', 'manage webhook endpoints');
  return db.select().from(webhookEndpoints).where(eq(webhookEndpoints.organizationId, caller.organizationId)).orderBy(asc(webhookEndpoints.createdAt), asc(webhookEndpoints.id));
}

export async function webhookEndpointById(db: Db, caller: Caller, id: string): Promise<WebhookEndpointRow> {
  requireRole(caller, 'ADMIN', 'manage webhook endpoints');
  if (!isUuid(id)) throw notFound(id);
  const [row] = await db.select().from(webhookEndpoints).where(and(eq(webhookEndpoints.organizationId, caller.organizationId), eq(webhookEndpoints.id, id)));
  if (!row) throw notFound(id);
  return row;
}

export async function createWebhookEndpoint(
  deps: EndpointDeps,
  caller: Caller,
  input: { url: string; events: readonly string[]; description?: string | null },
): Promise<{ endpoint: WebhookEndpointRow; secret: string }> {
  requireRole(caller, 'ADMIN', 'manage webhook endpoints');
  const eventTypes = checkedEvents(input.events);
  const description = checkedDescription(input.description);
  const url = await checkWebhookUrl(input.url, deps.config.webhooks, deps.webhookLookup);
  const [{ count }] = (await deps.db
    .select({ count: sql<number>`count(*)::int` })
    .from(webhookEndpoints)
    .where(eq(webhookEndpoints.organizationId, caller.organizationId))) as [{ count: number }];
  if (count >= MAX_ENDPOINTS_PER_ORGANIZATION) throw invalid('url', `An organization has at most ${MAX_ENDPOINTS_PER_ORGANIZATION} webhook endpoints.`);
  const secret = newWebhookSecret();
  const [endpoint] = await deps.db
    .insert(webhookEndpoints)
    .values({ organizationId: caller.organizationId, id: uuidv7(), url, description, eventTypes, secret })
    .returning();
  return { endpoint: endpoint!, secret };
}

/** Omitted (null) fields stay. Enabling clears the reason it was disabled and its failure streak: delivery resumes. */
export async function updateWebhookEndpoint(deps: EndpointDeps, caller: Caller, id: string, input: EndpointInput): Promise<WebhookEndpointRow> {
  await webhookEndpointById(deps.db, caller, id);
  const set: Partial<typeof webhookEndpoints.$inferInsert> = { updatedAt: sql`now()` as unknown as Date };
  if (input.events != null) set.eventTypes = checkedEvents(input.events);
  if (input.description !== undefined && input.description !== null) set.description = checkedDescription(input.description);
  if (input.url != null) set.url = await checkWebhookUrl(input.url, deps.config.webhooks, deps.webhookLookup);
  if (input.enabled != null) {
    set.enabled = input.enabled;
    set.disabledReason = null;
    if (input.enabled) set.failingSince = null;
  }
  const [row] = await deps.db
    .update(webhookEndpoints)
    .set(set)
    .where(and(eq(webhookEndpoints.organizationId, caller.organizationId), eq(webhookEndpoints.id, id)))
    .returning();
  if (!row) throw notFound(id);
  return row;
}

/** Deletes the endpoint and its deliveries (pending ones are not sent). */
export async function deleteWebhookEndpoint(db: Db, caller: Caller, id: string): Promise<WebhookEndpointRow> {
  await webhookEndpointById(db, caller, id);
  const [row] = await db
    .delete(webhookEndpoints)
    .where(and(eq(webhookEndpoints.organizationId, caller.organizationId), eq(webhookEndpoints.id, id)))
    .returning();
  if (!row) throw notFound(id);
  return row;
}

/** A new secret signs from now on; the old one's signature rides along for ROTATION_OVERLAP_MS. */
export async function rotateWebhookSecret(db: Db, caller: Caller, id: string): Promise<{ endpoint: WebhookEndpointRow; secret: string }> {
  await webhookEndpointById(db, caller, id);
  const secret = newWebhookSecret();
  const [row] = await db
    .update(webhookEndpoints)
    .set({
      secret,
      previousSecret: sql`${webhookEndpoints.secret}` as unknown as string,
      previousSecretUntil: new Date(Date.now() + ROTATION_OVERLAP_MS),
      updatedAt: sql`now()` as unknown as Date,
    })
    .where(and(eq(webhookEndpoints.organizationId, caller.organizationId), eq(webhookEndpoints.id, id)))
    .returning();
  if (!row) throw notFound(id);
  return { endpoint: row, secret };
}
