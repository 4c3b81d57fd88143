import type { IncomingMessage, ServerResponse } from 'node:http';
import { PothosError } from '@pothos/core';
import { GraphQLError } from 'graphql';
import { createYoga, maskError as yogaMaskError, type GraphiQLOptions, type Plugin, type YogaServerOptions } from 'graphql-yoga';
import { createRequestContext, type RequestContext } from '../context.js';
import type { Deps } from '../deps.js';
import { classifyError, logClassifiedError } from '../error-classifier.js';
import { AppError, toGraphQLError } from '../errors.js';
import { schema } from '../schema/index.js';
import { credentialsOfConnectionParams, credentialsOfFetchRequest, type Credentials } from './credentials.js';
import { databaseUnavailableError, hardenedYogaOptions } from './protections.js';
import { failureAlreadyLogged } from './request-id.js';
import { createCompileCache, useCompiledExecution } from './graphql-compile.js';
import { createGraphqlFastPath } from './graphql-fast-path.js';
import { useOperationObservability } from './graphql-observability.js';
import { useReadRouting } from './graphql-read-routing.js';
import type { DeclaredPlugin } from './graphql-plugins.js';
import { operationGuards } from './operation-guards.js';

export type GraphqlOptions = {
  /** Headers prefilled in GraphiQL (the embedded demo's token), if any. */
  graphiqlHeaders?: Record<string, string>;
};

/**
 * GraphiQL with its scripts, styles and workers inlined (@graphql-yoga/render-graphiql) instead of Yoga's
 * default page, which loads them from a CDN: the demo works with no network. The module is 9 MB of
 * strings, so it is loaded on the first page view, not at start; the page (the same options every time)
 * is rendered once.
 */
let offlinePage: { key: string; html: Promise<string> } | null = null;
function renderOfflineGraphiQL(options: GraphiQLOptions): Promise<string> {
  const key = JSON.stringify(options);
  if (offlinePage?.key !== key) {
    const html = import('@graphql-yoga/render-graphiql').then(({ renderGraphiQL }) => renderGraphiQL(options));
    // A failed load is not kept: the next page view tries again.
    html.catch(() => {
      if (offlinePage?.html === html) offlinePage = null;
    });
    offlinePage = { key, html };
  }
  return offlinePage.html;
}

type ServerContext = { req?: IncomingMessage; res?: ServerResponse; connectionParams?: Record<string, unknown> };

const EXAMPLE_QUERY = `# The inbox: latest conversations with their contact and last messages.
query Inbox {
  organization { name timezone credits }
  conversations(first: 10) {
    edges {
      node {
        phoneNumber
        unreadCount
        isStarred
        contact { firstName lastName isOptedIn }
        lastMessage { body direction createdAt }
        messages(first: 3) { edges { node { direction body status createdAt } } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
`;

/** Credentials from HTTP headers, or from graphql-ws `connection_init` params. */
const credentialsOf = (request: Request, server: ServerContext): Credentials =>
  server.connectionParams ? credentialsOfConnectionParams(server.connectionParams) : credentialsOfFetchRequest(request);

export function createGraphqlHandler(deps: Deps, options: GraphqlOptions = {}) {
  // One list of operation guards and one compile cache, for Yoga and the fast path alike.
  const guards = operationGuards(deps.config.graphqlMaxCost);
  const compileCache = createCompileCache(schema);
  const hardened = hardenedYogaOptions(deps.config, deps.logger, deps.rateLimiter, guards);
  const fastPath = createGraphqlFastPath(deps, schema, {
    cors: hardened.options.cors as never,
    guards,
    compileCache,
    maxBodyBytes: deps.config.maxRequestBodyBytes,
  });
  const plugins: DeclaredPlugin[] = [
    { name: 'observability', plugin: useOperationObservability(deps.metrics, deps.tracing), fastPath: 'observed-both' },
    ...hardened.plugins,
    { name: 'compiled-execution', plugin: useCompiledExecution(compileCache), fastPath: 'execution' },
    // Only with a read replica: without one, nothing runs per operation.
    ...(deps.reads ? [{ name: 'read-routing', plugin: useReadRouting() as Plugin, fastPath: 'routes-reads' } satisfies DeclaredPlugin] : []),
    { name: 'fast-path', plugin: fastPath.plugin, fastPath: 'feeds-fast-path' },
  ];
  const yogaOptions = {
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    ...hardened.options,
    plugins: plugins.map((declared) => declared.plugin),
    logging: {
      debug: (...args) => deps.logger.debug(args.map(String).join(' ')),
      info: (...args) => deps.logger.info(args.map(String).join(' ')),
      warn: (...args) => deps.logger.warn(args.map(String).join(' ')),
      // Yoga logs each error it masks; our maskError has logged it already, with context: once is enough.
      error: (...args) => {
        if (!failureAlreadyLogged()) deps.logger.error({ err: args.find((arg) => arg instanceof Error) }, args.map(String).join(' '));
      },
    },
    graphiql: deps.config.graphiql
      ? {
          title: 'Conversations gateway',
          defaultQuery: EXAMPLE_QUERY,
          headers: JSON.stringify(
            options.graphiqlHeaders ?? { Authorization: 'Bearer <token>', 'x-organization-id': '<organization id>' },
            null,
            2,
          ),
        }
      : false,
    renderGraphiQL: renderOfflineGraphiQL,
    context: async (initial) => {
      try {
        return await createRequestContext(deps, credentialsOf(initial.request, initial));
      } catch (error) {
        throw error instanceof AppError ? toGraphQLError(error) : error;
      }
    },
    maskedErrors: {
      // Stack traces and internal messages reach a client only in development.
      isDev: deps.config.env === 'development',
      // Errors we throw on purpose keep their message and codes; anything else is logged and masked.
      maskError(error, message, isDev) {
        const located = error instanceof GraphQLError ? error : undefined;
        const original = located ? located.originalError : error;
        const classified = classifyError(error);
        // graphql-js's own errors (syntax, validation, coercion) are already the caller's answer. Pothos
        // throws GraphQLErrors too, which Yoga would pass through unmasked and without a code.
        if (classified.kind === 'unexpected' && located && (!original || original instanceof GraphQLError) && !(original instanceof PothosError)) {
          return yogaMaskError(error, message, isDev);
        }
        logClassifiedError(deps.logger, classified, 'GraphQL operation');
        if (classified.kind === 'unavailable') return databaseUnavailableError(located);
        if (classified.kind !== 'unexpected') return toGraphQLError(classified.error, located);
        if (original instanceof PothosError) return new GraphQLError(message, { path: located?.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
        return yogaMaskError(error, message, isDev);
      },
    },
  } satisfies YogaServerOptions<ServerContext, RequestContext>;
  const yoga = createYoga<ServerContext, RequestContext>(yogaOptions);
  // HTTP requests to /graphql: documents Yoga accepted before are served by the fast path.
  return Object.assign(yoga, {
    serveHttp: (req: IncomingMessage, res: ServerResponse) => fastPath.serve(yoga, req, res),
    fastPath: fastPath.stats,
    /** What Yoga was built from: the declared plugins (tests/graphql-plugins.test.ts holds Yoga to them). */
    construction: { options: yogaOptions, plugins },
  });
}

export type GraphqlHandler = ReturnType<typeof createGraphqlHandler>;
