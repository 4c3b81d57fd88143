import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { freePort } from './free-port.js';

// A throwaway PostgreSQL cluster of our own (initdb + pg_ctl), so a test can stop and start the database
// under a running gateway. Never the shared server on 5432. PostgreSQL refuses to run as root, so as
// root the commands run as the `postgres` user. startPrivateReplica adds a streaming replica of one.

const run = promisify(execFile);

export type PrivatePostgres = {
  url: string;
  /** The server's log (pg_ctl -l). */
  logFile: string;
  port: number;
  /** `fast` terminates every session (57P01), as an administrator's shutdown does; `immediate` is a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
};

export type PrivateReplica = PrivatePostgres & {
  /** Stops applying the primary's WAL (it is still received): what the primary commits now is not seen here. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** Resolves once everything the primary has written so far is visible here. */
  caughtUp(timeoutMs?: number): Promise<void>;
};

type Shell = (command: string) => Promise<unknown>;

/** A new directory the cluster's user owns, and how to run commands as that user. */
async function clusterDirectory(prefix: string): Promise<{ dir: string; shell: Shell }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    chmodSync(dir, 0o700);
  }
  const shell: Shell = (command) => (asRoot ? run('su', ['postgres', '-s', '/bin/sh', '-c', command]) : run('/bin/sh', ['-c', command]));
  return { dir, shell };
}

/** pg_ctl start/stop/destroy of the cluster in `data`, listening on 127.0.0.1:`port` only. */
function controlled(dir: string, data: string, port: number, shell: Shell, settings: string) {
  const start = () =>
    shell(`pg_ctl -D '${data}' -o "-c listen_addresses=127.0.0.1 -p ${port} -k '${dir}' -c fsync=off ${settings}" -l '${join(dir, 'log')}' -w start >/dev/null`).then(() => {});
  let running = false;
  const cluster: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    logFile: join(dir, 'log'),
    port,
    async stop(mode = 'fast') {
      await shell(`pg_ctl -D '${data}' -m ${mode} -w stop >/dev/null`);
      running = false;
    },
    async start() {
      await start();
      running = true;
    },
    async destroy() {
      if (running) await shell(`pg_ctl -D '${data}' -m immediate -w stop >/dev/null`).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/**
 * A cluster on a free port with trust authentication. `replication`: a primary that streams its WAL
 * (wal_level=replica, WAL senders; initdb's pg_hba already trusts `replication` connections from 127.0.0.1).
 */
export async function startPrivatePostgres(options: { replication?: boolean } = {}): Promise<PrivatePostgres> {
  const { dir, shell } = await clusterDirectory('gw-private-pg-');
  const port = await freePort();
  const data = join(dir, 'data');
  await shell(`initdb -D '${data}' -U postgres --auth=trust --no-sync >/dev/null`);
  const cluster = controlled(dir, data, port, shell, options.replication ? '-c wal_level=replica -c max_wal_senders=10' : '');
  await cluster.start();
  return cluster;
}

/**
 * A hot standby of `primary` (started with `replication`), on another free port: a base backup taken with
 * `pg_basebackup -R` (which writes primary_conninfo and standby.signal), then started. Read-only; it
 * replays what the primary commits, usually within milliseconds.
 */
export async function startPrivateReplica(primary: PrivatePostgres): Promise<PrivateReplica> {
  const { dir, shell } = await clusterDirectory('gw-private-replica-');
  const port = await freePort();
  const data = join(dir, 'data');
  await shell(`pg_basebackup -h 127.0.0.1 -p ${primary.port} -U postgres -D '${data}' -R -X stream --no-sync`);
  const cluster = controlled(dir, data, port, shell, '-c hot_standby=on');
  await cluster.start();
  const query = async <T>(url: string, text: string): Promise<T[]> => {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      return (await sql.unsafe(text)) as unknown as T[];
    } finally {
      await sql.end();
    }
  };
  return {
    ...cluster,
    pauseReplay: () => query(cluster.url, 'select pg_wal_replay_pause()').then(() => {}),
    resumeReplay: () => query(cluster.url, 'select pg_wal_replay_resume()').then(() => {}),
    async caughtUp(timeoutMs = 10_000) {
      const [{ lsn }] = await query<{ lsn: string }>(primary.url, 'select pg_current_wal_lsn()::text as lsn');
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [{ done }] = await query<{ done: boolean }>(cluster.url, `select pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn as done`);
        if (done) return;
        if (Date.now() > deadline) throw new Error(`the replica did not replay up to ${lsn} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}
