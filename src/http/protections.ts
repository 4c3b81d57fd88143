import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type { GraphQLArmorRejectCallback } from '@escape.tech/graphql-armor-types';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type StringValueNode, type ValidationContext } from 'graphql';
import { handleStreamOrSingleExecutionResult, type Plugin, type YogaServerOptions } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { UNAVAILABLE_RETRY_AFTER_SECONDS } from '../db/failures.js';
import { corsPolicy } from './cors.js';
import type { DeclaredPlugin } from './graphql-plugins.js';
import { NUL_MESSAGE, tooComplex, useOperationGuards, type OperationGuard } from './operation-guards.js';
import { failureAlreadyLogged, markFailureLogged } from './request-id.js';
import { useRateLimit, type RateLimiter } from './rate-limit.js';

// What stands between the internet and the resolvers, as Yoga options and Envelop plugins:
// body size, batching, CORS, depth/alias/directive/token limits (graphql-armor), the operation guards
// (operation-guards.ts: a cost limit weighted by page sizes, NUL in variables), introspection on or off,
// per-token rate limits, and one log line per failed operation.

const MAX_ALIASES = 15;
const MAX_DIRECTIVES = 20;
/** Lexical tokens in one document: the inbox query is about 100, a client's whole fragment set a few hundred. */
const MAX_TOKENS = 3_000;

/** Armor reports through the validation context (a regular 400 validation error), or throws from the parser. */
const reject =
  (limit: string): GraphQLArmorRejectCallback =>
  (context, error) => {
    const tagged = tooComplex(error.message.replace(/^Syntax Error: /, ''), { limit });
    if (context) context.reportError(tagged);
    else throw tagged;
  };

/** Introspection off: `__schema` and `__type` are validation errors (`__typename` still works). */
export function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

/** NUL in string literals, refused at validation (variables: operation-guards.ts nulVariablesGuard). */
export function useRejectNulLiterals(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule((context: ValidationContext) => ({
        StringValue(node: StringValueNode) {
          if (node.value.includes('\u0000')) {
            context.reportError(
              new GraphQLError(NUL_MESSAGE, { nodes: [node], extensions: { code: 'BAD_USER_INPUT' } }),
            );
          }
        },
      }));
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

type HardenedOptions = Pick<YogaServerOptions<object, object>, 'batching' | 'maxRequestBodySize' | 'cors'>;

/** Yoga options for createYoga (spread them in), and the protecting plugins, each declared for the fast path. */
export function hardenedYogaOptions(
  config: Config,
  logger: Logger,
  limiter: RateLimiter,
  guards: readonly OperationGuard[],
): { options: HardenedOptions; plugins: DeclaredPlugin[] } {
  return {
    options: {
      maxRequestBodySize: config.maxRequestBodyBytes,
      batching: config.graphqlBatchLimit > 0 ? { limit: config.graphqlBatchLimit } : false,
      cors: corsPolicy(config),
    },
    plugins: [
      { name: 'rate-limit', plugin: useRateLimit(limiter), fastPath: 'before-both' },
      {
        name: 'armor',
        plugin: EnvelopArmorPlugin({
          maxDepth: { n: config.graphqlMaxDepth, ignoreIntrospection: true, propagateOnRejection: false, onReject: [reject('depth')] },
          maxAliases: { n: MAX_ALIASES, propagateOnRejection: false, onReject: [reject('aliases')] },
          maxDirectives: { n: MAX_DIRECTIVES, propagateOnRejection: false, onReject: [reject('directives')] },
          maxTokens: { n: MAX_TOKENS, propagateOnRejection: false, onReject: [reject('tokens')] },
          // Our page-weighted cost (operation-guards.ts) replaces armor's flat one.
          costLimit: { enabled: false },
          // "Did you mean ...?" would reveal the schema that disabled introspection hides.
          blockFieldSuggestion: { enabled: !config.introspection },
        }),
        fastPath: 'document',
      },
      { name: 'operation-guards', plugin: useOperationGuards(guards), fastPath: 'runs-guards' },
      { name: 'reject-nul-literals', plugin: useRejectNulLiterals(), fastPath: 'document' },
      { name: 'variable-error-codes', plugin: useVariableErrorCodes(), fastPath: 'errors-only' },
      { name: 'json-error-bodies', plugin: useJsonErrorBodies(), fastPath: 'errors-only' },
      ...(config.introspection ? [] : [{ name: 'no-introspection', plugin: useNoIntrospection(), fastPath: 'document' } as const]),
      { name: 'failure-log', plugin: useFailureLog(logger), fastPath: 'errors-only' },
    ],
  };
}
