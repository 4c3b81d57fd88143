import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { sql, type Logger as DrizzleLogger } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import * as coreTables from './tables.js';
import * as teamworkTables from './teamwork-tables.js';
import * as webhookTables from './webhook-tables.js';

const tables = { ...coreTables, ...teamworkTables, ...webhookTables };

export type Tables = typeof tables;
/** The Drizzle database, whichever driver is underneath. */
export type Db = PgDatabase<PgQueryResultHKT, Tables>;
/** A Drizzle transaction; accepted wherever a Db is, so services compose inside one transaction. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export const migrationsFolder = fileURLToPath(new URL('../../drizzle', import.meta.url));

/**
 * Whether every migration in drizzle/ is applied: the newest recorded migration is at least as recent as
 * the newest one in the journal (what drizzle's migrator itself compares). False while another instance
 * is still migrating, or before the first migration made the table.
 */
export async function migrationsApplied(db: Db): Promise<boolean> {
  const journal = JSON.parse(readFileSync(`${migrationsFolder}/meta/_journal.json`, 'utf8')) as { entries: { when: number }[] };
  const newest = Math.max(...journal.entries.map((entry) => entry.when));
  const exists = await db.execute<{ table: string | null }>(sql`select to_regclass('drizzle.__drizzle_migrations')::text as table`);
  if (!rowsOf<{ table: string | null }>(exists)[0]?.table) return false;
  const applied = await db.execute<{ newest: string | null }>(sql`select max(created_at)::text as newest from drizzle.__drizzle_migrations`);
  return Number(rowsOf<{ newest: string | null }>(applied)[0]?.newest ?? 0) >= newest;
}

/** postgres.js returns rows as the result; PGlite as `result.rows`. */
const rowsOf = <T>(result: unknown): T[] => (Array.isArray(result) ? result : (result as { rows: T[] }).rows);

export type Notification = { channel: string; payload: string };

export interface Database {
  db: Db;
  kind: 'postgres' | 'pglite';
  /** Every SQL statement sent through Drizzle, in order; tests read it to catch N+1 queries. */
  statementLog: StatementLog;
  migrate(): Promise<void>;
  /** Cheap round trip for health checks. */
  ping(): Promise<void>;
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** This instance's connections by state (open, busy, idle, max), for gateway_db_pool_connections. */
  poolStats(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export class StatementLog implements DrizzleLogger {
  count = 0;
  private recording: string[] | null = null;
  logQuery(query: string): void {
    this.count += 1;
    this.recording?.push(query);
  }
  /** Records statements until the returned function is called; it returns what ran. */
  record(): () => string[] {
    const recorded: string[] = [];
    this.recording = recorded;
    return () => {
      if (this.recording === recorded) this.recording = null;
      return recorded;
    };
  }
}

export type DatabaseOptions =
  | { kind: 'postgres'; url: string; poolSize?: number; /** Names this instance's connections in pg_stat_activity. */ applicationName?: string }
  | {
      kind: 'pglite';
      dataDir?: string /* undefined: in memory */;
      /** A data directory dumped by PGlite's dumpDataDir to start from (tests start from a migrated one). */
      loadDataDir?: Blob;
    };

export async function createDatabase(options: DatabaseOptions): Promise<Database> {
  const statementLog = new StatementLog();
  if (options.kind === 'postgres') {
    // postgres.js keeps its pool's counts private: the server's own view of our connections, by their name.
    const applicationName = options.applicationName ?? `conversations-gateway/${randomUUID().slice(0, 8)}`;
    const max = options.poolSize ?? 10;
    const client = postgres(options.url, {
      connection: { application_name: applicationName },
      max,
      onnotice: () => {},
      // While the server is away, queued queries fail at the next reconnect attempt: retry within a quarter second
      // (not postgres.js's default of up to 20 s), so callers get a prompt 503 and recovery is prompt too.
      backoff: (retries: number) => Math.min(0.02 * 2 ** retries, 0.25),
      connect_timeout: 5,
      // Keep timestamps as Date and bigint-free counts.
    });
    const db = drizzlePostgres(client, { schema: tables, logger: statementLog }) as unknown as Db;
    return {
      db,
      kind: 'postgres',
      statementLog,
      migrate: () => migratePostgres(db as never, { migrationsFolder }),
      ping: async () => {
        await client`select 1`;
      },
      listen: async (channel, onPayload) => {
        const subscription = await client.listen(channel, onPayload);
        return () => subscription.unlisten();
      },
      poolStats: async () => {
        // The connection counting is busy only for this statement: it counts as idle.
        const [row] = await client<{ open: number; busy: number }[]>`
          select count(*)::int as open, (count(*) filter (where state = 'active' and pid <> pg_backend_pid()))::int as busy
          from pg_stat_activity where application_name = ${applicationName}`;
        const open = row?.open ?? 0;
        const busy = row?.busy ?? 0;
        return { open, busy, idle: open - busy, max };
      },
      close: () => client.end({ timeout: 5 }),
    };
  }

  if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
  const client = new PGlite({ dataDir: options.dataDir, loadDataDir: options.loadDataDir });
  await client.waitReady;
  const db = drizzlePglite(client, { schema: tables, logger: statementLog }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    statementLog,
    migrate: () => migratePglite(db as never, { migrationsFolder }),
    ping: async () => {
      await client.query('select 1');
    },
    listen: async (channel, onPayload) => client.listen(channel, onPayload),
    // One embedded connection, always open.
    poolStats: async () => ({ open: 1, max: 1 }),
    close: () => client.close(),
  };
}
