import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Deps } from './context.js';
import { createDatabase, type Database } from './db/client.js';
import { createEventBus } from './pubsub/index.js';
import { Authenticator } from './services/auth.js';

/** Wires the long-lived services around an open, migrated database. */
export function assembleDeps(config: Config, database: Database, logger: Logger): Deps {
  return {
    config,
    database,
    db: database.db,
    logger,
    authenticator: new Authenticator(database.db, config.authCacheTtlMs),
    events: createEventBus(),
  };
}

/** Opens the configured database (PostgreSQL, or embedded PGlite), applies migrations, wires services. */
export async function openDeps(config: Config, logger: Logger): Promise<Deps & { close(): Promise<void> }> {
  const database = config.databaseUrl
    ? await createDatabase({ kind: 'postgres', url: config.databaseUrl, poolSize: config.databasePoolSize })
    : await createDatabase({ kind: 'pglite', dataDir: resolve(config.dataDir) });
  try {
    await database.migrate();
  } catch (error) {
    await database.close().catch(() => {});
    throw error;
  }
  return { ...assembleDeps(config, database, logger), close: () => database.close() };
}
