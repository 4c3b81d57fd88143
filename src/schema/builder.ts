import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import { defaultFieldResolver, type GraphQLFieldResolver } from 'graphql';
import type { RequestContext } from '../context.js';
import { badUserInput, toGraphQLError } from '../errors.js';
import { isoString } from './date-time.js';
import { parseGlobalId } from './global-ids.js';

// The builder and its plugins only; types live in ./types/<domain>.ts.

function decodeGlobalID(globalID: string): { typename: string; id: string } {
  const parsed = parseGlobalId(globalID);
  if (!parsed) throw toGraphQLError(badUserInput(`Invalid global ID: ${JSON.stringify(String(globalID).slice(0, 100))}`));
  return parsed;
}

/**
 * Leaner resolvers for graphql-jit, which builds a resolve-info object and a response path for every
 * call of a field that has a resolver (a field without one is read inline):
 * - Node `id` fields are resolved synchronously. The relay plugin's `id` resolver is `async` (a promise
 *   and a microtask per node: 7% of a page of messages) although every node id here is a plain column.
 *   This answers the same global id (base64 of `Type:id`, as the relay plugin encodes it) without the
 *   promise; an id resolver that does return a promise still goes through the plugin's own resolver.
 * - The relay plugin's connection and edge fields (`edges`, `node`, `pageInfo`) are `(parent) =>
 *   parent.<field>`, what graphql's default resolver does: they get no resolver.
 */
class LeanResolversPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override wrapResolve(resolver: GraphQLFieldResolver<unknown, Types['Context'], object>, fieldConfig: PothosOutputFieldConfig<Types>) {
    if (fieldConfig.kind !== 'Object') return resolver;
    if (String(resolver).replace(/\s/g, '') === `(parent)=>parent.${fieldConfig.name}`) return defaultFieldResolver;
    if (fieldConfig.name !== (this.builder.options.relay?.idFieldName ?? 'id')) return resolver;
    const typeConfig = this.buildCache.getTypeConfig(fieldConfig.parentType);
    const options = typeConfig.pothosOptions as { id?: { resolve?: unknown } };
    const isNode = typeConfig.kind === 'Object' && typeConfig.interfaces.some((ref) => this.buildCache.getTypeConfig(ref).name === 'Node');
    const resolveId = options.id?.resolve;
    if (!isNode || typeof resolveId !== 'function' || this.builder.options.relay?.encodeGlobalID) return resolver;
    const prefix = `${typeConfig.name}:`;
    return (parent: unknown, args: object, context: Types['Context'], info: Parameters<typeof resolver>[3]) => {
      const id: unknown = resolveId(parent, args, context, info);
      if (typeof (id as PromiseLike<unknown> | null)?.then === 'function') return resolver(parent, args, context, info);
      return Buffer.from(prefix + String(id)).toString('base64');
    };
  }
}

declare global {
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      leanResolvers: LeanResolversPlugin<Types>;
    }
  }
}

SchemaBuilder.registerPlugin('leanResolvers', LeanResolversPlugin);

export const builder = new SchemaBuilder<{
  Context: RequestContext;
  Scalars: { DateTime: { Input: Date; Output: Date }; JSONObject: { Input: Record<string, unknown>; Output: Record<string, unknown> } };
  DefaultFieldNullability: false;
}>({
  plugins: [ErrorsPlugin, RelayPlugin, 'leanResolvers'],
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
  serialize: (value) => isoString(value instanceof Date ? value : new Date(value as string)),
  parseValue: (value) => {
    const date = typeof value === 'string' ? new Date(value) : null;
    if (!date || Number.isNaN(date.getTime())) throw badUserInput('DateTime must be an ISO 8601 string.');
    return date;
  },
});

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

builder.scalarType('JSONObject', {
  description: 'A JSON object.',
  serialize: (value) => value,
  parseValue: (value) => {
    if (!isPlainObject(value)) throw badUserInput('JSONObject must be a JSON object.');
    return value;
  },
});
