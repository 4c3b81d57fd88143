import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { RedisConnections } from './redis.js';

/** One channel for every topic, as with LISTEN/NOTIFY: each instance subscribes once and routes locally. */
export const REDIS_EVENTS_CHANNEL = 'gateway:events';

type WireEvent = { t: string; p: unknown; a: number };

/**
 * The event target shared by gateway instances over Redis pub/sub (REDIS_URL), in place of LISTEN/NOTIFY:
 * dispatchEvent delivers to this instance's subscribers at once and PUBLISHes to the others; our own
 * messages coming back are skipped by origin id. While Redis is away a publish fails at once and is
 * logged; subscribers elsewhere catch up by re-reading the database (messageReceived every 30 s).
 */
export class RedisEventTarget extends EventTarget {
  /** Resolves once subscribed, or after a few seconds with Redis away (subscribed when it comes back). */
  readonly ready: Promise<void>;
  private readonly origin = randomUUID();
  private readonly ownPrefix = `{"o":${JSON.stringify(this.origin)},`;
  private readonly onMessage = (channel: string, raw: string) => {
    if (channel === REDIS_EVENTS_CHANNEL) this.receive(raw);
  };
  private failing = false;

  constructor(
    private readonly redis: RedisConnections,
    private readonly logger: Logger,
    private readonly onDelivered: (lagSeconds: number) => void = () => {},
  ) {
    super();
    setMaxListeners(0, this);
    redis.subscriber.on('message', this.onMessage);
    let timer: NodeJS.Timeout | undefined;
    const subscribed = redis.subscriber.subscribe(REDIS_EVENTS_CHANNEL).then(() => {});
    this.ready = Promise.race([
      subscribed,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          logger.warn('Redis did not answer SUBSCRIBE in time; starting without it (subscribed once it is back)');
          resolve();
        }, 5_000);
      }),
    ]).finally(() => clearTimeout(timer));
    subscribed.catch((error: unknown) => logger.error({ err: error }, 'could not SUBSCRIBE to gateway events on Redis'));
  }

  override dispatchEvent(event: Event): boolean {
    const delivered = super.dispatchEvent(event);
    const wire = `${this.ownPrefix}"e":[${JSON.stringify({ t: event.type, p: (event as CustomEvent).detail, a: Date.now() } satisfies WireEvent)}]}`;
    this.redis.commands.publish(REDIS_EVENTS_CHANNEL, wire).then(
      () => {
        this.failing = false;
      },
      (error: unknown) => {
        // Once per outage: the connection's own log line says Redis is away.
        if (!this.failing) this.logger.warn({ err: error }, 'PUBLISH to Redis failed; other instances resync from the database');
        this.failing = true;
      },
    );
    return delivered;
  }

  async close(): Promise<void> {
    this.redis.subscriber.off('message', this.onMessage);
    await this.redis.subscriber.unsubscribe(REDIS_EVENTS_CHANNEL).catch(() => {});
  }

  private receive(raw: string) {
    if (raw.startsWith(this.ownPrefix)) return;
    let events: WireEvent[];
    try {
      events = (JSON.parse(raw) as { e: WireEvent[] }).e;
    } catch {
      this.logger.warn({ channel: REDIS_EVENTS_CHANNEL }, 'ignoring a malformed event message');
      return;
    }
    if (!Array.isArray(events)) return;
    const now = Date.now();
    for (const event of events) {
      if (!event || typeof event.t !== 'string') continue;
      super.dispatchEvent(new CustomEvent(event.t, { detail: event.p }));
      if (typeof event.a === 'number') this.onDelivered(Math.max(0, now - event.a) / 1000);
    }
  }
}
