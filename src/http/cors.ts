import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config.js';

// CORS for the REST routes, from the same CORS_ORIGINS as GraphQL (Yoga's cors option). Auth is a
// bearer header that a browser never attaches by itself, so '*' (the default) exposes nothing; a list
// narrows which web apps may call at all.

/** Sets the CORS response headers for `req`'s Origin; a disallowed origin simply gets none. */
export function applyCors(config: Pick<Config, 'corsOrigins'>, req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('access-control-expose-headers', 'x-request-id, retry-after');
  if (config.corsOrigins === '*') {
    res.setHeader('access-control-allow-origin', '*');
    return;
  }
  res.setHeader('vary', 'origin');
  const origin = req.headers.origin;
  if (origin && config.corsOrigins.includes(origin)) res.setHeader('access-control-allow-origin', origin);
}
