import type { IncomingMessage, ServerResponse } from 'node:http';
import { depsForReading, recordWrite, retryOnPrimary } from '../../context.js';
import type { Deps } from '../../deps.js';
import type { Caller } from '../../services/auth.js';
import { classifyError, logClassifiedError } from '../../error-classifier.js';
import { AppError } from '../../errors.js';
import { createLoaders } from '../../loaders/index.js';
import { corsHeaders, corsPolicy } from '../cors.js';
import { credentialsOfRequest } from '../credentials.js';
import { pathOf, sendErrorJson, sendJson } from '../respond.js';
import { conversationMessagesRoute, listConversationsRoute, replyRoute } from './conversations.js';
import { buildOpenApiDocument } from './openapi.js';
import { queryOf } from './request.js';
import type { RestRoute, RouteContext } from './route.js';
import { buildWebhookJsonSchema } from './webhook-schemas.js';

export const restRoutes: readonly RestRoute[] = [listConversationsRoute, conversationMessagesRoute, replyRoute];


function matchPath(template: string, path: string): Record<string, string> | null {
  const want = template.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i += 1) {
    const part = want[i]!;
    if (part.startsWith('{')) {
      if (got[i] === '') return null;
      params[part.slice(1, -1)] = got[i]!;
    } else if (part !== got[i]) return null;
  }
  return params;
}


/**
 * Runs a route. A GET reads from the read replica when it may (context.ts), and from the primary when the
 * replica failed it; any other method writes, and announces it before its answer goes out (read-your-writes).
 */
async function handleRoute(deps: Deps, route: RestRoute, request: Omit<RouteContext, 'deps' | 'loaders'>) {
  const { caller } = request;
  const run = (source: Deps) => route.handle({ ...request, deps: source, loaders: createLoaders(source.db, caller.organizationId) });
  if (route.method !== 'GET') {
    const result = await run(deps);
    await recordWrite(deps, caller);
    return result;
  }
  const source = depsForReading(deps, caller);
  if (source === deps) return run(deps);
  try {
    return await run(source);
  } catch (error) {
    if (!retryOnPrimary({ deps: source }, [error])) throw error;
    return run(deps);
  }
}

/** Serves everything under /api: the published conversations routes and their OpenAPI document. */
export function createRestHandler(deps: Deps) {
  // CORS of simple requests is set before routing (app.ts); a preflight is answered here, with the route's methods.
  const cors = corsPolicy(deps.config);
  const openApi = buildOpenApiDocument(restRoutes, deps.config.publicBaseUrl);
  const webhookSchema = buildWebhookJsonSchema();

  return async function handleRest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let caller: Caller | null = null;
    try {
      const path = pathOf(req).replace(/(.)\/+$/, '$1');
      const method = req.method ?? 'GET';
      if (/%00/.test(req.url ?? '')) throw new AppError('INVALID_PARAMETER', 'Parameters must not contain NUL (%00) characters.');
      if (path === '/api/openapi.json' || path === '/api/webhooks/schema.json') {
        if (method !== 'GET' && method !== 'HEAD')
          throw new AppError('METHOD_NOT_ALLOWED', `${method} is not allowed here.`, { allow: 'GET' });
        sendJson(res, 200, path === '/api/openapi.json' ? openApi : webhookSchema);
        return;
      }
      const matches = restRoutes.flatMap((route) => {
        const params = matchPath(route.path, path);
        return params ? [{ route, params }] : [];
      });
      if (matches.length === 0) throw new AppError('NOT_FOUND', `No route for ${method} ${path}.`);
      const allow = matches.map((m) => m.route.method).join(', ');
      if (method === 'OPTIONS') {
        // CORS preflight for browser clients.
        res.writeHead(204, { ...corsHeaders(cors, req, allow.split(', ')), allow });
        res.end();
        return;
      }
      const match = matches.find((m) => m.route.method === method);
      if (!match) throw new AppError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}; use ${allow}.`, { allow });

      const credentials = credentialsOfRequest(req);
      caller = await deps.authenticator.authenticate(credentials.authorization, credentials.organizationId);
      const result = await handleRoute(deps, match.route, { req, caller, params: match.params, query: queryOf(req) });
      sendJson(res, result.status, result.body);
    } catch (error) {
      // A write that failed may still have stored something (a reply in doubt): its reads stay on the primary too.
      if (caller && req.method !== 'GET') await recordWrite(deps, caller);
      if (res.headersSent) {
        deps.logger.error({ err: error }, 'REST request failed after the response started');
        res.destroy();
        return;
      }
      const classified = classifyError(error);
      logClassifiedError(deps.logger, classified, 'REST request', { method: req.method, url: req.url });
      sendErrorJson(res, classified.error);
    }
  };
}

