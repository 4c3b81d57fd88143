import { z } from 'zod';
import { errorCatalog, type ErrorCode } from '../../errors.js';
import type { RestRoute } from './route.js';
import { componentSchemas } from './schemas.js';

// The OpenAPI 3.1 description of /api, built from the route table the router serves and the zod schemas
// the handlers are typed by; error statuses come from the error catalog.

const errorMeanings: Partial<Record<ErrorCode, string>> = {
  UNAUTHENTICATED: 'Missing, unknown or revoked bearer token.',
  FORBIDDEN: 'The token does not grant access to the organization in `x-organization-id`.',
  ORGANIZATION_REQUIRED: 'A user token of someone in several organizations, sent without `x-organization-id` to pick one.',
  INVALID_PARAMETER: 'A query parameter or header has a value the API does not accept.',
  INVALID_PHONE_NUMBER: 'The `phoneNumber` path segment is not a valid phone number.',
  INVALID_CURSOR: 'The `cursor` was not issued for this conversation.',
  INVALID_BODY: 'The body is not a JSON object sent as `application/json`, or a field has the wrong type.',
  INVALID_MESSAGE: 'The message is missing, empty or cannot be sent as it is.',
  PAYLOAD_TOO_LARGE: 'The body is larger than the API reads.',
  CONTACT_NOT_FOUND: 'No contact exists with this phone number. Create the contact first.',
  CONTACT_OPTED_OUT: 'The contact has opted out and cannot receive messages.',
  CONTACT_NON_TEXTABLE: "The contact's number is confirmed non-textable (landline, VOIP, etc.).",
  CONTACT_TEXTABILITY_PENDING:
    "The contact's textability lookup is pending (`isTextable` is null); replies are blocked until it completes.",
  NO_FROM_NUMBER: 'The organization has no default phone number configured.',
  INSUFFICIENT_CREDITS: 'Insufficient credits to send the message.',
  FROM_NUMBER_FORBIDDEN: 'The specified `fromPhoneNumberId` does not belong to your organization.',
  PROVIDER_ERROR: 'The SMS provider refused or failed the send; nothing was charged.',
  PROVIDER_BUSY: 'The send waited too long for a free slot to the SMS provider (TWILIO_MAX_CONCURRENT_REQUESTS); nothing was sent or charged.',
  INTERNAL_ERROR: 'An unexpected server error.',
};

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** `{ $ref: 'Name' }` in the route table becomes a component reference. */
function expand(schema: RestRoute['response']['schema'] | { $ref: string }): Record<string, unknown> {
  if ('$ref' in schema) return ref(schema.$ref);
  return { type: 'array', items: ref(schema.items.$ref) };
}

function componentJsonSchemas(): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(componentSchemas)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { uri: (id) => `#/components/schemas/${id}`, io: 'input' });
  // OpenAPI 3.1's default dialect is JSON Schema 2020-12 already; per-component $schema/$id only add noise.
  return Object.fromEntries(Object.entries(schemas).map(([id, { $schema: _dialect, $id: _id, ...schema }]) => [id, schema]));
}

function errorResponses(codes: readonly ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of [...codes, 'INTERNAL_ERROR' as const]) {
    const status = errorCatalog[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      String(status),
      {
        description: list.map((code) => `\`${code}\`: ${errorMeanings[code] ?? code}`).join('\n\n'),
        content: {
          'application/json': {
            schema: { type: 'object', allOf: [ref('Error')], properties: { code: { type: 'string', enum: list } } },
          },
        },
      },
    ]),
  );
}

function operation(route: RestRoute) {
  const parameters: unknown[] = [];
  for (const [name, param] of Object.entries(route.pathParams ?? {})) {
    parameters.push({ name, in: 'path', required: true, description: param.description, schema: { type: 'string' } });
  }
  for (const [name, param] of Object.entries(route.query ?? {})) {
    const schema: Record<string, unknown> = { type: param.type };
    if (param.minimum !== undefined) schema.minimum = param.minimum;
    parameters.push({ name, in: 'query', required: false, description: param.description, schema });
  }
  parameters.push({ $ref: '#/components/parameters/OrganizationId' });
  for (const [name, header] of Object.entries(route.headers ?? {})) {
    parameters.push({
      name,
      in: 'header',
      required: false,
      description: header.description,
      schema: { type: 'string', minLength: 1, ...(header.maxLength ? { maxLength: header.maxLength } : {}) },
    });
  }
  return {
    operationId: route.operationId,
    summary: route.summary,
    description: route.description,
    tags: ['conversations'],
    parameters,
    ...(route.requestBody
      ? { requestBody: { required: true, content: { 'application/json': { schema: expand(route.requestBody) } } } }
      : {}),
    responses: {
      '200': { description: route.response.description, content: { 'application/json': { schema: expand(route.response.schema) } } },
      ...errorResponses(route.errors),
      ...Object.fromEntries(
        Object.entries(route.otherResponses ?? {}).map(([status, { description, schema }]) => [
          status,
          { description, content: { 'application/json': { schema: expand(schema) } } },
        ]),
      ),
    },
  };
}

export function buildOpenApiDocument(routes: readonly RestRoute[], serverUrl: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    paths[route.path] = { ...paths[route.path], [route.method.toLowerCase()]: operation(route) };
  }
  paths['/api/openapi.json'] = {
    get: {
      operationId: 'getOpenApiDocument',
      summary: 'This document',
      tags: ['meta'],
      security: [],
      responses: {
        '200': {
          description: 'The OpenAPI 3.1 description of the REST API.',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
      },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Conversations REST API',
      version: '1.0.0',
      description:
        'List two-way SMS conversations, read message history by phone number and send replies. Every error answers `{ "success": false, "code": "<CODE>", "message": "<text>" }`; unknown routes answer 404 `NOT_FOUND`, a known route with another method 405 `METHOD_NOT_ALLOWED`. Timestamps are UTC ISO 8601 with milliseconds.',
    },
    servers: [{ url: serverUrl }],
    security: [{ bearerAuth: [] }],
    tags: [{ name: 'conversations', description: 'Two-way SMS threads, keyed by the contact phone number.' }, { name: 'meta' }],
    paths,
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API token: `Authorization: Bearer <token>`.' },
      },
      parameters: {
        OrganizationId: {
          name: 'x-organization-id',
          in: 'header',
          required: false,
          description: "The organization to act for; defaults to the token's organization. A different one answers 403 FORBIDDEN.",
          schema: { type: 'string', format: 'uuid' },
        },
      },
      schemas: componentJsonSchemas(),
    },
  };
}

export type OpenApiDocument = ReturnType<typeof buildOpenApiDocument>;
