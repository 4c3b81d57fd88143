import { eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { rawRows, rowReader } from '../../db/rows.js';
import { jobs, type JobRow } from '../../db/tables.js';
import { uuidv7 } from '../ids.js';

// The job table (db/tables.ts `jobs`): background work any instance may run, exactly one at a time.
// - A job is written in the transaction of the change that asks for it, so it exists iff that change committed.
// - A claim moves run_at forward by the lease (FOR UPDATE SKIP LOCKED: instances never wait on each other's
//   claims); when the claiming instance dies, the job is due again once the lease ends.
// - The handler's outcome deletes the job, or moves it to a later run_at.
// A handler must still be safe to run twice (a lease can end under a very slow run): the handlers guard
// their work with a conditional update of the thing they act on, so a second run finds it done.

const readJob = rowReader(jobs);

export type NewJob = {
  queue: string;
  /** One job per key: a second enqueue with the same key replaces the first one's run_at and payload. */
  key?: string | null;
  organizationId?: string | null;
  payload: Record<string, unknown>;
  runAt: Date;
};

export async function enqueueJob(db: DbOrTx, job: NewJob): Promise<void> {
  const values = {
    id: uuidv7(),
    queue: job.queue,
    key: job.key ?? null,
    organizationId: job.organizationId ?? null,
    payload: job.payload,
    runAt: job.runAt,
  };
  if (!job.key) {
    await db.insert(jobs).values(values);
    return;
  }
  await db
    .insert(jobs)
    .values(values)
    .onConflictDoUpdate({ target: jobs.key, set: { runAt: values.runAt, payload: values.payload, attempts: 0, lastError: null } });
}

/** Moves the keyed job to another time (a rescheduled reply); false when there is no such job. */
export async function rescheduleJob(db: DbOrTx, key: string, runAt: Date): Promise<boolean> {
  const rows = await db.update(jobs).set({ runAt }).where(eq(jobs.key, key)).returning({ id: jobs.id });
  return rows.length > 0;
}

export async function deleteJobByKey(db: DbOrTx, key: string): Promise<void> {
  await db.delete(jobs).where(eq(jobs.key, key));
}

/**
 * Claims up to `limit` due jobs of these queues, oldest due first: each one's run_at moves to now + lease
 * and its attempts count up, in one statement. Rows another instance is claiming are skipped, not waited on.
 */
export async function claimDueJobs(db: DbOrTx, queues: readonly string[], limit: number, leaseMs: number): Promise<JobRow[]> {
  const rows = await rawRows(
    db,
    sql`update ${jobs} set run_at = now() + make_interval(secs => ${leaseMs / 1000}), attempts = attempts + 1
        where id in (
          select id from ${jobs}
          where run_at <= now() and queue in (${sql.join(
            queues.map((queue) => sql`${queue}`),
            sql`, `,
          )})
          order by run_at, id
          limit ${limit}
          for update skip locked
        )
        returning *`,
  );
  return rows.map(readJob).sort((a, b) => a.runAt.getTime() - b.runAt.getTime());
}

export async function finishJob(db: DbOrTx, id: string): Promise<void> {
  await db.delete(jobs).where(eq(jobs.id, id));
}

/** Runs the job again at `runAt`; `error` is kept for operators (last_error). */
export async function postponeJob(db: DbOrTx, id: string, runAt: Date, error: string | null): Promise<void> {
  await db.update(jobs).set({ runAt, lastError: error }).where(eq(jobs.id, id));
}
