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
import postgres, { type Sql } from 'postgres';
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
  | {
      kind: 'postgres';
      url: string;
      poolSize?: number;
      /** Names this instance's connections in pg_stat_activity. */
      applicationName?: string;
      /**
       * Set when `url` is a pooler in transaction mode (pgbouncer): PostgreSQL itself, for migrations and LISTEN,
       * which need a session of their own. Pooled connections then prepare no statements unless poolerPrepared.
       */
      directUrl?: string;
      /** The pooler keeps each client's prepared statements (pgbouncer >= 1.21 with max_prepared_statements). */
      poolerPrepared?: boolean;
    }
  | {
      kind: 'pglite';
      dataDir?: string /* undefined: in memory */;
      /** A data directory dumped by PGlite's dumpDataDir to start from (tests start from a migrated one). */
      loadDataDir?: Blob;
    };

export async function createDatabase(options: DatabaseOptions): Promise<Database> {
  const statementLog = new StatementLog();
  if (options.kind === 'postgres') return openPostgres(options, statementLog);

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

type PostgresOptions = Extract<DatabaseOptions, { kind: 'postgres' }>;

function openPostgres(options: PostgresOptions, statementLog: StatementLog): Database {
  // postgres.js keeps its pool's counts private: the server's own view of our connections, by their name.
  const applicationName = options.applicationName ?? `conversations-gateway/${randomUUID().slice(0, 8)}`;
  const max = options.poolSize ?? 10;
  const directUrl = options.directUrl;
  const connectionOptions = {
    connection: { application_name: applicationName },
    onnotice: () => {},
    // While the server is away, queued queries fail at the next reconnect attempt: retry within a quarter second
    // (not postgres.js's default of up to 20 s), so callers get a prompt 503 and recovery is prompt too.
    backoff: (retries: number) => Math.min(0.02 * 2 ** retries, 0.25),
    connect_timeout: 5,
  };
  const client = postgres(options.url, {
    ...connectionOptions,
    max,
    // In transaction mode a client's next statement may run on another server connection, where a statement
    // prepared on the last one does not exist. Client-wide false wins over the per-query `prepare: true` that
    // Drizzle sends for named statements (HotQuery in rows.ts): postgres.js takes `options.prepare && query's`.
    // Otherwise the option stays unset, so postgres.js's default (or a `?prepare=` in the URL) applies as before.
    ...(directUrl !== undefined && options.poolerPrepared !== true ? { prepare: false } : {}),
  });
  // Behind a pooler, pg_stat_activity shows the pooler's server connections: count our own work instead.
  const work = directUrl === undefined ? null : { inFlight: 0 };
  const pooled = work ? pooledClient(client, work) : client;
  const db = drizzlePostgres(pooled, { schema: tables, logger: statementLog }) as unknown as Db;
  // LISTEN holds its session open; through a pooler in transaction mode that server connection would go back to
  // the pool after the LISTEN and the notifications would be lost. Connects only when something listens.
  const listener = directUrl === undefined ? client : postgres(directUrl, { ...connectionOptions, max: 1 });
  return {
    db,
    kind: 'postgres',
    statementLog,
    migrate: async () => {
      if (directUrl === undefined) return migratePostgres(db as never, { migrationsFolder });
      // Migrations straight to PostgreSQL: DDL may wait on locks for long, and a migration may rely on its session.
      const direct = postgres(directUrl, { ...connectionOptions, max: 1 });
      try {
        await migratePostgres(drizzlePostgres(direct) as never, { migrationsFolder });
      } finally {
        await direct.end({ timeout: 5 });
      }
    },
    ping: async () => {
      // Through `pooled` (not the tagged template, which bypasses it): behind a pooler it must not pipeline either.
      await pooled.unsafe('select 1');
    },
    listen: async (channel, onPayload) => {
      const subscription = await listener.listen(channel, onPayload);
      return () => subscription.unlisten();
    },
    poolStats: async (): Promise<Record<string, number>> => {
      if (work) {
        // postgres.js gives each statement or transaction a connection of its own up to `max`, then queues them.
        return { busy: Math.min(work.inFlight, max), waiting: Math.max(0, work.inFlight - max), max };
      }
      // The connection counting is busy only for this statement: it counts as idle.
      const [row] = await client<{ open: number; busy: number }[]>`
        select count(*)::int as open, (count(*) filter (where state = 'active' and pid <> pg_backend_pid()))::int as busy
        from pg_stat_activity where application_name = ${applicationName}`;
      const open = row?.open ?? 0;
      const busy = row?.busy ?? 0;
      return { open, busy, idle: open - busy, max };
    },
    close: async () => {
      await client.end({ timeout: 5 });
      if (listener !== client) await listener.end({ timeout: 5 });
    },
  };
}

/**
 * The client behind a pooler in transaction mode, as Drizzle sees it: it counts statements and transactions
 * in flight (poolStats), and it never pipelines, i.e. it sends nothing on a connection whose last statement
 * is still unanswered. Without prepared statements postgres.js sends a statement with parameters in two
 * steps (Parse/Describe/Flush, then Bind/Execute/Sync once it knows the types). Pipelined behind another
 * statement, pgbouncer handed the server connection back to its pool at the first one's ReadyForQuery and
 * dropped the replies to the second's first step ("got packet from server when not linked"): the statement
 * never got an answer (a subscriber stalled, a shutdown waited forever), or another client read it.
 * `max_pipeline: 0` would stop pipelining but breaks sql.begin in postgres.js 3.4 (porsager/postgres#1210);
 * `onexecute` answering false (the hook sql.begin itself uses) tells the pool this connection takes nothing
 * more until that statement's ReadyForQuery. Statements inside a transaction may still pipeline: pgbouncer
 * keeps the server connection until the transaction ends. Drizzle's session runs everything through
 * `unsafe` (statements) and `begin` (transactions); statements inside a transaction go to the
 * transaction's own client and count as the transaction.
 */
function pooledClient(client: Sql, work: { inFlight: number }): Sql {
  const unsafe = (query: string, parameters?: unknown[], options?: object) => {
    const pending = client.unsafe(query, parameters as never, { ...options, onexecute: takeNothingMore } as never);
    let running: Promise<unknown> | null = null;
    // postgres.js runs a query when it is first awaited; Drizzle may ask for `.values()` before that.
    const counted = {
      values() {
        pending.values();
        return counted;
      },
      then(onFulfilled?: (value: unknown) => unknown, onRejected?: (reason: unknown) => unknown) {
        running ??= counting(() => pending);
        return running.then(onFulfilled, onRejected);
      },
    };
    return counted;
  };
  const counting = async <T>(run: () => PromiseLike<T>): Promise<T> => {
    work.inFlight += 1;
    try {
      return await run();
    } finally {
      work.inFlight -= 1;
    }
  };
  const begin = (...args: unknown[]) => counting(() => (client.begin as (...all: unknown[]) => Promise<unknown>)(...args));
  return new Proxy(client, {
    get: (target, key, receiver) => (key === 'unsafe' ? unsafe : key === 'begin' ? begin : Reflect.get(target, key, receiver)),
  });
}

/** postgres.js's per-query hook, called once a statement is written: false keeps the connection from taking another. */
const takeNothingMore = () => false;
