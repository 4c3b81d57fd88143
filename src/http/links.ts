import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../deps.js';
import { classifyError, logClassifiedError } from '../error-classifier.js';
import { AppError } from '../errors.js';
import { recordShortLinkClick, resolveShortLink } from '../services/short-links.js';
import { sendErrorJson } from './respond.js';

export const SHORT_LINK_PREFIX = '/l/';

/** `GET /l/<code>`: 302 to the original URL, counting the click. HEAD redirects without counting. */
export async function handleShortLink(deps: Deps, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendErrorJson(res, new AppError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on short links.`, { allow: 'GET, HEAD' }));
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
      sendErrorJson(res, new AppError('NOT_FOUND', 'Unknown short link.'));
      return;
    }
    // no-store: every visit must reach us to be counted.
    res.writeHead(302, { location: url, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).end();
  } catch (error) {
    const classified = classifyError(error);
    logClassifiedError(deps.logger, classified, 'short link redirect');
    sendErrorJson(res, classified.error);
  }
}
