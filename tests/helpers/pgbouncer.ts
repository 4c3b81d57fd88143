import { execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { freePort } from './free-port.js';

// A pgbouncer of our own (Debian's package) on a free port, in transaction mode, in front of a PostgreSQL
// server: tests/pgbouncer.test.ts and the benchmarks start one. No vitest imports, so bench/ can use it.
// pgbouncer refuses to run as root: as root it runs as the `postgres` user.

const run = promisify(execFile);

export type PgbouncerOptions = {
  /** The PostgreSQL server behind it: its host and port. Every database name maps to the same name there. */
  serverUrl: string;
  /** The role pgbouncer logs in as on the server (default: the client's own user name). */
  serverUser?: string;
  /** Server connections per database and user (pgbouncer's default_pool_size). */
  defaultPoolSize?: number;
  maxClientConn?: number;
  /** User names clients may log in as (auth_type trust still wants them listed in the auth_file). */
  users?: string[];
  /** More [pgbouncer] settings. */
  settings?: Record<string, string | number>;
};

export type Pgbouncer = {
  port: number;
  /** A client URL of `database` through the pooler. */
  urlFor(database: string, user?: string): string;
  /** An admin console command (`show pools`, `show clients`, ...): its rows. */
  admin(command: string): Promise<Record<string, unknown>[]>;
  /** What pgbouncer logged (stderr). */
  output(): string;
  stop(): Promise<void>;
};

export const PGBOUNCER_BINARY = existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer';

export async function startPgbouncer(options: PgbouncerOptions): Promise<Pgbouncer> {
  const server = new URL(options.serverUrl);
  const users = options.users ?? ['postgres'];
  const dir = mkdtempSync(join(tmpdir(), 'gw-pgbouncer-'));
  const port = await freePort();
  const target = [`host=${server.hostname}`, `port=${server.port || 5432}`, options.serverUser ? `user=${options.serverUser}` : ''].filter(Boolean).join(' ');
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: join(dir, 'userlist.txt'),
    admin_users: users[0]!,
    pool_mode: 'transaction',
    default_pool_size: options.defaultPoolSize ?? 3,
    reserve_pool_size: 0,
    max_client_conn: options.maxClientConn ?? 500,
    ...options.settings,
  };
  writeFileSync(join(dir, 'userlist.txt'), users.map((user) => `"${user}" ""\n`).join(''));
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    ['[databases]', `* = ${target}`, '', '[pgbouncer]', ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`), ''].join('\n'),
  );
  let ids: { uid?: number; gid?: number } = {};
  if (process.getuid?.() === 0) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    for (const file of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(join(dir, file), uid, gid);
    ids = { uid, gid };
  }
  const child = spawn(PGBOUNCER_BINARY, [join(dir, 'pgbouncer.ini')], { ...ids, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (gone || Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`pgbouncer did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const urlFor = (database: string, user = users[0]!) => `postgres://${user}@127.0.0.1:${port}/${database}`;
  return {
    port,
    urlFor,
    async admin(command) {
      // The admin console speaks the simple query protocol only, and has no pg_type to fetch.
      const console = postgres(urlFor('pgbouncer'), { max: 1, fetch_types: false, onnotice: () => {} });
      try {
        return [...(await console.unsafe(command))] as Record<string, unknown>[];
      } finally {
        await console.end({ timeout: 1 });
      }
    },
    output: () => output,
    async stop() {
      // SIGTERM: immediate shutdown, clients disconnected.
      if (!gone) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}


function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
