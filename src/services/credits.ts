import { and, eq, gte, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { organizations } from '../db/tables.js';

// Credits move only through these two statements. Reserving is one conditional UPDATE: concurrent
// senders serialize on the organization's row and each re-checks the balance, so it never goes negative
// and is never read-then-written.

/** Takes `amount` credits if the balance covers it; returns the new balance, or null when it does not. */
export async function reserveCredits(db: DbOrTx, organizationId: string, amount: number): Promise<number | null> {
  if (amount === 0) {
    const [org] = await db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, organizationId));
    return org?.credits ?? null;
  }
  const [row] = await db
    .update(organizations)
    .set({ credits: sql`${organizations.credits} - ${amount}` })
    .where(and(eq(organizations.id, organizationId), gte(organizations.credits, amount)))
    .returning({ credits: organizations.credits });
  return row?.credits ?? null;
}

/** Gives back credits reserved for a send that did not happen. */
export async function refundCredits(db: DbOrTx, organizationId: string, amount: number): Promise<void> {
  if (amount === 0) return;
  await db
    .update(organizations)
    .set({ credits: sql`${organizations.credits} + ${amount}` })
    .where(eq(organizations.id, organizationId));
}

export async function creditBalance(db: DbOrTx, organizationId: string): Promise<number | null> {
  const [org] = await db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, organizationId));
  return org?.credits ?? null;
}
