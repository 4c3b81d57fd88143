import type { Plugin } from 'graphql-yoga';

// Every plugin we give Yoga is declared here with what the fast path (graphql-fast-path.ts) does about it,
// because the fast path answers a request without Yoga's plugin chain. tests/graphql-plugins.test.ts fails
// when Yoga runs a plugin that is not declared, so a plugin added tomorrow (audit, tracing, extensions)
// cannot silently miss the fast path's answers: declare how the fast path honours it, or make the fast
// path leave the requests it matters for to Yoga.

export type FastPathPart =
  /** Its checks are operation guards (operation-guards.ts), which the fast path runs before executing. */
  | 'runs-guards'
  /** Parse or validation only: done when Yoga first accepted the document, the only way onto the fast path. */
  | 'document'
  /** Acts only on answers with errors or on non-200 responses, which the fast path always leaves to Yoga. */
  | 'errors-only'
  /** Runs for HTTP before either path (app.ts admitRequest); in Yoga it covers WebSocket operations and batches. */
  | 'before-both'
  /** The compile cache (graphql-compile.ts) that the fast path executes from as well. */
  | 'execution'
  /** The fast path's own hook: tells it which documents Yoga accepted. */
  | 'feeds-fast-path'
  /** Metrics and spans (graphql-observability.ts): the fast path records the operations it answers alike. */
  | 'observed-both'
  /**
   * Read routing (graphql-read-routing.ts, only with DATABASE_READ_URL): the fast path builds a query's
   * context for reading and announces a mutation's write itself (context.ts).
   */
  | 'routes-reads';

export type DeclaredPlugin = { name: string; plugin: Plugin; fastPath: FastPathPart };
