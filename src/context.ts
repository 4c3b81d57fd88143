import type { Deps } from './deps.js';
import type { Credentials } from './http/credentials.js';
import { createLoaders, type Loaders } from './loaders/index.js';
import type { StreamHints } from './pubsub/shared-execution.js';
import type { Caller } from './services/auth.js';

// The request context: who is calling, and what a request may use. The long-lived parts (Deps) are made
// and closed by the composition root, deps.ts.

/** Per-request state: who is calling, and loaders scoped to their organization. */
export type RequestContext = {
  deps: Deps;
  caller: Caller;
  loaders: Loaders;
  /**
   * Set by a transport that runs a shareable subscription once for many subscribers (src/http/graphql-ws.ts)
   * and read by that field's stream; see pubsub/shared-execution.ts.
   */
  streamHints?: StreamHints;
};

export async function createRequestContext(deps: Deps, credentials: Credentials): Promise<RequestContext> {
  const caller = await deps.authenticator.authenticate(credentials.authorization, credentials.organizationId);
  return { deps, caller, loaders: createLoaders(deps.db, caller.organizationId) };
}
