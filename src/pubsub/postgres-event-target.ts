import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.js';
import { HotQuery } from '../db/rows.js';

/** One channel for every topic: each instance LISTENs once and routes to its own subscribers. */
export const EVENTS_CHANNEL = 'gateway_events';

/** NOTIFY refuses payloads of 8000 bytes or more; an event carries a topic and ids, about a hundred bytes. */
const MAX_PAYLOAD_BYTES = 7900;
/** Notifications sent by one statement (its parameter stays within a few megabytes). */
const MAX_NOTIFY_PER_STATEMENT = 500;

/** `a`: when it was published (epoch ms), for the delivery lag; older instances leave it out. */
type WireEvent = { t: string; p: unknown; a?: number };
/** A notification: the events of one instance, in publishing order (`t`/`p` alone: one event, as older instances send). */
type Wire = { o: string; e?: WireEvent[] } & Partial<WireEvent>;

/** Every notification of a flush, in one prepared statement, NOTIFYed in order. */
const NOTIFY_ALL = new HotQuery(
  sql`select pg_notify(${EVENTS_CHANNEL}, payload) from json_array_elements_text(${sql.placeholder('payloads')}::json) with ordinality as e(payload, n) order by n`,
);

/**
 * An EventTarget shared by every gateway instance on one database (yoga's pubsub takes any EventTarget).
 * dispatchEvent delivers to this instance's subscribers at once and NOTIFYs the others; our own
 * notifications coming back are skipped by origin id, and events from others are delivered locally
 * only (never re-sent). Publishing is fire and forget (it happens after commit): a failed NOTIFY is
 * logged, and subscribers resynchronize from the database (messageReceived re-reads by cursor).
 */
export class PostgresEventTarget extends EventTarget {
  /** Resolves once this instance is LISTENing, so no event published after it is missed. */
  readonly ready: Promise<void>;
  private readonly origin = randomUUID();
  /** How our own notifications start, so the ones coming back are skipped without parsing them. */
  private readonly ownPrefix = `{"o":${JSON.stringify(this.origin)},`;
  /** Events (serialized `WireEvent`s) waiting for the NOTIFY in flight to finish. */
  private queued: string[] = [];
  private sending: Promise<void> | null = null;
  private flushScheduled = false;
  private unlisten: (() => Promise<void>) | null = null;

  constructor(
    private readonly database: Pick<Database, 'listen' | 'db'>,
    private readonly logger: Logger,
    /** Told, for each event from another instance, how long after publishing it arrived (seconds). */
    private readonly onDelivered: (lagSeconds: number) => void = () => {},
  ) {
    super();
    // Every subscriber of an organization listens on its topic: dozens of dashboards are normal, not a leak.
    setMaxListeners(0, this);
    this.ready = database.listen(EVENTS_CHANNEL, (raw) => this.receive(raw)).then((stop) => {
      this.unlisten = stop;
    });
    // Surfaced to whoever awaits `ready` (app.start); never an unhandled rejection.
    this.ready.catch((error: unknown) => logger.error({ err: error }, 'could not LISTEN for gateway events'));
  }

  override dispatchEvent(event: Event): boolean {
    const delivered = super.dispatchEvent(event);
    const serialized = JSON.stringify({ t: event.type, p: (event as CustomEvent).detail, a: Date.now() } satisfies WireEvent);
    if (this.ownPrefix.length + Buffer.byteLength(serialized) + 7 > MAX_PAYLOAD_BYTES) {
      this.logger.error({ topic: event.type, bytes: Buffer.byteLength(serialized) }, 'event too large for NOTIFY; other instances will not see it');
      return delivered;
    }
    // Group commit, as the write batchers do: events published while a NOTIFY is in flight leave together
    // in the next one, packed several to a notification. Each NOTIFY is a transaction PostgreSQL commits
    // (and flushes), and every listening instance wakes per notification: a send publishes two events.
    this.queued.push(serialized);
    if (!this.sending && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return delivered;
  }

  /** Packs what is queued into notifications and sends them in one statement; then the next flush. */
  private flush() {
    if (this.sending || this.queued.length === 0) return;
    const events = this.queued;
    this.queued = [];
    const payloads: string[] = [];
    let packed: string[] = [];
    let bytes = this.ownPrefix.length + 7; // {"o":"...","e":[ ... ]}
    for (const event of events) {
      const size = Buffer.byteLength(event) + 1;
      if (packed.length > 0 && bytes + size > MAX_PAYLOAD_BYTES) {
        payloads.push(`${this.ownPrefix}"e":[${packed.join(',')}]}`);
        packed = [];
        bytes = this.ownPrefix.length + 7;
      }
      packed.push(event);
      bytes += size;
    }
    payloads.push(`${this.ownPrefix}"e":[${packed.join(',')}]}`);
    // One statement after the other, so events arrive in the order they were published.
    this.sending = (async () => {
      for (let start = 0; start < payloads.length; start += MAX_NOTIFY_PER_STATEMENT) {
        const batch = payloads.slice(start, start + MAX_NOTIFY_PER_STATEMENT);
        await NOTIFY_ALL.rows(this.database.db, { payloads: JSON.stringify(batch) }).catch((error: unknown) =>
          this.logger.error({ err: error, notifications: batch.length }, 'NOTIFY failed; other instances resync later'),
        );
      }
    })().finally(() => {
      this.sending = null;
      this.flush();
    });
  }

  /** Sends what is queued, waits for NOTIFYs still in flight, then stops listening. */
  async close(): Promise<void> {
    this.flush();
    while (this.sending) await this.sending;
    await this.ready.catch(() => {});
    await this.unlisten?.().catch(() => {});
    this.unlisten = null;
  }

  private receive(raw: string) {
    if (raw.startsWith(this.ownPrefix)) return;
    let wire: Wire;
    try {
      wire = JSON.parse(raw) as Wire;
    } catch {
      this.logger.warn({ channel: EVENTS_CHANNEL }, 'ignoring a malformed event notification');
      return;
    }
    if (!wire || wire.o === this.origin) return;
    const events = Array.isArray(wire.e) ? wire.e : [wire as WireEvent];
    const now = Date.now();
    for (const event of events) {
      if (event && typeof event.t === 'string') {
        super.dispatchEvent(new CustomEvent(event.t, { detail: event.p }));
        if (typeof event.a === 'number') this.onDelivered(Math.max(0, now - event.a) / 1000);
      }
    }
  }
}
