import type { IncomingMessage } from 'node:http';

// Where a caller's credentials come from, the same for every transport: the `authorization` and
// `x-organization-id` headers over HTTP (GraphQL, REST, SSE), and the same names in graphql-ws
// `connection_init` params (`Authorization` and `organizationId` are accepted too, as clients send them).

/** What a caller presents: a bearer token, and the organization it acts in. */
export type Credentials = { authorization?: string | null; organizationId?: string | null };

const headerOf = (value: string | string[] | undefined): string | null =>
  value === undefined ? null : Array.isArray(value) ? value.join(',') : value;

/** Credentials from a Node request's headers. */
export function credentialsOfRequest(req: IncomingMessage): Credentials {
  return { authorization: headerOf(req.headers.authorization), organizationId: headerOf(req.headers['x-organization-id']) };
}

/** Credentials from a Fetch API request's headers (Yoga's). */
export function credentialsOfFetchRequest(request: Request): Credentials {
  return { authorization: request.headers.get('authorization'), organizationId: request.headers.get('x-organization-id') };
}

/** Credentials from graphql-ws `connection_init` params. */
export function credentialsOfConnectionParams(params: Record<string, unknown> | null | undefined): Credentials {
  const pick = (...keys: string[]) => keys.map((key) => params?.[key]).find((value): value is string => typeof value === 'string') ?? null;
  return { authorization: pick('authorization', 'Authorization'), organizationId: pick('organizationId', 'x-organization-id') };
}
