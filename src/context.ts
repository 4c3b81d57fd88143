import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Database, Db } from './db/client.js';
import { createLoaders, type Loaders } from './loaders/index.js';
import type { EventBus } from './pubsub/index.js';
import type { Authenticator, Caller } from './services/auth.js';

/** Everything long-lived the app needs, built once in main.ts (or per test) and passed in. */
export type Deps = {
  config: Config;
  database: Database;
  db: Db;
  logger: Logger;
  authenticator: Authenticator;
  events: EventBus;
};

export type Credentials = { authorization?: string | null; organizationId?: string | null };

/** Per-request state: who is calling, and loaders scoped to their organization. */
export type RequestContext = {
  deps: Deps;
  caller: Caller;
  loaders: Loaders;
};

export async function createRequestContext(deps: Deps, credentials: Credentials): Promise<RequestContext> {
  const caller = await deps.authenticator.authenticate(credentials.authorization, credentials.organizationId);
  return { deps, caller, loaders: createLoaders(deps.db, caller.organizationId) };
}
