import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { Logger as DrizzleLogger } from 'drizzle-orm';
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
  | { kind: 'postgres'; url: string; poolSize?: number }
  | {
      kind: 'pglite';
      dataDir?: string /* undefined: in memory */;
      /** A data directory dumped by PGlite's dumpDataDir to start from (tests start from a migrated one). */
      loadDataDir?: Blob;
    };

export async function createDatabase(options: DatabaseOptions): Promise<Database> {
  const statementLog = new StatementLog();
  if (options.kind === 'postgres') {
    const client = postgres(options.url, {
      max: options.poolSize ?? 10,
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
    close: () => client.close(),
  };
}
