import type { IncomingMessage, ServerResponse } from 'node:http';
import { PothosError } from '@pothos/core';
import { GraphQLError, Kind, type DocumentNode } from 'graphql';
import { useGraphQlJit } from '@envelop/graphql-jit';
import { createYoga, maskError as yogaMaskError, type GraphiQLOptions } from 'graphql-yoga';
import { createRequestContext, type Credentials, type RequestContext } from '../context.js';
import type { Deps } from '../deps.js';
import { AppError, toGraphQLError } from '../errors.js';
import { schema } from '../schema/index.js';
import { isDatabaseUnavailable, isRefusedValue } from '../db/failures.js';
import { databaseUnavailableError, hardenedYogaOptions } from './protections.js';
import { failureAlreadyLogged } from './request-id.js';
import { createGraphqlFastPath } from './graphql-fast-path.js';

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
function credentialsOf(request: Request, server: ServerContext): Credentials {
  const params = server.connectionParams;
  if (params) {
    const pick = (...keys: string[]) => keys.map((k) => params[k]).find((v): v is string => typeof v === 'string') ?? null;
    return { authorization: pick('authorization', 'Authorization'), organizationId: pick('organizationId', 'x-organization-id') };
  }
  return { authorization: request.headers.get('authorization'), organizationId: request.headers.get('x-organization-id') };
}

// Compiling costs more than running a document once: only documents seen before are compiled, so a
// stream of one-off (or hostile, ever-different) documents never pays for compilation. Yoga's parse
// cache hands back the same DocumentNode for the same text, which is what is counted.
const uses = new WeakMap<DocumentNode, number>();
const isHot = (document: DocumentNode) => {
  const count = (uses.get(document) ?? 0) + 1;
  uses.set(document, count);
  return count > 1;
};

const isSubscription = (document: DocumentNode) =>
  document.definitions.some((definition) => definition.kind === Kind.OPERATION_DEFINITION && definition.operation === 'subscription');

/** An AppError anywhere in the chain of wrapped errors (graphql-js and plugins wrap what resolvers throw). */
function findAppError(error: unknown): AppError | null {
  for (let current = error, depth = 0; current && depth < 5; depth += 1) {
    if (current instanceof AppError) return current;
    current = (current as { originalError?: unknown }).originalError;
  }
  return null;
}

export function createGraphqlHandler(deps: Deps, options: GraphqlOptions = {}) {
  const hardened = hardenedYogaOptions(deps.config, deps.logger, deps.rateLimiter);
  const fastPath = createGraphqlFastPath(deps, schema, {
    cors: hardened.cors as never,
    maxCost: deps.config.graphqlMaxCost,
    maxBodyBytes: deps.config.maxRequestBodyBytes,
  });
  const yoga = createYoga<ServerContext, RequestContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    ...hardened,
    // Queries and mutations compiled to JavaScript once per document (graphql-jit): execution without the
    // generic executor's per-field promise machinery (bench/RESULTS.md says what it buys). Subscriptions
    // stay on graphql-js: under graphql-jit they lost their arguments and setup errors (tests/subscriptions.test.ts).
    plugins: [
      ...(hardened.plugins ?? []),
      useGraphQlJit({}, { enableIf: ({ document }) => !isSubscription(document) && isHot(document) }),
      fastPath.plugin,
    ],
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
        const original = error instanceof GraphQLError ? error.originalError : error;
        const appError = findAppError(error);
        if (appError) return toGraphQLError(appError, error instanceof GraphQLError ? error : undefined);
        if (isDatabaseUnavailable(error)) {
          deps.logger.warn({ err: original ?? error }, 'GraphQL operation failed: database unavailable');
          return databaseUnavailableError(error instanceof GraphQLError ? error : undefined);
        }
        if (original instanceof PothosError) {
          // Pothos throws GraphQLErrors, which Yoga would pass through unmasked and without a code.
          if (/has not been implemented|global ?id/i.test((original as PothosError).message)) {
            return toGraphQLError(
              new AppError('BAD_USER_INPUT', 'Not a valid global id.'),
              error instanceof GraphQLError ? error : undefined,
            );
          }
          deps.logger.error({ err: original }, 'unexpected error in GraphQL operation');
          return new GraphQLError(message, {
            path: error instanceof GraphQLError ? error.path : undefined,
            extensions: { code: 'INTERNAL_SERVER_ERROR' },
          });
        }
        if (isRefusedValue(error)) {
          deps.logger.warn({ err: original ?? error }, 'GraphQL operation refused: the database refused a value');
          return toGraphQLError(
            new AppError('BAD_USER_INPUT', 'A value is invalid or too large to store.'),
            error instanceof GraphQLError ? error : undefined,
          );
        }
        if (!(error instanceof GraphQLError) || (original && !(original instanceof GraphQLError))) {
          deps.logger.error({ err: original ?? error }, 'unexpected error in GraphQL operation');
        }
        return yogaMaskError(error, message, isDev);
      },
    },
  });
  // HTTP requests to /graphql: documents Yoga accepted before are served by the fast path.
  return Object.assign(yoga, {
    serveHttp: (req: IncomingMessage, res: ServerResponse) => fastPath.serve(yoga, req, res),
    fastPath: fastPath.stats,
  });
}

export type GraphqlHandler = ReturnType<typeof createGraphqlHandler>;
