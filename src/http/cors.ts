import type { IncomingMessage, ServerResponse } from 'node:http';
import { getCORSHeadersByRequestAndOptions, type CORSOptions } from '@whatwg-node/server';
import type { Config } from '../config.js';

// CORS, once, for every surface: GraphQL (Yoga's `cors` option takes corsPolicy; the fast path and the
// REST routes call corsHeaders, which is @whatwg-node/server's own helper, the one Yoga runs), REST,
// Twilio webhooks and short links. Auth is a bearer header that a browser never attaches by itself, so
// '*' (the default CORS_ORIGINS) exposes nothing; a list narrows which web apps may call at all, and an
// origin off the list gets no CORS headers (not `null`, which sandboxed pages match).

/** The request headers a browser app may send to any of our routes. */
const ALLOWED_HEADERS = ['authorization', 'content-type', 'x-organization-id', 'x-request-id', 'idempotency-key'];
/** The response headers it may read. */
const EXPOSED_HEADERS = ['x-request-id', 'retry-after'];

type HeaderSource = { headers: { get(name: string): string | null } };

/** The CORS options for a request's Origin, or false for an origin off CORS_ORIGINS. */
export function corsPolicy(config: Pick<Config, 'corsOrigins'>): (request: HeaderSource) => CORSOptions {
  return (request) => {
    const origin = request.headers.get('origin');
    const allowed = config.corsOrigins === '*' ? '*' : origin && config.corsOrigins.includes(origin) ? origin : null;
    if (!allowed) return false;
    return {
      origin: [allowed],
      credentials: false,
      allowedHeaders: ALLOWED_HEADERS,
      exposedHeaders: EXPOSED_HEADERS,
      methods: ['GET', 'POST', 'OPTIONS'],
      maxAge: 600,
    };
  };
}

const headerOf = (req: IncomingMessage) => ({
  headers: {
    get(name: string): string | null {
      const value = req.headers[name.toLowerCase()];
      return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
    },
  },
});

/** The CORS response headers for a Node request, as Yoga would add them; `methods` narrows a preflight's answer. */
export function corsHeaders(
  policy: ReturnType<typeof corsPolicy>,
  req: IncomingMessage,
  methods?: string[],
): Record<string, string> | null {
  const source = headerOf(req);
  const options = policy(source);
  if (options === false) return null;
  const chosen = methods && typeof options === 'object' ? { ...options, methods } : options;
  return getCORSHeadersByRequestAndOptions(source as unknown as Request, chosen);
}

/** Sets the CORS response headers on `res` (for the routes Yoga does not answer). */
export function applyCors(policy: ReturnType<typeof corsPolicy>, req: IncomingMessage, res: ServerResponse): void {
  const headers = corsHeaders(policy, req);
  if (headers) for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
}
