import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Metrics } from '../observability/metrics.js';
import { sendJson } from './respond.js';

/** GET /metrics: Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`. */
export async function handleMetrics(metrics: Metrics, token: string | undefined, req: IncomingMessage, res: ServerResponse) {
  if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
    res.setHeader('www-authenticate', 'Bearer realm="metrics"');
    sendJson(res, 401, { success: false, code: 'UNAUTHENTICATED', message: 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.' });
    return;
  }
  try {
    const body = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (error) {
    // A gauge read from the database failed (it is away): the scrape fails visibly, the process goes on.
    sendJson(res, 503, { success: false, code: 'SERVICE_UNAVAILABLE', message: `Metrics could not be collected: ${(error as Error).message}` });
  }
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer\s+(.+)$/i.exec(header ?? '')?.[1]?.trim() ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The route template of a path, for metric labels and span names: a fixed set, whatever paths clients try. */
export function routeOf(path: string, shortLinkPrefix: string, webhookPaths: readonly string[]): string {
  if (path === '/graphql' || path.startsWith('/graphql/')) return '/graphql';
  if (path === '/api' || path.startsWith('/api/')) return '/api/*';
  if (webhookPaths.includes(path)) return path;
  if (path.startsWith(shortLinkPrefix)) return `${shortLinkPrefix}*`;
  if (path === '/health' || path === '/health/live' || path === '/health/ready' || path === '/metrics' || path === '/') return path;
  return 'unmatched';
}
