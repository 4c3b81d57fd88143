import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { startPgbouncer, type Pgbouncer } from '../../tests/helpers/pgbouncer.js';
import { startPrivatePostgres, startPrivateReplica, type PrivatePostgres, type PrivateReplica } from '../../tests/helpers/private-postgres.js';
import { childPidsNamed, ownCpuMs, treeCpuMs } from './scale-cluster.js';

// bench/scale.ts's database side: a private PostgreSQL primary, optionally a streaming replica of it
// (pg_basebackup -R) for reads, and optionally pgbouncer in transaction mode in front of the primary. The
// gateways get DATABASE_URL (pgbouncer, or the primary), DATABASE_DIRECT_URL (the primary: migrations)
// and DATABASE_READ_URL (the replica). CPU per part and connections per part are read here.

export type DatabaseOptions = { database: string; pgbouncer: boolean; replica: boolean; pgbouncerPoolSize: number };

export type DatabaseTopology = {
  /** The primary itself (migrations, the dataset, the correctness checks). */
  directUrl: string;
  /** Env for every gateway instance. */
  gatewayEnv: Record<string, string>;
  /** A sentence per part for the report. */
  describe(): string[];
  /** Starts the replica and pgbouncer (after the dataset is loaded, so the base backup carries it). */
  startReadersAndPooler(): Promise<void>;
  /** CPU milliseconds so far by part. */
  cpu(): Record<string, number>;
  /** Samples connections per part every second; stop() returns the peaks. */
  sampleConnections(): () => Record<string, number>;
  /** pgbouncer's SHOW POOLS and SHOW SERVERS at this moment, in one line each (empty without it). */
  poolerState(): Promise<string[]>;
  destroy(): Promise<void>;
};

async function postmasterPid(url: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select pg_backend_pid() as pid`;
    const stat = readFileSync(`/proc/${row!.pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } finally {
    await sql.end();
  }
}

const withDatabase = (url: string, database: string) => url.replace(/\/[^/]*$/, `/${database}`);

export async function startDatabase(options: DatabaseOptions): Promise<DatabaseTopology> {
  const primary: PrivatePostgres = await startPrivatePostgres({ replication: options.replica });
  let replica: PrivateReplica | null = null;
  let pgbouncer: Pgbouncer | null = null;
  const directUrl = withDatabase(primary.url, options.database);
  const gatewayEnv: Record<string, string> = { DATABASE_URL: directUrl };
  const pids: Record<string, number> = {};
  const samplers: { name: string; sql: postgres.Sql }[] = [];

  const clientBackends = (sql: postgres.Sql) =>
    sql`select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()`.then(([row]) => row!.n as number);

  return {
    directUrl,
    gatewayEnv,
    describe: () => [
      `PostgreSQL primary (private cluster, fsync off)${options.replica ? ' streaming its WAL to a hot-standby replica (pg_basebackup -R, on the same machine)' : ''}.`,
      pgbouncer
        ? `pgbouncer in transaction mode in front of the primary (default_pool_size ${options.pgbouncerPoolSize}): DATABASE_URL points at it, ` +
          'DATABASE_DIRECT_URL at the primary (migrations; LISTEN is not used: events go through Redis).'
        : 'No pooler: DATABASE_URL points at the primary.',
      replica
        ? 'DATABASE_READ_URL points at the replica, directly (GraphQL queries and REST GETs read there; a token that wrote reads the primary for READ_YOUR_WRITES_MS, 2 s).'
        : 'No replica: every read on the primary.',
    ],
    async startReadersAndPooler() {
      pids['PostgreSQL primary'] = await postmasterPid(primary.url);
      if (options.replica) {
        replica = await startPrivateReplica(primary);
        await replica.caughtUp(60_000);
        gatewayEnv.DATABASE_READ_URL = withDatabase(replica.url, options.database);
        pids['PostgreSQL replica'] = await postmasterPid(replica.url);
        samplers.push({ name: 'replica', sql: postgres(gatewayEnv.DATABASE_READ_URL, { max: 1, onnotice: () => {} }) });
      }
      if (options.pgbouncer) {
        const before = new Set(childPidsNamed('pgbouncer'));
        pgbouncer = await startPgbouncer({ serverUrl: primary.url, defaultPoolSize: options.pgbouncerPoolSize, maxClientConn: 1000 });
        gatewayEnv.DATABASE_URL = pgbouncer.urlFor(options.database);
        gatewayEnv.DATABASE_DIRECT_URL = directUrl;
        const started = childPidsNamed('pgbouncer').find((pid) => !before.has(pid));
        if (started) pids.pgbouncer = started;
      }
      samplers.unshift({ name: 'primary', sql: postgres(directUrl, { max: 1, onnotice: () => {} }) });
    },
    cpu() {
      const result: Record<string, number> = {};
      for (const [name, pid] of Object.entries(pids)) result[name] = name === 'pgbouncer' ? ownCpuMs(pid) : treeCpuMs(pid);
      return result;
    },
    sampleConnections() {
      const peaks: Record<string, number> = {};
      const peak = (name: string, n: number) => (peaks[name] = Math.max(peaks[name] ?? 0, n));
      const timer = setInterval(() => {
        for (const { name, sql } of samplers) void clientBackends(sql).then((n) => peak(name, n), () => {});
        const pooler = pgbouncer;
        if (pooler) {
          void pooler
            .admin('show pools')
            .then((rows) => {
              const pool = rows.filter((row) => row.database === options.database);
              const sum = (key: string) => pool.reduce((total, row) => total + Number(row[key] ?? 0), 0);
              peak('pgbouncer clients', sum('cl_active') + sum('cl_waiting') + sum('cl_idle'));
              peak('pgbouncer clients waiting', sum('cl_waiting'));
              peak('pgbouncer servers', sum('sv_active') + sum('sv_idle') + sum('sv_used') + sum('sv_tested') + sum('sv_login'));
              peak('pgbouncer servers active', sum('sv_active'));
            })
            .catch(() => {});
        }
      }, 1_000);
      return () => (clearInterval(timer), { ...peaks });
    },
    async poolerState() {
      const pooler = pgbouncer;
      if (!pooler) return [];
      const pools = (await pooler.admin('show pools')).filter((row) => row.database === options.database);
      const servers = (await pooler.admin('show servers')).filter((row) => row.database === options.database);
      const fields = ['cl_active', 'cl_waiting', 'cl_idle', 'sv_active', 'sv_idle', 'sv_used', 'maxwait', 'pool_mode'];
      return [
        `SHOW POOLS (${options.database}): ${pools.map((row) => fields.map((key) => `${key}=${String(row[key] ?? '')}`).join(' ')).join('; ')}`,
        `SHOW SERVERS (${options.database}): ${servers.length} server connections, states ${JSON.stringify(servers.reduce<Record<string, number>>((acc, row) => ((acc[String(row.state)] = (acc[String(row.state)] ?? 0) + 1), acc), {}))}`,
      ];
    },
    async destroy() {
      for (const { sql } of samplers) await sql.end({ timeout: 1 }).catch(() => {});
      const pooler = pgbouncer as Pgbouncer | null;
      if (pooler) await pooler.stop();
      const standby = replica as PrivateReplica | null;
      if (standby) await standby.destroy();
      await primary.destroy();
    },
  };
}
