import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createDatabase, type Database } from '../../src/db/client.js';
import { createPgliteDataDir, createTestDatabase, postgresUrl } from './database.js';
import { freePort } from './free-port.js';

// The real server process (`node --max-semi-space-size=64 --enable-source-maps dist/main.js`, as `npm start` runs it,
// from the build tests/global-setup.ts makes) for process-level tests: signals, crashes and restarts. Its store is a fresh PostgreSQL database when DATABASE_URL is
// set, otherwise an embedded PGlite data directory, so the suite's two runs test both.

export { freePort };

export type ServerStore = {
  /** Env that points the server at this store. */
  env: Record<string, string>;
  /** Opens the store in this process (PGlite: only while no server runs on it). */
  open(): Promise<Database>;
  destroy(): Promise<void>;
};

export async function createServerStore(): Promise<ServerStore> {
  if (postgresUrl) {
    const database = await createTestDatabase();
    const url = database.url!;
    return {
      env: { DATABASE_URL: url },
      open: async () => {
        const opened = await createDatabase({ kind: 'postgres', url, poolSize: 2 });
        return opened;
      },
      destroy: () => database.close(),
    };
  }
  const dir = createPgliteDataDir();
  return {
    env: { DATA_DIR: dir },
    open: async () => {
      const database = await createDatabase({ kind: 'pglite', dataDir: dir });
      await database.migrate();
      return database;
    },
    destroy: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export type ServerProcess = {
  url: string;
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

export async function startServerProcess(env: Record<string, string>, port?: number): Promise<ServerProcess> {
  const listenPort = port ?? (await freePort());
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && key !== 'DATABASE_URL') base[key] = value;
  const child = spawn(process.execPath, ['--max-semi-space-size=64', '--enable-source-maps', 'dist/main.js'], {
    cwd: join(import.meta.dirname, '..', '..'),
    env: { ...base, NODE_ENV: 'production', LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(listenPort), SEED_DEMO: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${listenPort}`;
  const deadline = Date.now() + 30_000;
  let gone = false;
  void exited.then(() => (gone = true));
  for (;;) {
    if (gone) throw new Error(`server exited during start:\n${output}`);
    try {
      if ((await fetch(`${url}/health`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not start in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url, child, output: () => output, exited };
}
