import type { IncomingMessage } from 'node:http';
import type { Deps } from '../../deps.js';
import type { ErrorCode } from '../../errors.js';
import type { Loaders } from '../../loaders/index.js';
import type { Caller } from '../../services/auth.js';

// What a REST route is, apart from the table of routes (router.ts) and the document that describes them
// (openapi.ts), so route files and both readers of the table depend on this and not on each other.

type SchemaRef = { $ref: string } | { type: 'array'; items: { $ref: string } };

export type RouteContext = {
  deps: Deps;
  req: IncomingMessage;
  caller: Caller;
  loaders: Loaders;
  /** Raw (still URL-encoded) path segments named in the path template. */
  params: Record<string, string>;
  query: URLSearchParams;
};

/** One REST operation: the router serves it and the OpenAPI document describes it from the same object. */
export type RestRoute = {
  method: 'GET' | 'POST';
  /** OpenAPI path template, e.g. `/api/conversations/{phoneNumber}/messages`. */
  path: string;
  operationId: string;
  summary: string;
  description: string;
  pathParams?: Record<string, { description: string }>;
  query?: Record<string, { type: 'boolean' | 'string' | 'integer'; description: string; minimum?: number }>;
  headers?: Record<string, { description: string; maxLength?: number }>;
  /** Component schema names are given bare (`MessagePage`) and expanded by the OpenAPI builder. */
  requestBody?: { $ref: string };
  response: { description: string; schema: SchemaRef };
  /** Answers other than 200 and the error shape, by status (a reply in doubt: 504 with the reply). */
  otherResponses?: Record<string, { description: string; schema: SchemaRef }>;
  /** Every error code the route answers besides INTERNAL_ERROR; statuses come from the error catalog. */
  errors: readonly ErrorCode[];
  handle(ctx: RouteContext): Promise<{ status: number; body: unknown }>;
};
