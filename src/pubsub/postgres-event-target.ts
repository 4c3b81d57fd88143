import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.js';

/** One channel for every topic: each instance LISTENs once and routes to its own subscribers. */
export const EVENTS_CHANNEL = 'gateway_events';

/** NOTIFY refuses payloads of 8000 bytes or more; ours carry a topic and ids, a few hundred bytes. */
const MAX_PAYLOAD_BYTES = 7900;
/** Events sent by one statement (its parameter stays well under a megabyte). */
const MAX_NOTIFY_PER_STATEMENT = 500;

type Wire = { o: string; t: string; p: unknown };

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
  private readonly inFlight = new Set<Promise<void>>();
  private unlisten: (() => Promise<void>) | null = null;

  constructor(
    private readonly database: Pick<Database, 'listen' | 'notify' | 'db'>,
    private readonly logger: Logger,
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
    const payload = JSON.stringify({ o: this.origin, t: event.type, p: (event as CustomEvent).detail } satisfies Wire);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      this.logger.error({ topic: event.type, bytes: Buffer.byteLength(payload) }, 'event too large for NOTIFY; other instances will not see it');
      return delivered;
    }
    // Events published in the same turn (a batch of inbound messages, a send's several events) leave
    // in one statement: one NOTIFY each, as before, but one round trip and one transaction for all.
    this.queued.push(payload);
    if (this.queued.length === 1) process.nextTick(() => this.sendQueued());
    return delivered;
  }

  private queued: string[] = [];

  private sendQueued() {
    const payloads = this.queued;
    if (payloads.length === 0) return;
    this.queued = [];
    const send = async (batch: string[]) => {
      if (batch.length === 1) return this.database.notify(EVENTS_CHANNEL, batch[0]!);
      await this.database.db.execute(
        sql`select pg_notify(${EVENTS_CHANNEL}, payload) from json_array_elements_text(${JSON.stringify(batch)}::json) with ordinality as e(payload, n) order by n`,
      );
    };
    // Statements of one turn one after the other, so its events arrive in the order they were published.
    const sending = (async () => {
      for (let start = 0; start < payloads.length; start += MAX_NOTIFY_PER_STATEMENT) {
        const batch = payloads.slice(start, start + MAX_NOTIFY_PER_STATEMENT);
        await send(batch).catch((error: unknown) =>
          this.logger.error({ err: error, events: batch.length }, 'NOTIFY failed; other instances resync later'),
        );
      }
    })().finally(() => this.inFlight.delete(sending));
    this.inFlight.add(sending);
  }

  /** Sends what is queued, waits for NOTIFYs still in flight, then stops listening. */
  async close(): Promise<void> {
    this.sendQueued();
    await Promise.allSettled([...this.inFlight]);
    await this.ready.catch(() => {});
    await this.unlisten?.().catch(() => {});
    this.unlisten = null;
  }

  private receive(raw: string) {
    let wire: Wire;
    try {
      wire = JSON.parse(raw) as Wire;
    } catch {
      this.logger.warn({ channel: EVENTS_CHANNEL }, 'ignoring a malformed event notification');
      return;
    }
    if (wire.o === this.origin || typeof wire.t !== 'string') return;
    super.dispatchEvent(new CustomEvent(wire.t, { detail: wire.p }));
  }
}
