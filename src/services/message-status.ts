import { and, eq, sql } from 'drizzle-orm';
import type { Db, DbOrTx, Tx } from '../db/client.js';
import { isDatabaseUnavailable } from '../db/failures.js';
import { HotQuery } from '../db/rows.js';
import { conversations, messages, messageStatusEvents, type MessageRow } from '../db/tables.js';
import { PROVIDER_ERRORS } from '../providers/sms-provider.js';
import { Batcher, instanceBatcher, writeOrIsolate, type Settled } from './batcher.js';
import { changeConsent } from './consent.js';
import type { ServiceDeps } from './deps.js';
import { uuidv7 } from './ids.js';
import { webhookEventsFrom, messageData, recordMessageEvent } from './webhooks/outbox.js';

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

export type StatusUpdate = {
  providerMessageId: string;
  status: string;
  errorCode?: number | null;
  /** The sender the provider reports (a Messaging Service picks it from its pool): stored as messages.sent_from. */
  from?: string | null;
  /** Narrows the lookup when the caller knows the organization (the simulated provider does). */
  organizationId?: string;
};

export type StatusOutcome =
  | { outcome: 'unknown_message' }
  | { outcome: 'unknown_status' }
  | { outcome: 'applied' | 'ignored'; organizationId: string; messageId: string; status: string };

/** The first wait before looking again for a message a callback names; it doubles up to the second. */
const FIRST_LOOK_AGAIN_MS = 50;
const LONGEST_LOOK_AGAIN_MS = 1_000;

/**
 * Applies one status callback. `waitForMessageMs`: how long to keep looking for a message the callback
 * names but we do not have (yet). A callback can beat the send it reports on: the provider may call back
 * before the sender, on this instance or another, has stored the id the provider just gave it, and Twilio
 * does not retry a status callback by default, so acknowledging it at once would lose the status.
 */
export async function applyMessageStatus(
  deps: Pick<ServiceDeps, 'db' | 'events' | 'logger' | 'state'>,
  update: StatusUpdate,
  options: { waitForMessageMs?: number } = {},
): Promise<StatusOutcome> {
  const status = update.status.trim().toLowerCase();
  if (!Object.hasOwn(RANK, status)) {
    deps.logger.warn({ update }, 'ignoring unknown message status');
    return { outcome: 'unknown_status' };
  }
  const errorCode = update.errorCode ?? null;

  const apply = () =>
    errorCode === PROVIDER_ERRORS.UNSUBSCRIBED && (status === 'failed' || status === 'undelivered')
      ? applyWithOptOut(deps, update, status, errorCode)
      : applyBatched(deps, update, status, errorCode);
  const deadline = Date.now() + (options.waitForMessageMs ?? 0);
  let result = await apply();
  for (let wait = FIRST_LOOK_AGAIN_MS; !result && Date.now() < deadline; wait = Math.min(wait * 2, LONGEST_LOOK_AGAIN_MS)) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait, deadline - Date.now())));
    result = await apply();
  }

  if (!result) {
    deps.logger.info({ providerMessageId: update.providerMessageId, status }, 'status for an unknown message ignored');
    return { outcome: 'unknown_message' };
  }
  const { message } = result;
  if (result.outcome === 'applied' && result.last) {
    deps.events.publish('messageStatusChanged', message.organizationId, { messageId: message.id, conversationId: message.conversationId });
  }
  return { outcome: result.outcome, organizationId: message.organizationId, messageId: message.id, status: result.status };
}

type Applied = {
  outcome: 'applied' | 'ignored';
  message: Pick<MessageRow, 'organizationId' | 'id' | 'conversationId'>;
  status: string;
  /**
   * The last callback of its message in its batch that moved it: the one that tells subscribers (who load
   * the message as it is now, so sent and delivered applied together are one change to them).
   */
  last?: boolean;
} | null;

type PendingStatus = { update: StatusUpdate; status: string; errorCode: number | null };

const statusBatcherOf = instanceBatcher(
  'status callbacks',
  ({ db }) =>
    new Batcher<PendingStatus, Applied>((items) => writeOrIsolate(items, (some) => writeStatuses(db, some), isDatabaseUnavailable), 500),
);

/** The common case, batched with the callbacks arriving at the same time (see batcher.ts). */
function applyBatched(deps: Pick<ServiceDeps, 'db' | 'state'>, update: StatusUpdate, status: string, errorCode: number | null): Promise<Applied> {
  return statusBatcherOf(deps).submit({ update, status, errorCode });
}

/**
 * The callbacks arriving together, in one statement: each message locked once (in one order), every
 * callback kept in its history in arrival order, and the status moved once, to where applying the
 * message's callbacks one after the other (the rule of statusMovesForward) would leave it. That end point
 * depends on the stored status, known only under the lock: it is worked out here for every status the
 * message could be in and picked in SQL. A message's sent and delivered arriving together (the simulated
 * provider reports them so) cost one lock and one update.
 */
async function writeStatuses(db: Db, items: PendingStatus[]): Promise<Settled<Applied>[]> {
  // Callbacks of one message that name the same organization (or none) are one group; groups of one
  // message that name different ones (never seen in practice) go in successive rounds, one statement each.
  const groups = new Map<string, number[]>();
  items.forEach((item, index) => {
    const key = `${item.update.providerMessageId}\n${item.update.organizationId ?? ''}`;
    const group = groups.get(key);
    if (group) group.push(index);
    else groups.set(key, [index]);
  });
  const rounds: number[][][] = [];
  const seen = new Map<string, number>();
  for (const indexes of groups.values()) {
    const sid = items[indexes[0]!]!.update.providerMessageId;
    const round = seen.get(sid) ?? 0;
    seen.set(sid, round + 1);
    (rounds[round] ??= []).push(indexes);
  }
  const results: Settled<Applied>[] = items.map(() => ({ ok: true, value: null }));
  // One round is one statement, atomic by itself; several go in one transaction, so a failure undoes all.
  if (rounds.length > 1)
    await db.transaction(async (tx) => {
      for (const round of rounds) await writeRound(tx, items, round, results);
    });
  else await writeRound(db, items, rounds[0] ?? [], results);
  return results;
}

/** writeRound's statement, built once (db/rows.ts): the callbacks come as one JSON parameter. */
const STATUSES = new HotQuery(
  sql`with x as (
        select * from jsonb_to_recordset(${sql.placeholder('input')}::jsonb)
          as x(g int, sid text, org uuid, events jsonb, ends jsonb, sfrom text)
      ), m as (
        select x.g, x.events, x.sfrom, coalesce(x.ends -> found.status, x.ends -> '') as ends, found.*
        from x cross join lateral (
          select organization_id, id, conversation_id, status from ${messages}
          where provider_message_id = x.sid and (x.org is null or organization_id = x.org)
          limit 1
          for update
        ) found
      ), history as (
        insert into ${messageStatusEvents} (organization_id, id, message_id, status, error_code, created_at)
        select m.organization_id, e.id, m.id, e.status, e.err, clock_timestamp()
        from m cross join lateral rows from (jsonb_to_recordset(m.events) as (id uuid, status text, err int)) with ordinality as e(id, status, err, n)
        order by m.g, e.n
      ), moved as (
        update ${messages} set status = coalesce(m.ends ->> 'status', ${messages}.status),
          error_code = coalesce((m.ends ->> 'err')::int, ${messages}.error_code),
          sent_from = coalesce(m.sfrom, ${messages}.sent_from), updated_at = now()
        from m
        where ${messages}.organization_id = m.organization_id and ${messages}.id = m.id
          and (m.ends ->> 'status' is not null or (m.sfrom is not null and ${messages}.sent_from is distinct from m.sfrom))
        returning ${messages}.*
      ), hook as (${webhookEventsFrom(
        'message.status_changed',
        sql`moved mv join m on m.organization_id = mv.organization_id and m.id = mv.id
          join conversations c on c.organization_id = mv.organization_id and c.id = mv.conversation_id`,
        {
          organization: sql`mv.organization_id`,
          orderKey: sql`c.phone_number`,
          data: messageData('mv', sql`c.phone_number`, { providerStatus: true }),
          // A callback that only told us the sender (sent_from) changed no status: no event.
          where: sql`m.ends ->> 'status' is not null`,
        },
      )})
      select m.g, m.organization_id, m.id, m.conversation_id, m.status from m`,
);

async function writeRound(db: DbOrTx, items: PendingStatus[], groups: number[][], results: Settled<Applied>[]) {
  if (groups.length === 0) return;
  const input = groups
    .map((indexes) => ({ sid: items[indexes[0]!]!.update.providerMessageId, indexes }))
    .sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : 0))
    .map(({ sid, indexes }, g) => ({
      g,
      sid,
      org: items[indexes[0]!]!.update.organizationId ?? null,
      // Event ids made in arrival order (ids.ts): the history reads in (created_at, id) order, clock_timestamp() below.
      events: indexes.map((index) => ({ id: uuidv7(), status: items[index]!.status, err: items[index]!.errorCode })),
      ends: endPoints(indexes.map((index) => items[index]!)),
      // The sender Twilio reports; the latest callback's, should they differ.
      sfrom: indexes.map((index) => items[index]!.update.from ?? null).filter(Boolean).at(-1) ?? null,
      indexes,
    }));
  const rows = await STATUSES.rows(db, { input: JSON.stringify(input.map(({ indexes: _, ...row }) => row)) });
  for (const row of rows) {
    const message = { organizationId: row.organization_id as string, id: row.id as string, conversationId: row.conversation_id as string };
    // The same walk as endPoints, from the status found: which callbacks moved it.
    let current = row.status as string | null;
    let lastApplied: { outcome: 'applied'; message: typeof message; status: string; last?: boolean } | null = null;
    for (const index of input[Number(row.g)]!.indexes) {
      const { status } = items[index]!;
      if (statusMovesForward(current, status)) {
        lastApplied = { outcome: 'applied', message, status };
        results[index] = { ok: true, value: lastApplied };
        current = status;
      } else {
        results[index] = { ok: true, value: { outcome: 'ignored', message, status: current ?? status } };
      }
    }
    if (lastApplied) lastApplied.last = true;
  }
}

/**
 * Where one message's callbacks, applied in order, leave it from each status it may be found in ('' for
 * none or one we do not know): the status (null if none moves it) and the error code last given by a
 * callback that moved it (null keeps the stored one).
 */
function endPoints(updates: PendingStatus[]): Record<string, { status: string | null; err: number | null }> {
  const ends: Record<string, { status: string | null; err: number | null }> = {};
  for (const from of ['', ...KNOWN_STATUSES]) {
    let current: string | null = from === '' ? null : from;
    let moved: string | null = null;
    let err: number | null = null;
    for (const { status, errorCode } of updates) {
      if (!statusMovesForward(current, status)) continue;
      current = status;
      moved = status;
      err = errorCode ?? err;
    }
    ends[from] = { status: moved, err };
  }
  return ends;
}

/** A provider refusal that unsubscribes the recipient (21610): the status and the opt-out in one transaction. */
async function applyWithOptOut(deps: Pick<ServiceDeps, 'db'>, update: StatusUpdate, status: string, errorCode: number | null): Promise<Applied> {
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

    await tx.insert(messageStatusEvents).values({ organizationId: message.organizationId, id: uuidv7(), messageId: message.id, status, errorCode });
    if (!statusMovesForward(message.status, status)) {
      return { outcome: 'ignored' as const, message, status: message.status ?? status };
    }
    await tx
      .update(messages)
      .set({ status, errorCode: errorCode ?? message.errorCode, sentFrom: update.from ?? message.sentFrom, updatedAt: sql`now()` })
      .where(and(eq(messages.organizationId, message.organizationId), eq(messages.id, message.id)));
    await recordMessageEvent(tx, 'message.status_changed', message.organizationId, message.id);
    await optOutRecipient(tx, message.organizationId, message.conversationId, message.id);
    return { outcome: 'applied' as const, message, status, last: true };
  });
}

async function optOutRecipient(tx: Tx, organizationId: string, conversationId: string, messageId: string) {
  const [conversation] = await tx
    .select({ phoneNumber: conversations.phoneNumber })
    .from(conversations)
    .where(and(eq(conversations.organizationId, organizationId), eq(conversations.id, conversationId)));
  if (!conversation) return;
  await changeConsent(
    tx,
    organizationId,
    { phoneNumber: conversation.phoneNumber },
    { kind: 'opt_out', keyword: null, messageId, source: 'provider_error' },
  );
}
