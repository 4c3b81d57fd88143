import { existsSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../errors.js';
import { sendErrorJson } from './respond.js';

// The inbox page (src/web/, built by Vite into dist/web/ by `npm run build`), served from this process
// with no CDN: `/` and `/inbox/...` answer index.html (deep links are the page's own routes), `/assets/...`
// the hashed bundles. From src/http/ (tsx) and dist/http/ (npm start) alike, the build is ../../dist/web.
export const WEB_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/** The seeded demo's credentials, handed to the page outside production only (see src/main.ts). */
export type DemoCredentials = { organizationId: string; apiToken: string };

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

// The page loads only its own scripts and styles and talks only to this origin (HTTP and WebSocket);
// images may come from anywhere https (MMS media lives at the provider).
export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: https:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

export function isPagePath(path: string): boolean {
  return path === '/' || path === '/inbox' || path.startsWith('/inbox/') || path.startsWith('/assets/');
}

export function createWebHandler(options: { demo?: DemoCredentials | null; dir?: string } = {}) {
  const dir = options.dir ?? WEB_DIR;
  let indexHtml: string | null = null;
  const index = (): string | null => {
    if (indexHtml !== null) return indexHtml;
    const file = join(dir, 'index.html');
    if (!existsSync(file)) return null;
    let html = readFileSync(file, 'utf8');
    if (options.demo) {
      // A JSON data block, not a script: nothing runs, so the CSP needs no 'unsafe-inline'.
      const json = JSON.stringify(options.demo).replace(/</g, '\\u003c');
      html = html.replace('</head>', `<script type="application/json" id="demo-credentials">${json}</script></head>`);
    }
    return (indexHtml = html);
  };

  return function serveWeb(req: IncomingMessage, res: ServerResponse, path: string) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // The one error shape of our non-GraphQL routes, so a client gets a code here too.
      sendErrorJson(res, new AppError('METHOD_NOT_ALLOWED', 'The inbox page answers GET and HEAD only.', { allow: 'GET, HEAD' }));
      return;
    }
    if (path.startsWith('/assets/')) {
      const file = normalize(join(dir, decodeURIComponent(path)));
      if (!file.startsWith(dir.endsWith(sep) ? dir : dir + sep) || !existsSync(file) || !statSync(file).isFile()) {
        sendErrorJson(res, new AppError('NOT_FOUND', 'No such asset of the inbox page.'));
        return;
      }
      const body = readFileSync(file);
      // File names carry a content hash: a new build is a new name.
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'content-length': body.length,
        'cache-control': 'public, max-age=31536000, immutable',
        'x-content-type-options': 'nosniff',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const html = index();
    if (html === null) {
      // Not built (a bare `tsx src/main.ts`): GraphiQL is still there.
      if (path === '/') res.writeHead(302, { location: '/graphql' }).end();
      else res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('The inbox page is not built: run `npm run build`.\n');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(html),
      'cache-control': 'no-cache',
      'content-security-policy': PAGE_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(req.method === 'HEAD' ? undefined : html);
  };
}
