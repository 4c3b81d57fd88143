import type { Server, ServerResponse } from 'node:http';

// Graceful HTTP shutdown that cuts no request half-way. Node's server.close() closes every connection
// that has no request *being processed*, which includes one whose request bytes have arrived but are not
// parsed yet because the event loop was busy (a burst, or embedded PGlite running a query on the main
// thread). So: first let the loop parse what has already arrived, then stop accepting and close the
// idle connections; responses from then on carry `Connection: close` so busy connections end after
// their current request; a final deadline closes whatever is left.

export function createDrain(server: Server) {
  let draining = false;
  return {
    /** Call for every response: once draining, the connection closes after this response. */
    mark(res: ServerResponse): void {
      if (draining) res.setHeader('connection', 'close');
    },
    /** Resolves when every connection has ended (at the latest after `graceMs`, when the rest are cut). */
    async close(graceMs: number): Promise<void> {
      draining = true;
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Connections that finish a response become idle only after it: sweep them until the server closes.
      const sweeper = setInterval(() => server.closeIdleConnections(), 100);
      const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
      try {
        await closed;
      } finally {
        clearInterval(sweeper);
        clearTimeout(deadline);
      }
    },
  };
}
