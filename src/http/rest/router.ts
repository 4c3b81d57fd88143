import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../../deps.js';
import { classifyError, logClassifiedError } from '../../error-classifier.js';
import { AppError } from '../../errors.js';
import { createLoaders } from '../../loaders/index.js';
import { corsHeaders, corsPolicy } from '../cors.js';
import { credentialsOfRequest } from '../credentials.js';
import { pathOf, sendErrorJson, sendJson } from '../respond.js';
import { conversationMessagesRoute, listConversationsRoute, replyRoute } from './conversations.js';
import { buildOpenApiDocument } from './openapi.js';
import { queryOf } from './request.js';
import type { RestRoute } from './route.js';
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


/** Serves everything under /api: the published conversations routes and their OpenAPI document. */
export function createRestHandler(deps: Deps) {
  // CORS of simple requests is set before routing (app.ts); a preflight is answered here, with the route's methods.
  const cors = corsPolicy(deps.config);
  const openApi = buildOpenApiDocument(restRoutes, deps.config.publicBaseUrl);
  const webhookSchema = buildWebhookJsonSchema();

  return async function handleRest(req: IncomingMessage, res: ServerResponse): Promise<void> {
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
      const caller = await deps.authenticator.authenticate(credentials.authorization, credentials.organizationId);
      const result = await match.route.handle({
        deps,
        req,
        caller,
        loaders: createLoaders(deps.db, caller.organizationId),
        params: match.params,
        query: queryOf(req),
      });
      sendJson(res, result.status, result.body);
    } catch (error) {
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

