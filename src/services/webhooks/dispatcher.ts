import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { Webhook } from 'standardwebhooks';
import type { WebhookConfig } from '../../config.js';
import type { Db } from '../../db/client.js';
import { rawRows } from '../../db/rows.js';
import { AppError } from '../../errors.js';
import { Batcher, type Settled } from '../batcher.js';
import { PeriodicTask } from '../periodic.js';
import { checkedAddresses, checkUrlShape, type LookupAll } from './url-policy.js';

// Each instance's sender of outgoing webhooks. It claims due deliveries from the outbox (webhook_deliveries)
// as the job runner claims jobs (FOR UPDATE SKIP LOCKED, a lease: an attempt whose instance died is made
// again once WEBHOOK_LEASE_MS has passed), with two rules the job table cannot express:
// - order: a delivery is claimed only when no earlier delivery of its key (the contact's phone number) to
//   its endpoint is still pending, so one conversation's events arrive in order, and a later one waits
//   while an earlier one is retried (up to its last attempt); other conversations are not held back;
// - isolation: at most WEBHOOK_ENDPOINT_CONCURRENCY attempts per endpoint are claimed while others are in
//   flight, so a slow endpoint fills its own slots and no one else's.

const RESPONSE_EXCERPT_BYTES = 1024;

type Claimed = {
  organizationId: string;
  id: string;
  endpointId: string;
  attempt: number;
  body: string;
  url: string;
  secret: string;
  previousSecret: string | null;
};

type Outcome = { delivery: Claimed; result: AttemptResult };

export type AttemptResult = { ok: boolean; httpStatus: number | null; durationMs: number; error: string | null; response: string | null };

export type DispatcherDeps = {
  db: Db;
  logger: Logger;
  config: WebhookConfig;
  lookup: LookupAll;
  /** Told of each attempt as it ends (metrics): succeeded, or failed (retried later, or the last attempt). */
  onAttempt?: (outcome: 'succeeded' | 'retry' | 'failed', durationMs: number) => void;
};

export class WebhookDispatcher {
  private readonly task: PeriodicTask;
  private closed = false;
  /** Attempts in flight from this instance, per endpoint. */
  private readonly inFlight = new Map<string, number>();
  private readonly recorder = new Batcher<Outcome, void>((outcomes) => this.record(outcomes), 500, 2);
  /** Attempts this instance made (tests, logs). */
  attempted = 0;

  constructor(private readonly deps: DispatcherDeps) {
    this.task = new PeriodicTask('sending webhooks', deps.config.pollMs, () => this.drain(), deps.logger);
  }

  start(): void {
    this.task.start();
  }

  runNow(): Promise<void> {
    return this.task.runNow();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.task.close();
    await this.recorder.drain();
  }

  /**
   * Claims what is due while there is room, and claims again when a quarter of the slots freed up, when
   * nothing is in flight any more, or after a poll interval (so attempts waiting on a slow endpoint never
   * hold back deliveries to others, and a conversation's next event waits at most that long). Returns once
   * nothing is due and nothing is in flight.
   */
  private async drain(): Promise<void> {
    const running = new Set<Promise<void>>();
    const { concurrency, pollMs } = this.deps.config;
    const threshold = Math.max(1, Math.floor(concurrency / 4));
    let finished = 0;
    let wake: (() => void) | null = null;
    try {
      while (!this.closed) {
        const room = concurrency - running.size;
        const claimed = room > 0 ? await this.claim(room) : [];
        finished = 0;
        for (const delivery of claimed) {
          this.inFlight.set(delivery.endpointId, (this.inFlight.get(delivery.endpointId) ?? 0) + 1);
          const run = this.attempt(delivery).finally(() => {
            running.delete(run);
            this.inFlight.set(delivery.endpointId, this.inFlight.get(delivery.endpointId)! - 1);
            if (this.inFlight.get(delivery.endpointId) === 0) this.inFlight.delete(delivery.endpointId);
            finished += 1;
            if (finished >= threshold || running.size === 0) wake?.();
          });
          running.add(run);
        }
        if (running.size === 0) return;
        if (claimed.length > 0 && claimed.length === room) continue;
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, pollMs);
        });
        wake = null;
        clearTimeout(timer);
      }
    } finally {
      await Promise.all(running);
    }
  }

  /**
   * Due deliveries, oldest first: the earliest pending one of each key (conversation) per endpoint, at most
   * WEBHOOK_ENDPOINT_CONCURRENCY in flight per endpoint from this instance (its own count, in memory: a
   * count in SQL would read every pending delivery of a backlogged endpoint at every claim).
   */
  private async claim(limit: number): Promise<Claimed[]> {
    const { leaseMs, endpointConcurrency } = this.deps.config;
    const busy = JSON.stringify(Object.fromEntries(this.inFlight));
    const rows = await rawRows(
      this.deps.db,
      sql`with due as (
            select d.organization_id, d.id, d.endpoint_id, d.seq from webhook_deliveries d
            join webhook_endpoints e on e.organization_id = d.organization_id and e.id = d.endpoint_id and e.enabled
            where d.status = 'pending' and d.next_attempt_at <= now() and (d.lease_until is null or d.lease_until <= now())
              and (d.order_key is null or not exists (
                select 1 from webhook_deliveries p
                -- (select …): a parameter no partial index's predicate can be proved from, so this is always one
                -- probe of webhook_deliveries_order_idx.
                where p.endpoint_id = d.endpoint_id and p.order_key = d.order_key and p.status = (select 'pending'::text) and p.seq < d.seq))
            order by d.next_attempt_at, d.seq
            limit ${limit * 4}
          ), numbered as (
            select due.*, row_number() over (partition by due.endpoint_id order by due.seq)
              + coalesce((${busy}::jsonb ->> due.endpoint_id::text)::int, 0) as n
            from due
          ), locked as (
            select w.organization_id, w.id from webhook_deliveries w
            join numbered on numbered.organization_id = w.organization_id and numbered.id = w.id
            -- (select …) again: the join goes by primary key from the few rows numbered, never through due_idx.
            where numbered.n <= ${endpointConcurrency}
              and w.status = (select 'pending'::text) and (w.lease_until is null or w.lease_until <= now())
            order by numbered.seq
            limit ${limit}
            for update of w skip locked
          )
          update webhook_deliveries w
          set lease_until = now() + make_interval(secs => ${leaseMs / 1000}), attempts = w.attempts + 1, last_attempt_at = now()
          from locked, webhook_endpoints e
          where w.organization_id = locked.organization_id and w.id = locked.id
            and e.organization_id = w.organization_id and e.id = w.endpoint_id
          returning w.organization_id, w.id, w.endpoint_id, w.attempts, w.body::text as body, e.url, e.secret,
            case when e.previous_secret_until > now() then e.previous_secret end as previous_secret`,
    );
    return rows.map((row) => ({
      organizationId: row.organization_id as string,
      id: row.id as string,
      endpointId: row.endpoint_id as string,
      attempt: Number(row.attempts),
      body: row.body as string,
      url: row.url as string,
      secret: row.secret as string,
      previousSecret: (row.previous_secret as string | null) ?? null,
    }));
  }

  private async attempt(delivery: Claimed): Promise<void> {
    const result = await sendSigned(delivery, this.deps.config, this.deps.lookup);
    this.attempted += 1;
    const last = this.deps.config.retryScheduleMs[delivery.attempt - 1] === undefined;
    this.deps.onAttempt?.(result.ok ? 'succeeded' : last ? 'failed' : 'retry', result.durationMs);
    try {
      await this.recorder.submit({ delivery, result });
    } catch (error) {
      // The lease ends and the delivery is claimed again: at least once.
      this.deps.logger.warn({ err: error, deliveryId: delivery.id }, 'webhook attempt not recorded; it will be made again');
    }
  }

  /**
   * The outcomes of the attempts finishing together, in one statement: each attempt, each delivery's next
   * step (only if no later claim took it since: attempts still match), and each endpoint's failure streak
   * (touched only when it starts, ends, or reaches WEBHOOK_DISABLE_AFTER_MS).
   */
  private async record(outcomes: Outcome[]): Promise<Settled<void>[]> {
    const { retryScheduleMs, disableAfterMs } = this.deps.config;
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
    await this.deps.db.execute(
      sql`with x as (
            select * from jsonb_to_recordset(${JSON.stringify(input)}::jsonb) as x(org uuid, id uuid, endpoint uuid, attempt int,
              http int, ms int, err text, resp text, ok boolean, status text, wait float8)
          ), attempt as (
            insert into webhook_attempts (organization_id, delivery_id, attempt, http_status, duration_ms, error, response)
            select org, id, attempt, http, ms, err, resp from x
            on conflict do nothing
          ), delivery as (
            update webhook_deliveries d set status = x.status, lease_until = null, next_attempt_at = now() + make_interval(secs => x.wait)
            from x where d.organization_id = x.org and d.id = x.id and d.attempts = x.attempt
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
              or (not ep.any_ok and (e.failing_since is null or e.failing_since < now() - make_interval(secs => ${disableAfterMs / 1000}))))`,
    );
    return outcomes.map(() => ({ ok: true, value: undefined }));
  }
}

/** The Standard Webhooks signature header: v1 signatures by the secret, and by the previous one during a rotation. */
export function signatureHeader(delivery: Pick<Claimed, 'id' | 'body' | 'secret' | 'previousSecret'>, at: Date): string {
  const signatures = [new Webhook(delivery.secret).sign(delivery.id, at, delivery.body)];
  if (delivery.previousSecret) signatures.push(new Webhook(delivery.previousSecret).sign(delivery.id, at, delivery.body));
  return signatures.join(' ');
}

/** One POST: signed, redirects not followed, every address the connection uses checked, WEBHOOK_TIMEOUT_MS overall. */
export async function sendSigned(delivery: Claimed, config: WebhookConfig, lookupAll: LookupAll): Promise<AttemptResult> {
  const started = Date.now();
  const done = (partial: Omit<AttemptResult, 'durationMs'>): AttemptResult => ({ ...partial, durationMs: Date.now() - started });
  let url: URL;
  try {
    url = checkUrlShape(delivery.url, config);
    // An address written in the URL never goes through a lookup: check it here.
    if (isIP(url.hostname.replace(/^\[|\]$/g, ''))) await checkedAddresses(url.hostname, config, lookupAll);
  } catch (error) {
    return done({ ok: false, httpStatus: null, error: error instanceof AppError ? error.message : String(error), response: null });
  }
  const lookup: LookupFunction = (hostname, options, callback) => {
    checkedAddresses(hostname, config, lookupAll).then(
      (addresses) => {
        if ((options as { all?: boolean }).all) (callback as (e: null, a: typeof addresses) => void)(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (error: Error) => callback(error as NodeJS.ErrnoException, '', 0),
    );
  };
  const at = new Date();
  const headers = {
    'content-type': 'application/json',
    'user-agent': 'conversations-gateway-webhooks/1',
    'webhook-id': delivery.id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signatureHeader(delivery, at),
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const finish = (result: Omit<AttemptResult, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      resolve(done(result));
    };
    const req = send(url, { method: 'POST', headers, lookup, signal: AbortSignal.timeout(config.timeoutMs) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const status = res.statusCode ?? 0;
      const end = () => {
        const response = Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES).toString('utf8');
        const ok = status >= 200 && status < 300;
        finish({ ok, httpStatus: status, error: ok ? null : `HTTP ${status}`, response });
      };
      res.on('data', (chunk: Buffer) => {
        if (size < RESPONSE_EXCERPT_BYTES) chunks.push(chunk);
        size += chunk.length;
        // Enough to show: stop reading a long answer.
        if (size >= RESPONSE_EXCERPT_BYTES) {
          end();
          res.destroy();
        }
      });
      res.on('end', end);
      res.on('error', (error) => finish({ ok: false, httpStatus: status, error: error.message, response: null }));
    });
    req.on('error', (error) => {
      const message = error.name === 'AbortError' || error.name === 'TimeoutError' ? `No answer within ${config.timeoutMs} ms` : error.message;
      finish({ ok: false, httpStatus: null, error: message, response: null });
    });
    req.end(delivery.body);
  });
}
