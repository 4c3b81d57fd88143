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

export type AttemptResult = { ok: boolean; httpStatus: number | null; durationMs: number; error: string | null; response: string | null };

export type DispatcherDeps = { db: Db; logger: Logger; config: WebhookConfig; lookup: LookupAll };

export class WebhookDispatcher {
  private readonly task: PeriodicTask;
  private closed = false;
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
  }

  /**
   * Claims what is due while there is room, and claims again whenever an attempt finishes (it may free the
   * next event of its conversation) or a poll interval passes (so attempts waiting on a slow endpoint never
   * hold back deliveries to others). Returns once nothing is due and nothing is in flight.
   */
  private async drain(): Promise<void> {
    const running = new Set<Promise<void>>();
    try {
      while (!this.closed) {
        const room = this.deps.config.concurrency - running.size;
        const claimed = room > 0 ? await this.claim(room) : [];
        for (const delivery of claimed) {
          const run = this.attempt(delivery).finally(() => running.delete(run));
          running.add(run);
        }
        if (running.size === 0) return;
        if (claimed.length > 0 && claimed.length === room) continue;
        let timer: NodeJS.Timeout | undefined;
        const tick = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.deps.config.pollMs)));
        await Promise.race([...running, tick]);
        clearTimeout(timer);
      }
    } finally {
      await Promise.all(running);
    }
  }

  private async claim(limit: number): Promise<Claimed[]> {
    const { leaseMs, endpointConcurrency } = this.deps.config;
    const rows = await rawRows(
      this.deps.db,
      sql`with due as (
            select d.organization_id, d.id, d.endpoint_id, d.seq from webhook_deliveries d
            join webhook_endpoints e on e.organization_id = d.organization_id and e.id = d.endpoint_id and e.enabled
            where d.status = 'pending' and d.next_attempt_at <= now() and (d.lease_until is null or d.lease_until <= now())
              and (d.order_key is null or not exists (
                select 1 from webhook_deliveries p
                where p.endpoint_id = d.endpoint_id and p.order_key = d.order_key and p.status = 'pending' and p.seq < d.seq))
            order by d.next_attempt_at, d.seq
            limit ${limit * 4}
          ), numbered as (
            select due.*, row_number() over (partition by due.endpoint_id order by due.seq) as n,
              (select count(*) from webhook_deliveries f
                where f.endpoint_id = due.endpoint_id and f.status = 'pending' and f.lease_until > now()) as busy
            from due
          ), locked as (
            select w.organization_id, w.id from webhook_deliveries w
            join numbered on numbered.organization_id = w.organization_id and numbered.id = w.id
            where numbered.n + numbered.busy <= ${endpointConcurrency}
              and w.status = 'pending' and (w.lease_until is null or w.lease_until <= now())
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
    try {
      await this.record(delivery, result);
    } catch (error) {
      // The lease ends and the delivery is claimed again: at least once.
      this.deps.logger.warn({ err: error, deliveryId: delivery.id }, 'webhook attempt not recorded; it will be made again');
    }
  }

  /** The attempt, the delivery's next step and the endpoint's failure streak, in one statement. */
  private async record(delivery: Claimed, result: AttemptResult): Promise<void> {
    const { retryScheduleMs, disableAfterMs } = this.deps.config;
    const waitMs = retryScheduleMs[delivery.attempt - 1];
    const status = result.ok ? 'succeeded' : waitMs === undefined ? 'failed' : 'pending';
    const disabledReason = `Every delivery attempt failed for ${Math.round(disableAfterMs / 3_600_000)} hours or more (last: ${result.error ?? `HTTP ${result.httpStatus}`}).`;
    await this.deps.db.execute(
      sql`with attempt as (
            insert into webhook_attempts (organization_id, delivery_id, attempt, http_status, duration_ms, error, response)
            values (${delivery.organizationId}, ${delivery.id}, ${delivery.attempt}, ${result.httpStatus}, ${result.durationMs}, ${result.error}, ${result.response})
            on conflict do nothing
          ), delivery as (
            update webhook_deliveries set status = ${status}, lease_until = null,
              next_attempt_at = now() + make_interval(secs => ${(waitMs ?? 0) / 1000})
            where organization_id = ${delivery.organizationId} and id = ${delivery.id} and attempts = ${delivery.attempt}
          )
          update webhook_endpoints set
            failing_since = ${result.ok ? sql`null` : sql`coalesce(failing_since, now())`}
            ${
              result.ok
                ? sql``
                : sql`, enabled = case when failing_since < now() - make_interval(secs => ${disableAfterMs / 1000}) then false else enabled end,
                     disabled_reason = case when enabled and failing_since < now() - make_interval(secs => ${disableAfterMs / 1000}) then ${disabledReason} else disabled_reason end`
            }
          where organization_id = ${delivery.organizationId} and id = ${delivery.endpointId}`,
    );
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
