import { and, desc, eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { auditEvents, type AuditEventRow } from '../db/tables.js';
import type { Caller } from './auth.js';
import { decodeCursor, encodeCursor, isUuid } from './cursors.js';

// The audit log: who (a user, an integration token, or the operator's CLI) changed what, written in the
// transaction of the change, so a change and its record commit or roll back together.

export type AuditAction =
  | 'member.added'
  | 'member.role_changed'
  | 'member.removed'
  | 'token.created'
  | 'token.revoked'
  | 'conversation.assigned'
  | 'conversation.status_changed'
  | 'contact.deleted';

export type AuditObjectType = 'user' | 'api_token' | 'conversation' | 'contact';

export async function recordAudit(
  tx: DbOrTx,
  actor: Caller,
  event: { action: AuditAction; objectType: AuditObjectType; objectId: string; data?: Record<string, unknown> },
): Promise<void> {
  await tx.insert(auditEvents).values({
    organizationId: actor.organizationId,
    action: event.action,
    actorUserId: actor.userId,
    // An identity provider's token and the operator have no token row to name.
    actorTokenId: isUuid(actor.tokenId) ? actor.tokenId : null,
    objectType: event.objectType,
    objectId: event.objectId,
    data: event.data ?? {},
  });
}

export const auditCursor = (organizationId: string, row: Pick<AuditEventRow, 'createdAt' | 'id'>) =>
  encodeCursor('audit', organizationId, { at: row.createdAt, id: row.id });

/** The organization's audit events, newest first, by keyset. */
export async function listAuditEvents(
  db: DbOrTx,
  organizationId: string,
  options: { first: number; after?: string | null },
): Promise<{ rows: AuditEventRow[]; hasNextPage: boolean }> {
  const key = options.after ? decodeCursor('audit', organizationId, options.after, 'after') : null;
  const rows = await db
    .select()
    .from(auditEvents)
    .where(
      and(
        eq(auditEvents.organizationId, organizationId),
        key ? sql`(${auditEvents.createdAt}, ${auditEvents.id}) < (${key.at.toISOString()}::timestamptz, ${key.id}::uuid)` : undefined,
      ),
    )
    .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
    .limit(options.first + 1);
  return { rows: rows.slice(0, options.first), hasNextPage: rows.length > options.first };
}
