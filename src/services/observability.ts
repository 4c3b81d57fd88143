import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rawRows } from '../db/rows.js';
import { jobs, messages } from '../db/tables.js';
import { webhookDeliveries, webhookEvents } from '../db/webhook-tables.js';

// Counts read when Prometheus scrapes /metrics (src/observability/metrics.ts): state, not events.

/**
 * Replies handed to the provider with no answer stored that the sends-in-doubt sweeper has to settle: marked
 * in doubt (a timeout or a cut connection), or older than SENDS_IN_DOUBT_AFTER_MS (their process stopped).
 * The same conditions as the sweep's own query, so the same partial index.
 */
export async function countSendsInDoubt(db: Db, afterMs: number): Promise<number> {
  const [row] = await db
    .select({ count: sql<number>`count(*)::int` })
    .from(messages)
    .where(
      sql`${messages.providerMessageId} is null and ${messages.direction} = 'outgoing' and ${messages.creditsCharged} > 0
        and ${messages.status} = 'queued' and ${messages.sendAt} is null
        and (${messages.inDoubtAt} is not null or ${messages.createdAt} < now() - make_interval(secs => ${afterMs / 1000}))`,
    );
  return row?.count ?? 0;
}

/** Jobs waiting in the job table, by queue. */
export async function pendingJobsByQueue(db: Db): Promise<Record<string, number>> {
  const rows = await db.select({ queue: jobs.queue, count: sql<number>`count(*)::int` }).from(jobs).groupBy(jobs.queue);
  return Object.fromEntries(rows.map((row) => [row.queue, row.count]));
}

/**
 * Outgoing webhook deliveries still to be settled (pending: due, in flight, or waiting for a retry), and
 * events not yet fanned out to their endpoints (each counted once).
 */
export async function countPendingWebhookDeliveries(db: Db): Promise<number> {
  const [row] = await rawRows(
    db,
    sql`select ((select count(*) from ${webhookDeliveries} where ${webhookDeliveries.status} = 'pending') + (select count(*) from ${webhookEvents}))::int as count`,
  );
  return Number(row?.count ?? 0);
}
