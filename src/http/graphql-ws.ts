import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { getOperationAST, GraphQLError, Kind, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import type { RequestContext } from '../context.js';
import type { Deps } from '../deps.js';
import { classifyError, logClassifiedError } from '../error-classifier.js';
import type { AppError } from '../errors.js';
import { createLoaders } from '../loaders/index.js';
import type { FeedKey } from '../pubsub/keyset-feed.js';
import { sharedExecutionOf, type SharedExecution, type StreamHints } from '../pubsub/shared-execution.js';
import { ResultGroup } from '../pubsub/shared-results.js';
import { credentialsOfConnectionParams } from './credentials.js';
import type { GraphqlHandler } from './graphql.js';
import type { Revocations } from './revocations.js';

// graphql-ws (the graphql-transport-ws protocol) on the same server and path as HTTP GraphQL. Operations
// run through Yoga's envelop (getEnveloped), so they get the same context, auth, masking and plugins.
//
// Subscribers of a field declared shareable (pubsub/shared-execution.ts; messageReceived) with the same
// document, variables and organization (and no resume argument) share one execution: one subscription
// runs for the group, and every member gets the same result objects (src/pubsub/shared-results.ts). Each
// member's own operation still runs through envelop once to be admitted (rate limit, cost, argument
// checks), opening no stream of its own.

type Envelope = {
  execute: (args: ExecutionArgs) => unknown;
  subscribe: (args: ExecutionArgs) => Promise<unknown> | unknown;
  /** The operation as the client sent it. */
  query: string;
  id: string;
  socket: WebSocket;
  /** The TCP connection under the WebSocket (the upgraded request's socket). */
  connection: Socket;
};
type EnvelopedArgs = ExecutionArgs & { rootValue: Envelope };

/** A connection with this much unsent (bytes) is too slow for a shared group: it continues on its own stream. */
const MAX_BUFFERED_BYTES = 512 * 1024;

const isAsyncIterator = (value: unknown): value is AsyncIterableIterator<ExecutionResult> =>
  typeof value === 'object' && value !== null && Symbol.asyncIterator in value;

/**
 * The group an operation can share, or null: a subscription to a field declared shareable, alone at the
 * root, without directives there and without the field's resume argument (a resuming subscriber replays
 * on its own stream).
 */
function groupOf(args: EnvelopedArgs): { name: string; declared: SharedExecution } | null {
  const operation = getOperationAST(args.document, args.operationName);
  if (operation?.operation !== 'subscription' || args.document.definitions.length !== 1) return null;
  const [field, ...others] = operation.selectionSet.selections;
  if (others.length > 0 || field?.kind !== Kind.FIELD || field.directives?.length) return null;
  const declared = sharedExecutionOf(args.schema.getSubscriptionType(), field.name.value);
  if (!declared) return null;
  const variables = (args.variableValues ?? {}) as Record<string, unknown>;
  const resume = declared.resumeArgument && field.arguments?.find((argument) => argument.name.value === declared.resumeArgument)?.value;
  if (resume && resume.kind !== Kind.NULL && !(resume.kind === Kind.VARIABLE && variables[resume.name.value] == null)) return null;
  const { caller } = args.contextValue as RequestContext;
  return { name: JSON.stringify([caller.organizationId, args.operationName ?? null, args.rootValue.query, variables]), declared };
}

/** The `payload` of a graphql-ws `next` message, as graphql-ws itself would write it, encoded once for every member. */
function nextPayload(result: ExecutionResult): Buffer {
  const { errors, ...rest } = result;
  return Buffer.from(JSON.stringify(errors ? { ...rest, errors: errors.map((error) => error.toJSON()) } : rest));
}

/** The start of a member's `next` messages, up to its payload: `{"id":<id>,"type":"next","payload":`. */
export const nextHead = (id: string) => Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);

/**
 * A member's `next` message as a whole WebSocket text frame (RFC 6455 §5.2: FIN, opcode 1, unmasked from
 * a server, no extension negotiated): the bytes ws would send for the same text, in one buffer, so it
 * leaves in one write without converting the shared payload again for each member.
 */
export function nextFrame(head: Buffer, payload: Buffer): Buffer {
  const length = head.length + payload.length + 1;
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x81;
  if (headerLength === 2) frame[1] = length;
  else if (headerLength === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt16BE(0, 2);
    frame.writeUIntBE(length, 4, 6);
  }
  head.copy(frame, headerLength);
  payload.copy(frame, headerLength + head.length);
  frame[headerLength + length - 1] = 0x7d; // }
  return frame;
}

/**
 * Writes frames to connections: the first write to a connection in a tick leaves at once (a lone event
 * reaches the first subscribers while the rest are still being written), later ones in the same tick (a
 * burst) are held until the tick ends and leave together in one system call (a write costs far more than
 * preparing it).
 */
function tickWriter() {
  const written = new Set<Socket>();
  const corked: Socket[] = [];
  const endTick = () => {
    for (const socket of corked) socket.uncork();
    corked.length = 0;
    written.clear();
  };
  return (connection: Socket, frame: Buffer) => {
    if (written.size === 0) process.nextTick(endTick);
    const before = written.size;
    written.add(connection);
    if (written.size === before && connection.writableCorked === 0) {
      connection.cork();
      corked.push(connection);
    }
    connection.write(frame);
  };
}

/** Runs the shared groups of one server. */
function sharedSubscriptions(deps: Deps) {
  const groups = new Map<string, Promise<ResultGroup<ExecutionResult, Buffer> | ExecutionResult>>();
  const write = tickWriter();

  /** A context for an operation run on behalf of subscribers already admitted (no socket: not rate limited again). */
  const internalContext = (member: Pick<RequestContext, 'deps' | 'caller'>, streamHints: StreamHints): RequestContext => ({
    deps: member.deps,
    caller: member.caller,
    loaders: createLoaders(member.deps.db, member.caller.organizationId),
    streamHints,
  });

  /** Runs the operation again with an internal context; keeps nothing of the member's connection. */
  const rerun = (args: EnvelopedArgs) => {
    const { schema, document, operationName, variableValues, rootValue } = args;
    const { subscribe } = rootValue;
    const { deps: memberDeps, caller } = args.contextValue as RequestContext;
    return async (hints: StreamHints) =>
      (await subscribe({ schema, document, operationName, variableValues, contextValue: internalContext({ deps: memberDeps, caller }, hints) })) as
        | AsyncIterator<ExecutionResult>
        | ExecutionResult;
  };

  async function open(
    args: EnvelopedArgs,
    declared: SharedExecution,
    forget: () => void,
  ): Promise<ResultGroup<ExecutionResult, Buffer> | ExecutionResult> {
    const { caller } = args.contextValue as RequestContext;
    let start: FeedKey | null = null;
    let lastKey: FeedKey | null = null;
    const hints: StreamHints = { uncounted: true, onStart: (key) => (start = key), onRow: (key) => (lastKey = key) };
    const results = await rerun(args)(hints);
    if (!isAsyncIterator(results)) return results as ExecutionResult;
    return new ResultGroup<ExecutionResult, Buffer>(results, start, () => lastKey, {
      serialize: nextPayload,
      onIdle: forget,
      onMembers: (delta) => deps.events.countShared(declared.topic, caller.organizationId, delta),
    });
  }

  return async function subscribe(args: EnvelopedArgs): Promise<unknown> {
    const group = groupOf(args);
    if (!group) return args.rootValue.subscribe(args);
    const { name, declared } = group;
    // Admission: the member's own operation through every plugin (rate limit, cost, argument checks),
    // opening no stream.
    (args.contextValue as RequestContext).streamHints = { admissionOnly: true };
    const admitted = await args.rootValue.subscribe(args);
    if (!isAsyncIterator(admitted)) return admitted;
    await admitted.return?.();

    const { id, socket, connection } = args.rootValue;
    const head = nextHead(id);
    // Written directly: the bytes ws would send for graphql-ws's message (tests/websocket-frames.test.ts
    // holds nextFrame to ws's own Sender, and checks that no connection negotiates an extension), without
    // serializing per subscriber, and ordered with ws's own writes (pings, graphql-ws's complete, the close
    // frame), which are synchronous writes to this connection too.
    const sink = (payload: Buffer) => {
      if (socket.readyState !== socket.OPEN) return true; // closing: graphql-ws ends the subscription
      if (socket.bufferedAmount > MAX_BUFFERED_BYTES) return false; // bytes unsent on the connection and in ws's queue
      write(connection, nextFrame(head, payload));
      return true;
    };
    // Behind: its own operation (already admitted, so with an internal context) from the last row it got.
    const again = rerun(args);
    const resume = (after: FeedKey | null) => again({ resumeAfter: after });
    for (;;) {
      let opening = groups.get(name);
      if (!opening) {
        const forget = () => {
          if (groups.get(name) === opening) groups.delete(name);
        };
        opening = open(args, declared, forget);
        groups.set(name, opening);
        opening.then((group) => !(group instanceof ResultGroup) && forget(), forget);
      }
      const shared = await opening;
      if (!(shared instanceof ResultGroup)) return shared;
      if (!shared.closed) return shared.join(sink, resume);
      if (groups.get(name) === opening) groups.delete(name);
    }
  };
}

/** Close reasons are limited to 123 bytes by the WebSocket protocol. */
const reason = (text: string) => (Buffer.byteLength(text) <= 123 ? text : `${text.slice(0, 110)}...`);

/** 1013 (try again later, RFC 6455 registry) is the one code graphql-ws clients retry by themselves. */
const TRY_AGAIN_LATER = 1013;

/** The close code and reason for an error at connection_init: the WebSocket rendering of the catalogue. */
function closeOf(error: AppError): [number, string] {
  if (error.code === 'UNAUTHENTICATED') return [CloseCode.Unauthorized, `Unauthorized: ${error.message}`];
  if (error.code === 'FORBIDDEN') return [CloseCode.Forbidden, `Forbidden: ${error.message}`];
  if (error.code === 'RATE_LIMITED') return [CloseCode.TooManyInitialisationRequests, error.message];
  if (error.code === 'SERVICE_UNAVAILABLE') return [TRY_AGAIN_LATER, error.message];
  if (error.status < 500) return [CloseCode.BadRequest, `${error.code}: ${error.message}`];
  return [CloseCode.InternalServerError, error.message];
}

/** graphql-ws clients give up on 4401 (they retry 4403), which is what a revoked token calls for. */
export const REVOKED_CLOSE_REASON = 'Unauthorized: the API token was revoked';
export const MEMBERSHIP_CHANGED_CLOSE_REASON = "Forbidden: the user's membership of this organization changed; reconnect";

export function attachGraphqlWs(server: Server, yoga: GraphqlHandler, deps: Deps, revocations: Revocations) {
  const subscribeShared = sharedSubscriptions(deps);
  // ws accepts 100 MiB frames by default; a GraphQL operation is a few kilobytes.
  // No permessage-deflate: shared results leave as plain frames (nextFrame), and compressing each member's
  // copy would cost more CPU than it saves on small JSON messages.
  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint, maxPayload: 1024 * 1024, perMessageDeflate: false });
  // Connections past connection_init, for gateway_subscriptions_active: their open operations.
  const connections = new Set<{ subscriptions: Record<string, unknown> }>();
  const handle = useServer(
    {
      onClose: (ctx) => {
        connections.delete(ctx);
      },
      // Authenticate at connection_init, before any operation: 4401 bad/missing token, 4403 wrong organization.
      onConnect: async (ctx) => {
        const credentials = credentialsOfConnectionParams(ctx.connectionParams);
        const address = ctx.extra.request.socket.remoteAddress;
        // An address guessing tokens over WebSockets is refused like one guessing over HTTP (AUTH_FAILURES_PER_MINUTE).
        const admitted = await deps.rateLimiter.admitAddress(address, credentials.authorization ?? undefined);
        if (!admitted.allowed) {
          ctx.extra.socket.close(
            CloseCode.TooManyInitialisationRequests,
            reason(`Too many failed authentications from this address; retry in ${admitted.retryAfterSeconds} s.`),
          );
          return false;
        }
        try {
          const caller = await deps.authenticator.authenticate(credentials.authorization, credentials.organizationId);
          const socket = ctx.extra.socket;
          const untrack = revocations.track(caller, (why) =>
            why === 'revoked'
              ? socket.close(CloseCode.Unauthorized, REVOKED_CLOSE_REASON)
              : // 4403: graphql-ws clients retry it, and the new connection gets what the user may do now.
                socket.close(CloseCode.Forbidden, MEMBERSHIP_CHANGED_CLOSE_REASON),
          );
          if (socket.readyState >= socket.CLOSING) untrack();
          else {
            socket.once('close', untrack);
            connections.add(ctx);
          }
          return true;
        } catch (error) {
          const classified = classifyError(error);
          logClassifiedError(deps.logger, classified, 'WebSocket connection');
          if (classified.error.code === 'UNAUTHENTICATED') await deps.rateLimiter.recordAuthFailure(address);
          const [code, text] = closeOf(classified.error);
          ctx.extra.socket.close(code, reason(text));
          return false;
        }
      },
      onSubscribe: async (ctx, id, payload) => {
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
          rootValue: { execute, subscribe, query: payload.query, id, socket: ctx.extra.socket, connection: ctx.extra.request.socket },
        };
        return args;
      },
      execute: (args) => (args as EnvelopedArgs).rootValue.execute(args) as never,
      subscribe: (args) => subscribeShared(args as EnvelopedArgs) as never,
    },
    wss,
  );
  return {
    wss,
    /** Closes every socket with 1001 (going away); their subscriptions end with them. */
    dispose: () => handle.dispose(),
    /** Operations (subscriptions, mostly) open on this instance's sockets. */
    activeOperations(): number {
      let open = 0;
      for (const ctx of connections) for (const _ in ctx.subscriptions) open += 1;
      return open;
    },
  };
}
