import { and, eq, sql } from 'drizzle-orm';
import type { Tx } from '../db/client.js';
import { violatedForeignKey } from '../db/failures.js';
import { rawRows } from '../db/rows.js';
import { conversations, type ConversationRow, type ConversationStatusValue } from '../db/tables.js';
import { AppError, badUserInput } from '../errors.js';
import { requireMember } from './members.js';
import { recordAudit } from './audit.js';
import type { Caller } from './auth.js';
import type { ServiceDeps } from './deps.js';
import { PeriodicTask } from './periodic.js';
import { recordConversationUpdated } from './webhooks/outbox.js';

// Working a thread: its status (OPEN, PENDING, SNOOZED until a time, RESOLVED) and who owns it. Any
// member may change both; each change is audited in its transaction and told to conversationUpdated's
// subscribers after it commits. Automatic changes (an inbound message reopening a RESOLVED or SNOOZED
// thread, in services/inbound.ts; a snooze ending, below) are not audited: their cause is in the thread.

/** The longest snooze: beyond it, RESOLVED says what is meant. */
const MAX_SNOOZE_MS = 366 * 24 * 3600_000;

type StatusDeps = Pick<ServiceDeps, 'db' | 'events'>;

async function lockConversation(tx: Tx, organizationId: string, phoneNumber: string): Promise<ConversationRow> {
  const [row] = await tx
    .select()
    .from(conversations)
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.phoneNumber, phoneNumber)))
    .for('update');
  if (!row) throw new AppError('CONVERSATION_NOT_FOUND', `No conversation with ${phoneNumber}.`);
  return row;
}

/**
 * Sets the status. SNOOZED needs a future `snoozedUntil` (at most a year ahead); other statuses take none
 * and clear it. RESOLVED stamps resolvedAt (kept when it was resolved already); others clear it.
 */
export async function setConversationStatus(
  deps: StatusDeps,
  caller: Caller,
  phoneNumber: string,
  status: ConversationStatusValue,
  snoozedUntil?: Date | null,
): Promise<ConversationRow> {
  if (status === 'snoozed') {
    if (!snoozedUntil) throw badUserInput('SNOOZED needs snoozedUntil: the time the conversation opens again.', { argument: 'snoozedUntil' });
    const ahead = snoozedUntil.getTime() - Date.now();
    if (ahead <= 0) throw badUserInput('snoozedUntil must be in the future.', { argument: 'snoozedUntil' });
    if (ahead > MAX_SNOOZE_MS) throw badUserInput('snoozedUntil must be within a year.', { argument: 'snoozedUntil' });
  } else if (snoozedUntil) {
    throw badUserInput(`snoozedUntil is for SNOOZED only; ${status.toUpperCase()} clears it.`, { argument: 'snoozedUntil' });
  }
  const { row, changed } = await deps.db.transaction(async (tx) => {
    const current = await lockConversation(tx, caller.organizationId, phoneNumber);
    const until = status === 'snoozed' ? snoozedUntil! : null;
    const changed = current.status !== status || current.snoozedUntil?.getTime() !== until?.getTime();
    if (!changed) return { row: current, changed };
    const [row] = await tx
      .update(conversations)
      .set({
        status,
        snoozedUntil: until,
        resolvedAt: status !== 'resolved' ? null : (current.resolvedAt ?? sql`now()`),
        updatedAt: sql`now()`,
      })
      .where(and(eq(conversations.organizationId, caller.organizationId), eq(conversations.id, current.id)))
      .returning();
    await recordAudit(tx, caller, {
      action: 'conversation.status_changed',
      objectType: 'conversation',
      objectId: current.id,
      data: { phoneNumber, from: current.status, to: status, ...(until ? { snoozedUntil: until.toISOString() } : {}) },
    });
    await recordConversationUpdated(tx, caller.organizationId, current.id);
    return { row: row!, changed };
  });
  if (changed) deps.events.publish('conversationUpdated', caller.organizationId, { conversationId: row.id });
  return row;
}

/** Assigns the conversation to a member (null: unassigns). A user who is not a member is MEMBER_NOT_FOUND. */
export async function assignConversation(deps: StatusDeps, caller: Caller, phoneNumber: string, userId: string | null): Promise<ConversationRow> {
  try {
    const { row, changed } = await deps.db.transaction(async (tx) => {
      const current = await lockConversation(tx, caller.organizationId, phoneNumber);
      if (userId !== null) await requireMember(tx, caller.organizationId, userId);
      if (current.assigneeUserId === userId) return { row: current, changed: false };
      const [row] = await tx
        .update(conversations)
        .set({ assigneeUserId: userId, updatedAt: sql`now()` })
        .where(and(eq(conversations.organizationId, caller.organizationId), eq(conversations.id, current.id)))
        .returning();
      await recordAudit(tx, caller, {
        action: 'conversation.assigned',
        objectType: 'conversation',
        objectId: current.id,
        data: { phoneNumber, from: current.assigneeUserId, to: userId },
      });
      await recordConversationUpdated(tx, caller.organizationId, current.id);
      return { row: row!, changed: true };
    });
    if (changed) deps.events.publish('conversationUpdated', caller.organizationId, { conversationId: row.id });
    return row;
  } catch (error) {
    // The member was removed between our check and the commit (conversations_assignee_fk).
    if (violatedForeignKey(error) === 'conversations_assignee_fk') {
      throw new AppError('MEMBER_NOT_FOUND', `No member ${userId} in this organization.`, { userId });
    }
    throw error;
  }
}

/** Snoozes ended per sweep; more wait for the next one. */
const WAKE_LIMIT = 500;

/**
 * Opens the snoozed conversations whose snoozedUntil has passed. One UPDATE: each row changes once however
 * many instances sweep at the same moment (SKIP LOCKED keeps them off each other's rows, and the status
 * condition is checked again under the lock), and a sweep after a restart finds what was due meanwhile.
 */
export async function wakeSnoozedConversations(deps: StatusDeps): Promise<number> {
  const rows = (await rawRows(deps.db, sql`
    update ${conversations} c set status = 'open', snoozed_until = null, updated_at = now()
    where (c.organization_id, c.id) in (
      select organization_id, id from ${conversations}
      where status = 'snoozed' and snoozed_until <= now()
      order by snoozed_until
      limit ${WAKE_LIMIT}
      for update skip locked
    ) and c.status = 'snoozed'
    returning c.organization_id, c.id`)) as { organization_id: string; id: string }[];
  for (const row of rows) deps.events.publish('conversationUpdated', row.organization_id, { conversationId: row.id });
  return rows.length;
}

/** Every instance sweeps for ended snoozes every SNOOZE_SWEEP_MS (1 s by default). */
export class SnoozeSweeper extends PeriodicTask {
  constructor(deps: StatusDeps & Pick<ServiceDeps, 'config' | 'logger'>) {
    super('waking snoozed conversations', deps.config.snoozeSweepMs, () => wakeSnoozedConversations(deps), deps.logger);
  }
}
