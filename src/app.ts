import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Deps } from './context.js';
import { createGraphqlHandler, type GraphqlOptions } from './http/graphql.js';
import { handleHealth } from './http/health.js';
import { pathOf, sendJson } from './http/respond.js';

export type App = {
  server: Server;
  graphql: ReturnType<typeof createGraphqlHandler>;
  /** Listens on the port (0: any free one) and resolves to the base URL. */
  start(port?: number, host?: string): Promise<string>;
  /** Stops accepting, lets in-flight requests finish (up to graceMs), then closes every socket. */
  stop(graceMs?: number): Promise<void>;
};

export function buildApp(deps: Deps, options: GraphqlOptions = {}): App {
  const graphql = createGraphqlHandler(deps, options);

  const server = createServer((req, res) => {
    const path = pathOf(req);
    if (path === '/graphql' || path.startsWith('/graphql/')) {
      void graphql(req, res);
      return;
    }
    if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      void handleHealth(deps, res);
      return;
    }
    if (path === '/') {
      res.writeHead(302, { location: '/graphql' }).end();
      return;
    }
    sendJson(res, 404, { success: false, code: 'NOT_FOUND', message: `No route for ${req.method} ${path}.` });
  });
  server.keepAliveTimeout = 65_000;

  return {
    server,
    graphql,
    start(port = deps.config.port, host = deps.config.host) {
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
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
