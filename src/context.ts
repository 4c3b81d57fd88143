import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Database, Db } from './db/client.js';
import type { RateLimiter } from './http/rate-limit.js';
import { createLoaders, type Loaders } from './loaders/index.js';
import type { SmsProvider } from './providers/sms-provider.js';
import type { EventBus } from './pubsub/index.js';
import type { Authenticator, Caller } from './services/auth.js';
import type { SendsInDoubtSweeper } from './services/sends-in-doubt.js';
import type { TextabilityService } from './services/textability.js';

/** Everything long-lived the app needs, built once in main.ts (or per test) and passed in. */
export type Deps = {
  config: Config;
  database: Database;
  db: Db;
  logger: Logger;
  authenticator: Authenticator;
  events: EventBus;
  /** Sends texts and looks up line types: Twilio, or the simulated provider. */
  sms: SmsProvider;
  textability: TextabilityService;
  /** Settles replies whose process stopped while the provider had them (started by main.ts). */
  sendsInDoubt: SendsInDoubtSweeper;
  /** Per-token request budget for /graphql and /api (RATE_LIMIT_PER_MINUTE). */
  rateLimiter: RateLimiter;
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
