import { and, eq, sql } from 'drizzle-orm';
import type { Deps } from '../context.js';
import type { Db, DbOrTx, Tx } from '../db/client.js';
import { isDatabaseUnavailable } from '../db/failures.js';
import { rawRows } from '../db/rows.js';
import { consentEvents, contacts, conversations, messages, messageStatusEvents, type MessageRow } from '../db/tables.js';
import { Batcher, batcherPer, writeOrIsolate, type Settled } from './batcher.js';

// The one path for delivery status updates: Twilio's status callbacks and the simulated provider both
// come through here. Callbacks can arrive late or out of order, so a status only moves forward and a
// final one is never undone; every callback is kept in the message's status history.

const RANK: Record<string, number> = {
  accepted: 0,
  scheduled: 0,
  queued: 1,
  sending: 2,
  sent: 3,
  delivered: 4,
  undelivered: 4,
  failed: 4,
  canceled: 4,
  read: 5,
};
const FINAL = new Set(['delivered', 'undelivered', 'failed', 'canceled', 'read']);

export const KNOWN_STATUSES = Object.keys(RANK);

/** Whether a message in status `from` may move to `to`. */
export function statusMovesForward(from: string | null, to: string): boolean {
  if (!Object.hasOwn(RANK, to)) return false;
  if (from === null || !Object.hasOwn(RANK, from)) return true;
  if (FINAL.has(from)) return from === 'delivered' && to === 'read';
  return RANK[to]! > RANK[from]!;
}

/** Twilio error 21610: the recipient replied STOP to this sender; we must not text them again. */
export const TWILIO_UNSUBSCRIBED = 21610;

export type StatusUpdate = {
  providerMessageId: string;
  status: string;
  errorCode?: number | null;
  /** Narrows the lookup when the caller knows the organization (the simulated provider does). */
  organizationId?: string;
};

export type StatusOutcome =
  | { outcome: 'unknown_message' }
  | { outcome: 'unknown_status' }
  | { outcome: 'applied' | 'ignored'; organizationId: string; messageId: string; status: string };

export async function applyMessageStatus(deps: Pick<Deps, 'db' | 'events' | 'logger'>, update: StatusUpdate): Promise<StatusOutcome> {
  const status = update.status.trim().toLowerCase();
  if (!Object.hasOwn(RANK, status)) {
    deps.logger.warn({ update }, 'ignoring unknown message status');
    return { outcome: 'unknown_status' };
  }
  const errorCode = update.errorCode ?? null;

  const result =
    errorCode === TWILIO_UNSUBSCRIBED && (status === 'failed' || status === 'undelivered')
      ? await applyWithOptOut(deps, update, status, errorCode)
      : await applyBatched(deps, update, status, errorCode);

  if (!result) {
    deps.logger.info({ providerMessageId: update.providerMessageId, status }, 'status for an unknown message ignored');
    return { outcome: 'unknown_message' };
  }
  const { message } = result;
  if (result.outcome === 'applied') {
    deps.events.publish('messageStatusChanged', message.organizationId, { messageId: message.id, conversationId: message.conversationId });
  }
  return { outcome: result.outcome, organizationId: message.organizationId, messageId: message.id, status: result.status };
}

type Applied = { outcome: 'applied' | 'ignored'; message: Pick<MessageRow, 'organizationId' | 'id' | 'conversationId'>; status: string } | null;

/** Rank of a stored status in SQL (null for one we do not know, which any known status may replace). */
const STORED_RANK = sql.raw(`case m.status ${Object.entries(RANK).map(([name, rank]) => `when '${name}' then ${rank}`).join(' ')} end`);
const FINAL_LIST = sql.raw([...FINAL].map((name) => `'${name}'`).join(', '));

type PendingStatus = { update: StatusUpdate; status: string; errorCode: number | null };

const statusBatcherOf = batcherPer(
  (db: Db) => new Batcher<PendingStatus, Applied>((items) => writeOrIsolate(items, (some) => writeStatuses(db, some), isDatabaseUnavailable), 500),
);

/** The common case, batched with the callbacks arriving at the same time (see batcher.ts). */
function applyBatched(deps: Pick<Deps, 'db'>, update: StatusUpdate, status: string, errorCode: number | null): Promise<Applied> {
  return statusBatcherOf(deps.db).submit({ update, status, errorCode });
}

/**
 * Callbacks of different messages in one statement per round (a message's second callback in a batch goes
 * in the next round, after its first): lock each message (in one order), keep every callback in the
 * message's history, and move the status where it goes forward (the rule of statusMovesForward, in SQL).
 */
async function writeStatuses(db: Db, items: PendingStatus[]): Promise<Settled<Applied>[]> {
  const rounds: number[][] = [];
  const seen = new Map<string, number>();
  items.forEach((item, index) => {
    const round = seen.get(item.update.providerMessageId) ?? 0;
    seen.set(item.update.providerMessageId, round + 1);
    (rounds[round] ??= []).push(index);
  });
  const results: Settled<Applied>[] = items.map(() => ({ ok: true, value: null }));
  // One round is one statement, atomic by itself; several go in one transaction, so a failure undoes all.
  if (rounds.length > 1) await db.transaction((tx) => writeRounds(tx, items, rounds, results));
  else await writeRounds(db, items, rounds, results);
  return results;
}

async function writeRounds(db: DbOrTx, items: PendingStatus[], rounds: number[][], results: Settled<Applied>[]) {
  for (const round of rounds) {
    const input = round
      .map((index) => {
        const { update, status, errorCode } = items[index]!;
        return { i: index, sid: update.providerMessageId, org: update.organizationId ?? null, status, rank: RANK[status]!, err: errorCode };
      })
      .sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : 0));
    const movesForward = sql`(m.status is null or ${STORED_RANK} is null or case when m.status in (${FINAL_LIST}) then m.status = 'delivered' and m.new_status = 'read' else ${STORED_RANK} < m.rank end)`;
    const rows = await rawRows(
      db,
      sql`with x as (
          select * from jsonb_to_recordset(${JSON.stringify(input)}::jsonb) as x(i int, sid text, org uuid, status text, rank int, err int)
        ), m as (
          select x.i, x.status as new_status, x.rank, x.err, found.*
          from x cross join lateral (
            select organization_id, id, conversation_id, status from ${messages}
            where provider_message_id = x.sid and (x.org is null or organization_id = x.org)
            limit 1
            for update
          ) found
        ), history as (
          insert into ${messageStatusEvents} (organization_id, message_id, status, error_code)
          select organization_id, id, new_status, err from m order by i
        ), moved as (
          update ${messages} set status = m.new_status, error_code = coalesce(m.err, ${messages}.error_code), updated_at = now()
          from m
          where ${messages}.organization_id = m.organization_id and ${messages}.id = m.id and ${movesForward}
          returning ${messages}.id
        )
        select m.i, m.organization_id, m.id, m.conversation_id, m.status, m.new_status, m.id in (select id from moved) as moved from m`,
    );
    for (const row of rows) {
      const message = { organizationId: row.organization_id as string, id: row.id as string, conversationId: row.conversation_id as string };
      results[Number(row.i)] = {
        ok: true,
        value: row.moved
          ? { outcome: 'applied', message, status: row.new_status as string }
          : { outcome: 'ignored', message, status: (row.status as string | null) ?? (row.new_status as string) },
      };
    }
  }
}

/** A provider refusal that unsubscribes the recipient (21610): the status and the opt-out in one transaction. */
async function applyWithOptOut(deps: Pick<Deps, 'db'>, update: StatusUpdate, status: string, errorCode: number | null): Promise<Applied> {
  return deps.db.transaction(async (tx) => {
    const conditions = [eq(messages.providerMessageId, update.providerMessageId)];
    if (update.organizationId) conditions.push(eq(messages.organizationId, update.organizationId));
    // Row lock: concurrent callbacks for one message apply one after the other.
    const [message] = await tx
      .select()
      .from(messages)
      .where(and(...conditions))
      .limit(1)
      .for('update');
    if (!message) return null;

    await tx.insert(messageStatusEvents).values({ organizationId: message.organizationId, messageId: message.id, status, errorCode });
    if (!statusMovesForward(message.status, status)) {
      return { outcome: 'ignored' as const, message, status: message.status ?? status };
    }
    await tx
      .update(messages)
      .set({ status, errorCode: errorCode ?? message.errorCode, updatedAt: sql`now()` })
      .where(and(eq(messages.organizationId, message.organizationId), eq(messages.id, message.id)));
    await optOutRecipient(tx, message.organizationId, message.conversationId, message.id);
    return { outcome: 'applied' as const, message, status };
  });
}

async function optOutRecipient(tx: Tx, organizationId: string, conversationId: string, messageId: string) {
  const [conversation] = await tx
    .select({ phoneNumber: conversations.phoneNumber })
    .from(conversations)
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversationId)));
  if (!conversation) return;
  const [contact] = await tx
    .update(contacts)
    .set({ isOptedIn: false, updatedAt: sql`now()` })
    .where(and(eq(contacts.organizationId, organizationId), eq(contacts.phoneNumber, conversation.phoneNumber), eq(contacts.isOptedIn, true)))
    .returning({ id: contacts.id });
  if (contact) {
    await tx.insert(consentEvents).values({ organizationId, contactId: contact.id, kind: 'opt_out', keyword: null, messageId, source: 'provider_error' });
  }
}
