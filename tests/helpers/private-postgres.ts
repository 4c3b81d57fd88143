import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './server-process.js';

// A throwaway PostgreSQL cluster of our own (initdb + pg_ctl), so a test can stop and start the database
// under a running gateway. Never the shared server on 5432. PostgreSQL refuses to run as root, so as
// root the commands run as the `postgres` user.

const run = promisify(execFile);

export type PrivatePostgres = {
  url: string;
  /** The server's log (pg_ctl -l). */
  logFile: string;
  /** `fast` terminates every session (57P01), as an administrator's shutdown does; `immediate` is a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
};

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-private-pg-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    chmodSync(dir, 0o700);
  }
  const shell = (command: string) => (asRoot ? run('su', ['postgres', '-s', '/bin/sh', '-c', command]) : run('/bin/sh', ['-c', command]));
  const port = await freePort();
  const data = join(dir, 'data');
  await shell(`initdb -D '${data}' -U postgres --auth=trust --no-sync >/dev/null`);
  const start = () =>
    shell(`pg_ctl -D '${data}' -o "-c listen_addresses=127.0.0.1 -p ${port} -k '${dir}' -c fsync=off" -l '${join(dir, 'log')}' -w start >/dev/null`).then(() => {});
  await start();
  let running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    logFile: join(dir, 'log'),
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
}
