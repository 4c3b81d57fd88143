import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Deps } from './deps.js';
import { createGraphqlHandler, type GraphqlOptions } from './http/graphql.js';
import { attachGraphqlWs } from './http/graphql-ws.js';
import { closeOnRevocation, closeStreamOnRevocation } from './http/revocations.js';
import { applyCors, corsPolicy } from './http/cors.js';
import { createDrain } from './http/graceful.js';
import { createReadiness, handleHealth, handleLiveness } from './http/health.js';
import { handleMetrics, routeOf } from './http/metrics.js';
import { admitRequest } from './http/rate-limit.js';
import { addRequestIdToUpgrades, serveWithRequestId, type RequestObservers } from './http/request-id.js';
import { handleShortLink, SHORT_LINK_PREFIX } from './http/links.js';
import { pathOf, sendJson } from './http/respond.js';
import { createRestHandler } from './http/rest/router.js';
import { handleTwilioWebhook, TWILIO_MESSAGES_PATH, TWILIO_STATUS_PATH } from './http/webhooks/twilio.js';
import { createWebHandler, isPagePath, type DemoCredentials } from './http/web.js';

export type App = {
  server: Server;
  graphql: ReturnType<typeof createGraphqlHandler>;
  /** Listens on the port (0: any free one) and resolves to the base URL. */
  start(port?: number, host?: string): Promise<string>;
  /**
   * Stops accepting, closes WebSockets (1001) and event streams (clients reconnect elsewhere), lets
   * in-flight requests finish (up to graceMs), then closes every socket.
   */
  stop(graceMs?: number): Promise<void>;
};

export type AppOptions = GraphqlOptions & {
  /** The seeded demo's credentials for the inbox page (main.ts passes them outside production only). */
  webDemo?: DemoCredentials | null;
};

export function buildApp(deps: Deps, options: AppOptions = {}): App {
  const graphql = createGraphqlHandler(deps, options);
  const web = createWebHandler({ demo: options.webDemo });
  const rest = createRestHandler(deps);
  // Yoga adds CORS to GraphQL's answers itself (the same policy); every other route gets it here.
  const cors = corsPolicy(deps.config);
  // Open SSE / streamed GraphQL responses: they never finish by themselves, so stop() ends them.
  const streams = new Set<ServerResponse>();
  // WebSockets and event streams close when the token they opened with is revoked.
  const revocations = closeOnRevocation(deps.authenticator);
  const readiness = createReadiness(deps);
  const webhookPaths = [TWILIO_MESSAGES_PATH, TWILIO_STATUS_PATH];
  const { httpRequests, httpDuration } = deps.metrics;
  const onClose: RequestObservers['onClose'] = (req, res, route, startedAt) => {
    const method = req.method ?? 'GET';
    httpRequests.inc({ route, method, status: res.statusCode });
    httpDuration.observe({ route, method }, (performance.now() - startedAt) / 1000);
  };

  const observers = (req: IncomingMessage): RequestObservers => ({
    route: routeOf(pathOf(req), SHORT_LINK_PREFIX, webhookPaths),
    tracing: deps.tracing,
    onClose,
  });

  // Every response gets x-request-id (and is counted, and traced when tracing is on); /graphql and /api
  // spend the caller's per-token budget first.
  const server = createServer((req, res) => serveWithRequestId(deps.logger, req, res, () => {
    drain.mark(res);
    deps.requestLoad.track(req, res);
    const path = pathOf(req);
    if (path === '/graphql' || path.startsWith('/graphql/')) {
      if (/text\/event-stream|multipart\/mixed/.test(req.headers.accept ?? '')) {
        streams.add(res);
        res.once('close', () => streams.delete(res));
        closeStreamOnRevocation(revocations, deps.authenticator, req, res);
      }
      void admitRequest(deps.rateLimiter, req, res, 'graphql').then((admitted) => {
        if (admitted) void graphql.serveHttp(req, res);
      });
      return;
    }
    if (req.headers.origin !== undefined) applyCors(cors, req, res);
    if (path === '/api' || path.startsWith('/api/')) {
      void admitRequest(deps.rateLimiter, req, res, 'rest').then((admitted) => {
        if (admitted) void rest(req, res);
      });
      return;
    }
    if (path === TWILIO_MESSAGES_PATH || path === TWILIO_STATUS_PATH) {
      void handleTwilioWebhook(deps, req, res, path === TWILIO_MESSAGES_PATH ? 'messages' : 'status');
      return;
    }
    if (path.startsWith(SHORT_LINK_PREFIX)) {
      void handleShortLink(deps, req, res, path);
      return;
    }
    if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      void handleHealth(deps, res);
      return;
    }
    if (path === '/health/live' && (req.method === 'GET' || req.method === 'HEAD')) {
      handleLiveness(res);
      return;
    }
    if (path === '/health/ready' && (req.method === 'GET' || req.method === 'HEAD')) {
      void readiness.handle(res);
      return;
    }
    if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      void handleMetrics(deps.metrics, deps.config.metricsToken, req, res);
      return;
    }
    if (isPagePath(path)) {
      web(req, res, path); // the inbox page (src/http/web.ts)
      return;
    }
    sendJson(res, 404, { success: false, code: 'NOT_FOUND', message: `No route for ${req.method} ${path}.` });
  }, observers(req)));
  server.keepAliveTimeout = 65_000;
  const drain = createDrain(server);
  const websockets = attachGraphqlWs(server, graphql, deps, revocations);
  addRequestIdToUpgrades(websockets.wss);
  deps.metrics.sources.subscriptions = () => ({ ws: websockets.activeOperations(), sse: streams.size });
  let stopWatchingRevocations: (() => Promise<void>) | null = null;

  return {
    server,
    graphql,
    async start(port = deps.config.port, host = deps.config.host) {
      await deps.events.ready; // cross-instance events flowing before the first subscriber
      await deps.reads?.recentWrites.ready; // other instances' writes reach us before the first read
      // Revoked tokens leave the auth cache at once; should LISTEN fail, the cache TTL still bounds it.
      stopWatchingRevocations ??= await deps.authenticator.watchRevocations(deps.redis ?? deps.database).catch((error: unknown) => {
        deps.logger.warn({ err: error }, 'could not LISTEN for token revocations; the auth cache TTL bounds them');
        return null;
      });
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
          resolve(`http://${shownHost}:${address.port}`);
        });
      });
    },
    async stop(graceMs = 10_000) {
      if (!server.listening) return;
      // Not ready from now on; a load balancer that checks /health/ready stops sending before we stop accepting.
      readiness.stop();
      if (deps.config.shutdownDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, deps.config.shutdownDelayMs));
      // In-flight requests finish (src/http/graceful.ts); open streams end now, WebSockets close with 1001.
      const closed = drain.close(graceMs);
      for (const res of streams) res.destroy();
      const timer = setTimeout(() => {
        for (const socket of websockets.wss.clients) socket.terminate(); // peers that never answered the close
      }, graceMs);
      await websockets.dispose();
      await closed;
      clearTimeout(timer);
      await stopWatchingRevocations?.().catch(() => {});
      stopWatchingRevocations = null;
      revocations.stop();
    },
  };
}
