import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type { GraphQLArmorRejectCallback } from '@escape.tech/graphql-armor-types';
import {
  GraphQLError,
  getNamedType,
  getOperationAST,
  Kind,
  isListType,
  isNonNullType,
  isObjectType,
  NoSchemaIntrospectionCustomRule,
  type DocumentNode,
  type GraphQLOutputType,
  type StringValueNode,
  type ValidationContext,
} from 'graphql';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';
import { handleStreamOrSingleExecutionResult, type Plugin, type YogaServerOptions } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { UNAVAILABLE_RETRY_AFTER_SECONDS } from '../db/failures.js';
import { containsNul } from './body.js';
import { corsPolicy } from './cors.js';
import { failureAlreadyLogged, markFailureLogged } from './request-id.js';
import { useRateLimit, type RateLimiter } from './rate-limit.js';

// What stands between the internet and the resolvers, as Yoga options and Envelop plugins:
// body size, batching, CORS, depth/alias/directive/token limits (graphql-armor), a cost limit weighted
// by page sizes, introspection on or off, per-token rate limits, and one log line per failed operation.

/** Page size assumed for a connection without `first`/`last`: the documented default. */
const DEFAULT_PAGE = 50;
/** Largest page a connection serves; a larger argument is refused by the resolver with BAD_USER_INPUT. */
const MAX_PAGE = 200;
/** Items assumed for a plain list field (phone numbers, consent events, links). */
const LIST_GUESS = 10;
const MAX_ALIASES = 15;
const MAX_DIRECTIVES = 20;
/** Lexical tokens in one document: the inbox query is about 100, a client's whole fragment set a few hundred. */
const MAX_TOKENS = 3_000;

export function tooComplex(message: string, details: Record<string, unknown>): GraphQLError {
  // spec: false keeps the 400 even for `Accept: application/json`, where validation errors are otherwise 200.
  return new GraphQLError(message, { extensions: { code: 'QUERY_TOO_COMPLEX', ...details, http: { status: 400, spec: false } } });
}

/** Armor reports through the validation context (a regular 400 validation error), or throws from the parser. */
const reject =
  (limit: string): GraphQLArmorRejectCallback =>
  (context, error) => {
    const tagged = tooComplex(error.message.replace(/^Syntax Error: /, ''), { limit });
    if (context) context.reportError(tagged);
    else throw tagged;
  };

const unwrap = (type: GraphQLOutputType) => (isNonNullType(type) ? type.ofType : type);

/**
 * Cost: every field costs 1, and what is under a list costs once per item. A connection costs its
 * selection times its page size (`first`/`last`, default 50, at most 200); `edges` is already counted by
 * its connection; other lists count 10 items. So the README's inbox (20 conversations, 5 messages each)
 * costs about 1,300; with 200 conversations, about 12,700; 200 conversations x 200 messages, 120,000.
 */
export const pageWeightedCost: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  if (typeof args.first === 'number' || typeof args.last === 'number' || field.args.some((arg) => arg.name === 'first')) {
    const requested = typeof args.first === 'number' ? args.first : typeof args.last === 'number' ? args.last : DEFAULT_PAGE;
    const size = Math.min(Math.max(Math.trunc(requested), 0), MAX_PAGE);
    return 1 + size * childComplexity;
  }
  if (isListType(unwrap(field.type))) {
    const inConnection = isObjectType(type) && type.name.endsWith('Connection');
    return 1 + (inConnection || childComplexity === 0 ? 1 : LIST_GUESS) * childComplexity;
  }
  return 1 + childComplexity;
};

/**
 * The cost limit of an operation that selects only `__schema`/`__type` (where introspection is on at all).
 * Its lists are priced as any other, so the schema query GraphiQL and codegen tools send costs ~52,000
 * (types x fields x args) and never fit GRAPHQL_MAX_COST; but what it reads is the schema in memory, not
 * the database. Introspection nested on itself (types { fields { type { fields ... } } }) is graphql-js's
 * own validation error (MaxIntrospectionDepthRule); this bounds the rest, such as the schema query
 * repeated under aliases.
 */
export const INTROSPECTION_MAX_COST = 100_000;

function selectsOnlyIntrospection(document: DocumentNode, operationName: string | null | undefined): boolean {
  const operation = getOperationAST(document, operationName ?? undefined);
  return (
    operation?.operation === 'query' &&
    operation.selectionSet.selections.every((selection) => selection.kind === Kind.FIELD && selection.name.value.startsWith('__'))
  );
}

/** Refuses an operation whose cost (with its variables) is over `maxCost`, before any resolver runs. */
export function useCostLimit(maxCost: number): Plugin {
  const check = (args: { schema: never; document: DocumentNode; variableValues?: unknown; operationName?: string | null }) => {
    let cost: number;
    try {
      cost = getComplexity({
        schema: args.schema,
        query: args.document,
        variables: (args.variableValues ?? {}) as Record<string, unknown>,
        operationName: args.operationName ?? undefined,
        estimators: [pageWeightedCost],
      });
    } catch {
      return null; // bad variables and the like: execution reports them with their own error
    }
    const limit = selectsOnlyIntrospection(args.document, args.operationName) ? Math.max(maxCost, INTROSPECTION_MAX_COST) : maxCost;
    if (cost <= limit) return null;
    return tooComplex(`Query is too expensive: estimated cost ${cost} exceeds the limit of ${limit}. Ask for smaller pages or fewer fields.`, {
      limit: 'cost',
      cost,
      maxCost: limit,
    });
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = check(args as never);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = check(args as never);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

/** Introspection off: `__schema` and `__type` are validation errors (`__typename` still works). */
export function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

const nulError = () =>
  new GraphQLError('Strings must not contain NUL (\\u0000) characters.', { extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } } });

/**
 * NUL characters in text: PostgreSQL refuses them (a 500) and embedded PGlite truncates at them (a
 * silently different message). Refused up front, in literals and in variables.
 */
export function useRejectNul(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule((context: ValidationContext) => ({
        StringValue(node: StringValueNode) {
          if (node.value.includes('\u0000')) context.reportError(new GraphQLError(nulError().message, { nodes: [node], extensions: { code: 'BAD_USER_INPUT' } }));
        },
      }));
    },
    onExecute({ args, setResultAndStopExecution }) {
      if (containsNul(args.variableValues)) setResultAndStopExecution({ errors: [nulError()] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      if (containsNul(args.variableValues)) setResultAndStopExecution({ errors: [nulError()] });
    },
  };
}

/** graphql-js reports variables it cannot coerce without a code: they are the caller's input, BAD_USER_INPUT. */
export function useVariableErrorCodes(): Plugin {
  const withCode = (errors: readonly GraphQLError[]) =>
    errors.map((error) =>
      error.extensions?.code || !/^Variable "\$/.test(error.message)
        ? error
        : new GraphQLError(error.message, {
            nodes: error.nodes,
            source: error.source,
            positions: error.positions,
            path: error.path,
            originalError: error.originalError,
            extensions: { ...error.extensions, code: 'BAD_USER_INPUT', http: { status: 400, spec: true } },
          }),
    );
  const onDone = (payload: Parameters<typeof handleStreamOrSingleExecutionResult>[0]) =>
    handleStreamOrSingleExecutionResult(payload, ({ result, setResult }) => {
      if (result.errors?.length) setResult({ ...result, errors: withCode(result.errors) });
    });
  return {
    onExecute: () => ({ onExecuteDone: onDone }),
    onSubscribe: () => ({ onSubscribeResult: onDone as never }),
  };
}

/** Error responses Yoga answers with an empty body (415 for an unsupported content type): JSON with a code. */
export function useJsonErrorBodies(): Plugin {
  const codes: Record<number, string> = { 404: 'NOT_FOUND', 405: 'METHOD_NOT_ALLOWED', 406: 'NOT_ACCEPTABLE', 415: 'UNSUPPORTED_MEDIA_TYPE' };
  return {
    onResponse({ response, setResponse, fetchAPI }) {
      if (response.status < 400 || response.headers.get('content-type')) return;
      const code = codes[response.status] ?? 'BAD_REQUEST';
      const message =
        response.status === 415 ? 'Send GraphQL as application/json (POST) or as query parameters (GET).' : `The request was refused (${code}).`;
      const headers = new fetchAPI.Headers(response.headers);
      headers.set('content-type', 'application/json; charset=utf-8');
      setResponse(new fetchAPI.Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), { status: response.status, headers }));
    },
  };
}

/** One log line per operation that answered with errors, unless the request already logged its failure. */
export function useFailureLog(logger: Logger): Plugin {
  return {
    onExecutionResult({ result }) {
      const results = Array.isArray(result) ? result : [result];
      const errors = results.flatMap((entry) => ('errors' in entry && entry.errors ? [...entry.errors] : []));
      if (errors.length === 0 || failureAlreadyLogged()) return;
      markFailureLogged();
      logger.info(
        { graphqlErrors: errors.slice(0, 5).map((error) => ({ message: error.message.slice(0, 200), code: error.extensions?.code, path: error.path })) },
        'GraphQL operation answered with errors',
      );
    },
  };
}

/** The HTTP status and Retry-After a GraphQL error carries when the database is away. */
export function databaseUnavailableError(located?: GraphQLError): GraphQLError {
  return new GraphQLError('The database is unavailable; try again shortly.', {
    nodes: located?.nodes,
    source: located?.source,
    positions: located?.positions,
    path: located?.path,
    extensions: {
      code: 'SERVICE_UNAVAILABLE',
      http: { status: 503, headers: { 'retry-after': String(UNAVAILABLE_RETRY_AFTER_SECONDS) } },
    },
  });
}

type HardenedOptions = Pick<YogaServerOptions<object, object>, 'plugins' | 'batching' | 'maxRequestBodySize' | 'cors'>;

/** Yoga options for createYoga: spread them in. */
export function hardenedYogaOptions(config: Config, logger: Logger, limiter: RateLimiter): HardenedOptions {
  return {
    maxRequestBodySize: config.maxRequestBodyBytes,
    batching: config.graphqlBatchLimit > 0 ? { limit: config.graphqlBatchLimit } : false,
    cors: corsPolicy(config),
    plugins: [
      useRateLimit(limiter),
      EnvelopArmorPlugin({
        maxDepth: { n: config.graphqlMaxDepth, ignoreIntrospection: true, propagateOnRejection: false, onReject: [reject('depth')] },
        maxAliases: { n: MAX_ALIASES, propagateOnRejection: false, onReject: [reject('aliases')] },
        maxDirectives: { n: MAX_DIRECTIVES, propagateOnRejection: false, onReject: [reject('directives')] },
        maxTokens: { n: MAX_TOKENS, propagateOnRejection: false, onReject: [reject('tokens')] },
        // Our page-weighted cost (below) replaces armor's flat one.
        costLimit: { enabled: false },
        // "Did you mean ...?" would reveal the schema that disabled introspection hides.
        blockFieldSuggestion: { enabled: !config.introspection },
      }),
      useCostLimit(config.graphqlMaxCost),
      useRejectNul(),
      useVariableErrorCodes(),
      useJsonErrorBodies(),
      ...(config.introspection ? [] : [useNoIntrospection()]),
      useFailureLog(logger),
    ],
  };
}
