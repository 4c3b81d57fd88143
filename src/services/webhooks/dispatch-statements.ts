import { sql } from 'drizzle-orm';
import type { WebhookConfig } from '../../config.js';
import type { Db } from '../../db/client.js';
import { HotQuery, rawRows } from '../../db/rows.js';
import type { Attempt, AttemptResult } from './sender.js';

// The dispatcher's statements on the outbox (dispatcher.ts): fanning events out into deliveries, claiming
// due deliveries, and recording the outcomes of attempts.

/** A delivery whose attempt this instance holds the lease of. */
export type Claimed = Attempt & { organizationId: string; endpointId: string; attempt: number };

export type Outcome = { delivery: Claimed; result: AttemptResult };

/** Events fanned out per statement. */
export const FAN_OUT_BATCH = 500;

/** The room this instance has for attempts: in all, and in flight per endpoint (its own count, in memory). */
export type Room = { total: number; inFlight: Map<string, number> };

const claimedFrom = (row: Record<string, unknown>): Claimed => ({
  organizationId: row.organization_id as string,
  id: row.id as string,
  endpointId: row.endpoint_id as string,
  attempt: Number(row.attempts),
  body: row.body as string,
  url: row.url as string,
  secret: row.secret as string,
  previousSecret: (row.previous_secret as string | null) ?? null,
});

/**
 * Moves the oldest events of the outbox into deliveries, one per enabled endpoint subscribed to the type,
 * deleting them in the same statement (each event fanned out once). One instance fans out at a time: the
 * transaction first tries a transaction-level advisory lock (6926, 0; inbound's are (6925, organization),
 * drizzle/0004) and does nothing when another holds it; the statement after it reads a snapshot taken once
 * the lock is held, so it sees every delivery the previous holder wrote, and the deliveries of one key are
 * numbered (seq) in the events' order.
 *
 * A delivery that is the first of its key (conversation) for its endpoint, with none of that key pending, is
 * written leased to this instance, attempt 1 under way, as far as `room` allows: it is returned to be sent at
 * once, with no claim. Its next_attempt_at is its lease's end, so claims never step over it while it is in
 * flight, and it is due again only if its instance dies. Other heads of their key are due at once, to be
 * claimed (claimDue); a delivery behind an earlier pending one of its key waits at 'infinity' until that one
 * settles (recordOutcomes wakes it), so claims read only deliveries they may take.
 *
 * Returns the events taken (0 when the outbox is empty or another instance is fanning out) and the leased.
 */
export async function fanOut(db: Db, config: WebhookConfig, batch: number, room: Room): Promise<{ events: number; leased: Claimed[] }> {
  // Most polls find the outbox empty: one statement then, not a transaction of four.
  const [waiting] = await rawRows(db, sql`select exists (select 1 from webhook_events) as any`);
  if (!waiting?.any) return { events: 0, leased: [] };
  return db.transaction(async (tx) => {
    const [lock] = await rawRows(tx, sql`select pg_try_advisory_xact_lock(6926, 0) as ours`);
    if (!lock?.ours) return { events: 0, leased: [] };
    const rows = await FAN_OUT.rows(tx, {
      batch,
      leaseSeconds: config.leaseMs / 1000,
      endpointConcurrency: config.endpointConcurrency,
      room: room.total,
      busy: JSON.stringify(Object.fromEntries(room.inFlight)),
    });
    const events = Number(rows[0]?.events ?? 0);
    return { events, leased: rows.filter((row) => row.id !== null).map(claimedFrom) };
  });
}

const FAN_OUT = new HotQuery(
  sql`with batch as materialized (
        -- Materialized: a generic plan (the statement is prepared once) may rescan a subquery here per row deleted,
        -- taking (and locking) past the limit.
        select seq from webhook_events order by seq limit ${sql.placeholder('batch')}::int for update skip locked
      ), taken as (
        -- = any(array(…)): a probe of the primary key per event taken, whatever the generic plan guesses of batch.
        delete from webhook_events ev where ev.seq = any(array(select seq from batch))
        returning ev.seq, ev.organization_id, ev.type, ev.order_key, ev.body, ev.created_at
      ), fanned as (
        select t.*, e.id as endpoint_id,
          -- The first of its key in this batch, with none of its key pending for the endpoint: (select …) keeps the
          -- probe on webhook_deliveries_order_idx whatever the statistics.
          row_number() over (partition by e.id, t.order_key order by t.seq) = 1 and not exists (
            select 1 from webhook_deliveries p
            where p.endpoint_id = e.id and p.order_key = t.order_key and p.status = (select 'pending'::text)) as head
        from taken t
        join webhook_endpoints e on e.organization_id = t.organization_id and e.enabled and t.type = any(e.event_types)
      ), leasable as (
        select seq, endpoint_id,
          row_number() over (partition by endpoint_id order by seq)
            + coalesce((${sql.placeholder('busy')}::jsonb ->> endpoint_id::text)::int, 0) as nth_of_endpoint
        from fanned where head
      ), leased as (
        select seq, endpoint_id from leasable
        where nth_of_endpoint <= ${sql.placeholder('endpointConcurrency')}::int
        order by seq limit ${sql.placeholder('room')}::int
      ), written as (
        insert into webhook_deliveries (organization_id, id, endpoint_id, event_type, order_key, body, created_at,
          attempts, lease_until, next_attempt_at, last_attempt_at)
        select f.organization_id, gen_random_uuid(), f.endpoint_id, f.type, f.order_key, f.body, f.created_at,
          case when l.seq is null then 0 else 1 end,
          case when l.seq is null then null else now() + make_interval(secs => ${sql.placeholder('leaseSeconds')}::float8) end,
          case when l.seq is not null then now() + make_interval(secs => ${sql.placeholder('leaseSeconds')}::float8)
            when f.head then now() else 'infinity' end,
          case when l.seq is null then null else now() end
        from fanned f left join leased l on l.seq = f.seq and l.endpoint_id = f.endpoint_id
        order by f.seq, f.endpoint_id
        returning organization_id, id, endpoint_id, attempts, body, lease_until is not null as leased
      )
      select (select count(*) from taken) as events, w.organization_id, w.id, w.endpoint_id, w.attempts, w.body::text as body,
        e.url, e.secret, case when e.previous_secret_until > now() then e.previous_secret end as previous_secret
      from (select 1) one
      left join written w on w.leased
      left join webhook_endpoints e on e.organization_id = w.organization_id and e.id = w.endpoint_id`,
);

/**
 * Due deliveries, oldest first per endpoint, as many per enabled endpoint as it has free slots of
 * WEBHOOK_ENDPOINT_CONCURRENCY (this instance's own count, in memory: a count in SQL would read every pending
 * delivery of a backlogged endpoint at every claim), at most `room.total` in all. Only the head of each key
 * is due (fanOut parks the others at 'infinity'); the probe for an earlier pending one of its key guards
 * the cases a head is pending again behind a redelivered one.
 */
export async function claimDue(db: Db, config: WebhookConfig, room: Room): Promise<Claimed[]> {
  const rows = await CLAIM.rows(db, {
    leaseSeconds: config.leaseMs / 1000,
    endpointConcurrency: config.endpointConcurrency,
    busy: JSON.stringify(Object.fromEntries(room.inFlight)),
    total: room.total,
  });
  return rows.map(claimedFrom);
}

const CLAIM = new HotQuery(
  sql`with free as (
        select e.organization_id, e.id, ${sql.placeholder('endpointConcurrency')}::int
          - coalesce((${sql.placeholder('busy')}::jsonb ->> e.id::text)::int, 0) as slots
        from webhook_endpoints e where e.enabled
      ), due as (
        select d.organization_id, d.id, d.next_attempt_at, d.seq
        from free cross join lateral (
          select d.organization_id, d.id, d.next_attempt_at, d.seq from webhook_deliveries d
          where d.endpoint_id = free.id and d.status = 'pending' and d.next_attempt_at <= now()
            and (d.lease_until is null or d.lease_until <= now())
            and (d.order_key is null or not exists (
              select 1 from webhook_deliveries p
              -- (select …): a parameter no partial index's predicate can be proved from, so this is always one
              -- probe of webhook_deliveries_order_idx.
              where p.endpoint_id = d.endpoint_id and p.order_key = d.order_key and p.status = (select 'pending'::text) and p.seq < d.seq))
          order by d.next_attempt_at, d.seq
          limit free.slots
        ) d
        where free.slots > 0
      ), locked as (
        select w.organization_id, w.id from webhook_deliveries w
        join due on due.organization_id = w.organization_id and due.id = w.id
        -- (select …) again: the join goes by primary key from the few rows due, never through an index on status.
        where w.status = (select 'pending'::text) and (w.lease_until is null or w.lease_until <= now())
        order by due.next_attempt_at, due.seq
        limit ${sql.placeholder('total')}::int
        for update of w skip locked
      )
      update webhook_deliveries w
      set lease_until = now() + make_interval(secs => ${sql.placeholder('leaseSeconds')}::float8), attempts = w.attempts + 1, last_attempt_at = now()
      from locked, webhook_endpoints e
      where w.organization_id = locked.organization_id and w.id = locked.id
        and e.organization_id = w.organization_id and e.id = w.endpoint_id
      returning w.organization_id, w.id, w.endpoint_id, w.attempts, w.body::text as body, e.url, e.secret,
        case when e.previous_secret_until > now() then e.previous_secret end as previous_secret`,
);

/**
 * The outcomes of the attempts finishing together, in one statement: each attempt, each delivery's next
 * step (only if no later claim took it since: attempts still match), and each endpoint's failure streak
 * (touched only when it starts, ends, or reaches WEBHOOK_DISABLE_AFTER_MS).
 */
export async function recordOutcomes(db: Db, config: WebhookConfig, outcomes: Outcome[]): Promise<void> {
  const { retryScheduleMs, disableAfterMs } = config;
  const input = outcomes.map(({ delivery, result }) => {
    const waitMs = retryScheduleMs[delivery.attempt - 1];
    return {
      org: delivery.organizationId,
      id: delivery.id,
      endpoint: delivery.endpointId,
      attempt: delivery.attempt,
      http: result.httpStatus,
      ms: result.durationMs,
      err: result.error,
      resp: result.response,
      ok: result.ok,
      status: result.ok ? 'succeeded' : waitMs === undefined ? 'failed' : 'pending',
      wait: (waitMs ?? 0) / 1000,
    };
  });
  const hours = Math.round(disableAfterMs / 3_600_000);
  // Under the fan-out's lock (see fanOut): the successors woken here are every one written so far, and a
  // fan-out after this commit sees the settled delivery, so no delivery stays blocked behind a settled one.
  await db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(6926, 0)`);
    await tx.execute(recordStatement(input, disableAfterMs, hours));
  });
}

const recordStatement = (input: unknown[], disableAfterMs: number, hours: number) =>
  sql`with x as (
          select * from jsonb_to_recordset(${JSON.stringify(input)}::jsonb) as x(org uuid, id uuid, endpoint uuid, attempt int,
            http int, ms int, err text, resp text, ok boolean, status text, wait float8)
        ), attempt as (
          insert into webhook_attempts (organization_id, delivery_id, attempt, http_status, duration_ms, error, response)
          select org, id, attempt, http, ms, err, resp from x
          on conflict do nothing
        ), delivery as (
          update webhook_deliveries d set status = x.status, lease_until = null, next_attempt_at = now() + make_interval(secs => x.wait)
          -- Only the attempt still holding its lease: not one a later claim took over (attempts moved on), nor one
          -- redelivered while in flight (its lease cleared: it is sent again). Written as a join clause (x.id is
          -- never null) so the planner probes the primary key whatever the statistics say about leases.
          from x where d.organization_id = x.org and d.id = x.id and d.attempts = x.attempt and (d.lease_until is not null or x.id is null)
          returning d.endpoint_id, d.order_key, d.seq, d.status
        ), woken as (
          -- The next delivery of each settled one's key, blocked behind it until now (fanOut), is due.
          update webhook_deliveries s set next_attempt_at = now()
          from delivery settled
          where settled.status <> 'pending' and settled.order_key is not null
            and s.endpoint_id = settled.endpoint_id and s.order_key = settled.order_key and s.status = (select 'pending'::text)
            and s.next_attempt_at = 'infinity'
            and s.seq = (select min(q.seq) from webhook_deliveries q
              where q.endpoint_id = settled.endpoint_id and q.order_key = settled.order_key and q.status = (select 'pending'::text) and q.seq > settled.seq)
        ), ep as (
          select org, endpoint, bool_or(ok) as any_ok, max(coalesce(err, 'HTTP ' || http)) filter (where not ok) as err from x group by 1, 2
        )
        update webhook_endpoints e set
          failing_since = case when ep.any_ok then null else coalesce(e.failing_since, now()) end,
          enabled = case when not ep.any_ok and e.failing_since < now() - make_interval(secs => ${disableAfterMs / 1000}) then false else e.enabled end,
          disabled_reason = case when not ep.any_ok and e.enabled and e.failing_since < now() - make_interval(secs => ${disableAfterMs / 1000})
            then 'Every delivery attempt failed for ' || ${hours}::text || ' hours or more (last: ' || ep.err || ').' else e.disabled_reason end
        from ep
        where e.organization_id = ep.org and e.id = ep.endpoint
          and ((ep.any_ok and e.failing_since is not null)
            or (not ep.any_ok and (e.failing_since is null or e.failing_since < now() - make_interval(secs => ${disableAfterMs / 1000}))))`;
