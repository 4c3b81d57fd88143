import type { Server } from 'node:http';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { Deps } from '../context.js';
import { AppError } from '../errors.js';
import type { GraphqlHandler } from './graphql.js';

// graphql-ws (the graphql-transport-ws protocol) on the same server and path as HTTP GraphQL. Operations
// run through Yoga's envelop (getEnveloped), so they get the same context, auth, masking and plugins.

type EnvelopedArgs = ExecutionArgs & {
  rootValue: { execute: (args: ExecutionArgs) => unknown; subscribe: (args: ExecutionArgs) => unknown };
};

/** Close reasons are limited to 123 bytes by the WebSocket protocol. */
const reason = (text: string) => (Buffer.byteLength(text) <= 123 ? text : `${text.slice(0, 110)}...`);

export function attachGraphqlWs(server: Server, yoga: GraphqlHandler, deps: Deps) {
  // ws accepts 100 MiB frames by default; a GraphQL operation is a few kilobytes.
  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint, maxPayload: 1024 * 1024 });
  const handle = useServer(
    {
      // Authenticate at connection_init, before any operation: 4401 bad/missing token, 4403 wrong organization.
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const pick = (...keys: string[]) => keys.map((key) => params[key]).find((value): value is string => typeof value === 'string') ?? null;
        try {
          await deps.authenticator.authenticate(pick('authorization', 'Authorization'), pick('organizationId', 'x-organization-id'));
          return true;
        } catch (error) {
          if (!(error instanceof AppError) || (error.code !== 'UNAUTHENTICATED' && error.code !== 'FORBIDDEN')) throw error;
          const code = error.code === 'UNAUTHENTICATED' ? CloseCode.Unauthorized : CloseCode.Forbidden;
          ctx.extra.socket.close(code, reason(`${error.code === 'UNAUTHENTICATED' ? 'Unauthorized' : 'Forbidden'}: ${error.message}`));
          return false;
        }
      },
      onSubscribe: async (ctx, _id, payload) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
        });
        let document;
        try {
          document = parse(payload.query);
        } catch (error) {
          return [error instanceof GraphQLError ? error : new GraphQLError(String(error))];
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        const args: EnvelopedArgs = {
          schema,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
        return args;
      },
      execute: (args) => (args as EnvelopedArgs).rootValue.execute(args) as never,
      subscribe: (args) => (args as EnvelopedArgs).rootValue.subscribe(args) as never,
    },
    wss,
  );
  return {
    wss,
    /** Closes every socket with 1001 (going away); their subscriptions end with them. */
    dispose: () => handle.dispose(),
  };
}
