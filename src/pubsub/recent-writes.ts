import type { Logger } from 'pino';
import type { RedisConnections } from './redis.js';

// Read-your-writes with a read replica: a token that wrote reads from the primary for READ_YOUR_WRITES_MS,
// so it sees its own write whatever the replica's lag. Every instance keeps the marks in memory. With
// Redis, a write is announced on WROTE_CHANNEL before its response is sent, so the token's next request
// reads the primary on whichever instance it lands; without Redis the marks are this instance's only.

export const WROTE_CHANNEL = 'gateway:wrote';

export class RecentWrites {
  /** Credential (token id) -> until when (Date.now()) its reads go to the primary. */
  private readonly until = new Map<string, number>();
  private nextSweep = 0;
  private publishFailing = false;
  private unlisten: (() => Promise<void>) | null = null;
  /** Resolves once marks from other instances arrive (immediately without Redis). */
  readonly ready: Promise<void>;

  constructor(
    private readonly windowMs: number,
    private readonly redis: RedisConnections | null,
    private readonly logger: Logger,
  ) {
    this.ready = redis
      ? redis.listen(WROTE_CHANNEL, (tokenId) => this.mark(tokenId)).then(
          (unlisten) => {
            this.unlisten = unlisten;
          },
          (error: unknown) => logger.warn({ err: error }, 'could not subscribe to writes of other instances; read-your-writes is per instance'),
        )
      : Promise.resolve();
  }

  /** Whether this credential wrote within the window (its reads then go to the primary). */
  wroteRecently(tokenId: string): boolean {
    const until = this.until.get(tokenId);
    return until !== undefined && until > Date.now();
  }

  /** Marks a write by this credential, here and (with Redis) on every instance; resolves once announced. */
  async wrote(tokenId: string): Promise<void> {
    this.mark(tokenId);
    if (!this.redis) return;
    try {
      await this.redis.commands.publish(WROTE_CHANNEL, tokenId);
      this.publishFailing = false;
    } catch (error) {
      // Redis being away is logged by its connections too; this says what it costs here, once per outage.
      if (!this.publishFailing) this.logger.warn({ err: error }, 'could not announce a write over Redis: until it is back, read-your-writes holds per instance only');
      this.publishFailing = true;
    }
  }

  /** Marks held now (some may have expired since the last sweep). */
  held(): number {
    return this.until.size;
  }

  async close(): Promise<void> {
    await this.unlisten?.();
    this.until.clear();
  }

  private mark(tokenId: string): void {
    const now = Date.now();
    this.until.set(tokenId, now + this.windowMs);
    // Forget expired marks at most once per window, so the map holds about one window's writers.
    if (now < this.nextSweep) return;
    this.nextSweep = now + this.windowMs;
    for (const [key, until] of this.until) if (until <= now) this.until.delete(key);
  }
}
