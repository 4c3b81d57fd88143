import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import type { RequestContext } from '../context.js';
import { badUserInput, toGraphQLError } from '../errors.js';

// The builder and its plugins only; types live in ./types/<domain>.ts.

function decodeGlobalID(globalID: string): { typename: string; id: string } {
  const invalid = () => toGraphQLError(badUserInput(`Invalid global ID: ${JSON.stringify(String(globalID).slice(0, 100))}`));
  if (typeof globalID !== 'string' || globalID.length > 200) throw invalid();
  const decoded = Buffer.from(globalID, 'base64').toString('utf8');
  const separator = decoded.indexOf(':');
  if (separator <= 0) throw invalid();
  return { typename: decoded.slice(0, separator), id: decoded.slice(separator + 1) };
}

export const builder = new SchemaBuilder<{
  Context: RequestContext;
  Scalars: { DateTime: { Input: Date; Output: Date } };
  DefaultFieldNullability: false;
}>({
  plugins: [ErrorsPlugin, RelayPlugin],
  defaultFieldNullability: false,
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    decodeGlobalID,
    nodesQueryOptions: false,
  },
  errors: { defaultTypes: [] },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});

builder.scalarType('DateTime', {
  description: 'A point in time, serialized as a UTC ISO 8601 string with milliseconds (2025-04-23T18:45:00.000Z).',
  serialize: (value) => (value instanceof Date ? value : new Date(value as string)).toISOString(),
  parseValue: (value) => {
    const date = typeof value === 'string' ? new Date(value) : null;
    if (!date || Number.isNaN(date.getTime())) throw badUserInput('DateTime must be an ISO 8601 string.');
    return date;
  },
});
