import type { TestApp, TestOrg } from './app.js';
import { openApiValidator, type OpenApiValidator } from './openapi.js';

export type RestResponse<T = any> = { status: number; headers: Headers; body: T };

const templates: Array<[RegExp, string]> = [
  [/^\/api\/conversations\/?$/, '/api/conversations'],
  [/^\/api\/conversations\/[^/]+\/messages\/?$/, '/api/conversations/{phoneNumber}/messages'],
  [/^\/api\/conversations\/[^/]+\/reply\/?$/, '/api/conversations/{phoneNumber}/reply'],
  [/^\/api\/openapi\.json$/, '/api/openapi.json'],
];

/**
 * A REST client for tests that checks every JSON answer against the OpenAPI document the server
 * publishes: the documented schema for the route and status, or the Error schema off the route table.
 */
export async function restClient(t: TestApp) {
  const doc = await (await fetch(`${t.url}/api/openapi.json`)).json();
  const validator: OpenApiValidator = openApiValidator(doc);

  async function call<T = any>(
    method: string,
    pathAndQuery: string,
    options: { org?: TestOrg; headers?: Record<string, string>; json?: unknown; body?: string } = {},
  ): Promise<RestResponse<T>> {
    const headers: Record<string, string> = {};
    if (options.org)
      Object.assign(headers, { authorization: `Bearer ${options.org.apiToken}`, 'x-organization-id': options.org.organizationId });
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    Object.assign(headers, options.headers);
    const response = await fetch(`${t.url}${pathAndQuery}`, { method, headers, body });
    const text = await response.text();
    if (!(response.headers.get('content-type') ?? '').startsWith('application/json')) {
      throw new Error(`${method} ${pathAndQuery} answered ${response.status} without JSON: ${text.slice(0, 200)}`);
    }
    const parsed = JSON.parse(text);
    const path = new URL(pathAndQuery, t.url).pathname;
    const template = templates.find(([pattern]) => pattern.test(path))?.[1];
    const documented = template ? validator.statuses(template, method).includes(String(response.status)) : false;
    if (documented) validator.assert(template!, method, response.status, parsed);
    else if (response.status >= 400) validator.assertError(parsed);
    else throw new Error(`${method} ${path} answered ${response.status}, which the OpenAPI document does not describe.`);
    return { status: response.status, headers: response.headers, body: parsed as T };
  }

  return { call, doc, validator };
}
