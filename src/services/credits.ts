import { eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { organizations } from '../db/tables.js';

// Credits are taken only by sendReply's reservation (replies/reserve.ts: a conditional UPDATE inside the
// statement that stores the message, so concurrent senders serialize on the organization's row, each
// re-checks the balance, and it never goes negative nor is read-then-written) and given back only here.

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
