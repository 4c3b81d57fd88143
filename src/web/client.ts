import { cacheExchange } from '@urql/exchange-graphcache';
import { relayPagination } from '@urql/exchange-graphcache/extras';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { Client, fetchExchange, subscriptionExchange } from 'urql';
import { headersOf, type Session } from './session';

/** The WebSocket's state, shown in the header; `epoch` grows at each reconnect so views catch up. */
export type Connection = { state: 'connecting' | 'connected' | 'reconnecting'; epoch: number };

export type Gateway = { client: Client; ws: WsClient; onConnection(listener: (c: Connection) => void): () => void; dispose(): void };

declare const __POSSIBLE_TYPES__: Record<string, string[]>; // from schema.graphql (vite.config.ts)

// Types without an id are embedded in their parent (Graphcache would otherwise warn in development).
const embedded = () => null;

export function createGateway(session: Session, onUnauthenticated: () => void): Gateway {
  let connection: Connection = { state: 'connecting', epoch: 0 };
  let everConnected = false;
  const listeners = new Set<(c: Connection) => void>();
  const set = (next: Connection) => {
    connection = next;
    for (const listener of listeners) listener(connection);
  };

  const ws = createWsClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
    connectionParams: { authorization: `Bearer ${session.apiToken}`, organizationId: session.organizationId },
    lazy: false,
    keepAlive: 10_000,
    retryAttempts: Infinity,
    // A restarting server refuses connections for a while: keep trying, a little slower each time.
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 3_000))),
    on: {
      connected: () => {
        set({ state: 'connected', epoch: everConnected ? connection.epoch + 1 : connection.epoch });
        everConnected = true;
      },
      closed: (event) => {
        if ((event as CloseEvent | undefined)?.code === 4401) onUnauthenticated();
        if (everConnected) set({ ...connection, state: 'reconnecting' });
      },
    },
  });

  const client = new Client({
    url: '/graphql',
    fetchOptions: () => ({ headers: headersOf(session) }),
    exchanges: [
      cacheExchange({
        possibleTypes: __POSSIBLE_TYPES__,
        keys: {
          ConversationCounts: embedded, PageInfo: embedded, ReplyPreview: embedded, Viewer: embedded, Member: embedded,
          ShortLink: embedded, SendReplyPayload: embedded, ConversationConnection: embedded, ConversationEdge: embedded,
          TimelineConnection: embedded, TimelineEdge: embedded, MessageConnection: embedded, MessageEdge: embedded,
        },
        resolvers: { Query: { conversations: relayPagination() } },
      }),
      fetchExchange,
      subscriptionExchange({
        enableAllOperations: false,
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? '' }, sink) }),
        }),
      }),
    ],
  });

  return {
    client,
    ws,
    onConnection(listener) {
      listeners.add(listener);
      listener(connection);
      return () => listeners.delete(listener);
    },
    dispose: () => void ws.dispose(),
  };
}
