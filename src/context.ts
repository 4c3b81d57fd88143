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

/**
 * What a request does to the database: `read` (a GraphQL query, a REST GET) may be served by the read
 * replica; `write` (mutations, subscriptions, anything else) uses the primary for its reads too.
 */
export type Access = 'read' | 'write';

export async function createRequestContext(deps: Deps, credentials: Credentials, access: Access = 'write'): Promise<RequestContext> {
  const caller = await deps.authenticator.authenticate(credentials.authorization, credentials.organizationId);
  const source = access === 'read' && deps.reads ? depsForReading(deps, caller) : deps;
  return { deps: source, caller, loaders: createLoaders(source.db, caller.organizationId) };
}

// Read routing (DATABASE_READ_URL; docs/deploy.md, Read replica). Every function below is a no-op without a
// replica, and authentication above always uses the primary, so a revocation is seen at once.

/**
 * The Deps a read-only request of `caller` reads with: the replica's, unless the replica is unreachable or
 * this credential wrote within READ_YOUR_WRITES_MS (it must see its own write).
 */
export function depsForReading(deps: Deps, caller: Caller): Deps {
  const reads = deps.reads;
  if (!reads) return deps;
  if (!reads.replica.usable || reads.recentWrites.wroteRecently(caller.tokenId)) {
    reads.served.primary.inc();
    return deps;
  }
  reads.served.replica.inc();
  return reads.replicaDeps;
}

/** A context made for writing (Yoga builds one before it knows the operation), switched to reading when it may. */
export function readingContext(context: RequestContext): RequestContext {
  const deps = depsForReading(context.deps, context.caller);
  return deps === context.deps ? context : { ...context, deps, loaders: createLoaders(deps.db, context.caller.organizationId) };
}

/** Whether this context reads from the replica. */
export const readsReplica = (context: Pick<RequestContext, 'deps'>): boolean =>
  context.deps.reads !== null && context.deps === context.deps.reads.replicaDeps;

/**
 * After a read on the replica failed with `errors`: whether to run it again on the primary (the replica is
 * unreachable, now marked so, or refused what only a standby refuses).
 */
export function retryOnPrimary(context: Pick<RequestContext, 'deps'>, errors: readonly unknown[] | undefined): boolean {
  const reads = context.deps.reads;
  if (!reads || !errors?.length || !readsReplica(context)) return false;
  let retry = false;
  for (const error of errors) if (reads.replica.failedOver(error)) retry = true;
  if (retry) reads.served.primary.inc();
  return retry;
}

/** The same request on the primary (fresh loaders: nothing read from the replica is kept). */
export function primaryContext(context: RequestContext, primary: Deps): RequestContext {
  return { ...context, deps: primary, loaders: createLoaders(primary.db, context.caller.organizationId) };
}

/** Marks a write by this caller, on every instance, before its response goes out (read-your-writes). */
export async function recordWrite(deps: Deps, caller: Caller): Promise<void> {
  await deps.reads?.recentWrites.wrote(caller.tokenId);
}
