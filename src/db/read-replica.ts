import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database, Db } from './client.js';
import { isDatabaseUnavailable, standbyRefusal } from './failures.js';

// A streaming replica of the primary (DATABASE_READ_URL) that read-only requests read from. It is never
// required: while it cannot be reached, reads go to the primary. The first failed read marks it down (one
// warning per outage) and a probe pings it until it answers; the failed read itself is run again on the
// primary by its caller (src/context.ts).

/** How often an unreachable replica is tried again. */
const PROBE_MS = 1_000;

export class ReadReplica {
  readonly db: Db;
  private down = false;
  private probe: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly database: Database,
    private readonly logger: Logger,
    private readonly probeMs = PROBE_MS,
  ) {
    this.db = database.db;
  }

  /** Whether reads go to the replica now: false from a failure to reach it until the probe reaches it again. */
  get usable(): boolean {
    return !this.down;
  }

  /**
   * Whether a read that failed on the replica with `error` is to be run again on the primary: the replica
   * is unreachable (then marked down), or refused what only a standby refuses (a recovery conflict, a write).
   */
  failedOver(error: unknown): boolean {
    if (isDatabaseUnavailable(error)) {
      this.markDown(error);
      return true;
    }
    const refusal = standbyRefusal(error);
    // A read-only request that writes is a bug: the primary still answers it, and the log says where.
    if (refusal === 'read-only') this.logger.error({ err: error }, 'a read-only request tried to write on the read replica; it ran again on the primary');
    return refusal !== null;
  }

  /**
   * Seconds of the primary's history not yet visible on the replica: `now() - pg_last_xact_replay_timestamp()`
   * while it has WAL still to replay, 0 once it replayed all it received (an idle primary writes nothing,
   * so the last replayed commit grows old without any lag). Null while the replica is unreachable.
   */
  async lagSeconds(): Promise<number | null> {
    if (this.down) return null;
    try {
      const result = await this.db.execute<{ lag: number }>(sql`
        select (case
          when not pg_is_in_recovery() or pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0
          else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)
        end)::float8 as lag`);
      const rows = (Array.isArray(result) ? result : (result as { rows: { lag: number }[] }).rows) as { lag: number }[];
      return Math.max(0, Number(rows[0]?.lag ?? 0));
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      this.markDown(error);
      return null;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe) clearTimeout(this.probe);
    await this.database.close();
  }

  private markDown(error: unknown): void {
    if (this.down || this.closed) return;
    this.down = true;
    this.logger.warn({ err: error }, 'read replica unreachable: reads go to the primary until it answers again');
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    this.probe = setTimeout(() => {
      this.probe = null;
      this.database.ping().then(
        () => {
          if (this.closed) return;
          this.down = false;
          this.logger.info('read replica is back: reads go to it again');
        },
        () => {
          if (!this.closed) this.scheduleProbe();
        },
      );
    }, this.probeMs);
    this.probe.unref();
  }
}
