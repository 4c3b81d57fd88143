import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { createYoga, maskError as yogaMaskError } from 'graphql-yoga';
import { createRequestContext, type Credentials, type Deps, type RequestContext } from '../context.js';
import { AppError, toGraphQLError } from '../errors.js';
import { schema } from '../schema/index.js';

export type GraphqlOptions = {
  /** Headers prefilled in GraphiQL (the embedded demo's token), if any. */
  graphiqlHeaders?: Record<string, string>;
};

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

/** An AppError anywhere in the chain of wrapped errors (graphql-js and plugins wrap what resolvers throw). */
function findAppError(error: unknown): AppError | null {
  for (let current = error, depth = 0; current && depth < 5; depth += 1) {
    if (current instanceof AppError) return current;
    current = (current as { originalError?: unknown }).originalError;
  }
  return null;
}

export function createGraphqlHandler(deps: Deps, options: GraphqlOptions = {}) {
  return createYoga<ServerContext, RequestContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    logging: {
      debug: (...args) => deps.logger.debug(args.map(String).join(' ')),
      info: (...args) => deps.logger.info(args.map(String).join(' ')),
      warn: (...args) => deps.logger.warn(args.map(String).join(' ')),
      error: (...args) => deps.logger.error(args.map(String).join(' ')),
    },
    graphiql: deps.config.graphiql
      ? {
          title: 'Conversations gateway',
          defaultQuery: EXAMPLE_QUERY,
          headers: JSON.stringify(options.graphiqlHeaders ?? { Authorization: 'Bearer <token>', 'x-organization-id': '<organization id>' }, null, 2),
        }
      : false,
    context: async (initial) => {
      try {
        return await createRequestContext(deps, credentialsOf(initial.request, initial));
      } catch (error) {
        throw error instanceof AppError ? toGraphQLError(error) : error;
      }
    },
    maskedErrors: {
      // Errors we throw on purpose keep their message and codes; anything else is logged and masked.
      maskError(error, message, isDev) {
        const original = error instanceof GraphQLError ? error.originalError : error;
        const appError = findAppError(error);
        if (appError) return toGraphQLError(appError, error instanceof GraphQLError ? error : undefined);
        if (!(error instanceof GraphQLError) || (original && !(original instanceof GraphQLError))) {
          deps.logger.error({ err: original ?? error }, 'unexpected error in GraphQL operation');
        }
        return yogaMaskError(error, message, isDev);
      },
    },
  });
}

export type GraphqlHandler = ReturnType<typeof createGraphqlHandler>;
