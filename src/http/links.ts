import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../deps.js';
import { recordShortLinkClick, resolveShortLink } from '../services/short-links.js';
import { sendJson } from './respond.js';

export const SHORT_LINK_PREFIX = '/l/';

/** `GET /l/<code>`: 302 to the original URL, counting the click. HEAD redirects without counting. */
export async function handleShortLink(deps: Deps, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(
      res,
      405,
      { success: false, code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on short links.` },
      { allow: 'GET, HEAD' },
    );
    return;
  }
  let code: string;
  try {
    code = decodeURIComponent(path.slice(SHORT_LINK_PREFIX.length));
  } catch {
    code = '';
  }
  try {
    const url = req.method === 'GET' ? await recordShortLinkClick(deps.db, code) : await resolveShortLink(deps.db, code);
    if (!url) {
      sendJson(res, 404, { success: false, code: 'NOT_FOUND', message: 'Unknown short link.' });
      return;
    }
    // no-store: every visit must reach us to be counted.
    res.writeHead(302, { location: url, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).end();
  } catch (error) {
    deps.logger.error({ err: error }, 'short link redirect failed');
    sendJson(res, 503, { success: false, code: 'SERVICE_UNAVAILABLE', message: 'Try again shortly.' });
  }
}
