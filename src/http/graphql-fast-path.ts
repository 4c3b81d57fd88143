import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, type DocumentNode, type GraphQLSchema } from 'graphql';
import type { Plugin, YogaServerInstance } from 'graphql-yoga';
import { createRequestContext, primaryContext, recordWrite, retryOnPrimary, type RequestContext } from '../context.js';
import type { Deps } from '../deps.js';
import { readBody } from './body.js';
import { corsHeaders, type corsPolicy } from './cors.js';
import { credentialsOfRequest } from './credentials.js';
import type { CompileCache } from './graphql-compile.js';
import { observeOperation, type OperationInfo } from './graphql-observability.js';
import { firstRefusal, type OperationGuard } from './operation-guards.js';
// Mutations run once here; their errors are reported by Yoga without running them again.
import { executedAlready, runMutationOnce } from './graphql-fast-mutation.js';

// The lean path for what inbox clients send all day: a POST of a JSON query document Yoga has already
// accepted once. Yoga's Fetch-API adapter, its plugin chain and graphql-js's executor cost 3-4x the work
// of the query itself; here a document Yoga parsed, validated (depth, aliases, tokens, introspection, NUL
// literals: every document-level protection) and executed is run from the shared compile cache
// (graphql-compile.ts) and served straight from node:http. The per-request protections run here as well:
// the same operation guards as Yoga's (operation-guards.ts: cost with the request's variables, NUL in
// variables), auth in createRequestContext; the rate limit ran before, in app.ts. graphql-plugins.ts
// declares how each of Yoga's plugins is honoured here. Anything else, and
// any request whose answer would not be a plain success, goes to Yoga, which answers it exactly as it
// always has: a first-seen document, GET, batches, subscriptions, streams, every error (queries have
// no side effects, so running one again through Yoga to report its error is safe; a mutation is never run
// twice: graphql-fast-mutation.ts).

type Params = { query: string; operationName?: string | null; variables?: Record<string, unknown> | null };

type Entry = {
  document: DocumentNode;
  operationName: string | undefined;
  /** A mutation runs once, here: see graphql-fast-mutation.ts. */
  mutation: boolean;
  /** Its type and name, for metrics and spans. */
  info: OperationInfo;
};

/** Documents kept; beyond it the oldest go (a stream of distinct documents only ever costs Yoga's path). */
const MAX_DOCUMENTS = 1_000;
/** Longer documents stay with Yoga: the cache holds at most MAX_DOCUMENTS x this much text. */
const MAX_DOCUMENT_LENGTH = 64 * 1024;
const JSON_CONTENT_TYPE = /^application\/json\s*(;\s*charset=utf-8\s*)?$/i;
const INTROSPECTION = /\b__(schema|type)\b/;
const PARAM_KEYS = new Set(['query', 'operationName', 'variables']);

export type GraphqlFastPath = {
  /** Add to Yoga's plugins: it tells the fast path which documents Yoga accepted. */
  plugin: Plugin;
  /** Requests answered here (not by Yoga) so far: tests check the fast path is taken. */
  stats: { served: number };
  /** Serves one HTTP request to /graphql, fast or through Yoga. */
  serve(yoga: YogaServerInstance<any, any>, req: IncomingMessage, res: ServerResponse): Promise<void>;
};

export function createGraphqlFastPath(
  deps: Deps,
  schema: GraphQLSchema,
  options: { cors: ReturnType<typeof corsPolicy>; guards: readonly OperationGuard[]; compileCache: CompileCache; maxBodyBytes: number },
): GraphqlFastPath {
  const documents = new Map<string, Entry>();
  const keyOf = (query: string, operationName: string | null | undefined) => `${operationName ?? ''}\n${query}`;

  const plugin: Plugin = {
    onExecute({ args, setExecuteFn }) {
      // A mutation this request ran on the fast path already: Yoga reports its outcome, never runs it again.
      const executed = executedAlready(args.contextValue);
      if (executed) {
        setExecuteFn(executed);
        return;
      }
      const params = (args.contextValue as { params?: Params } | undefined)?.params;
      if (typeof params?.query !== 'string' || params.query.length > MAX_DOCUMENT_LENGTH || INTROSPECTION.test(params.query)) return;
      const key = keyOf(params.query, args.operationName);
      const operation = getOperationAST(args.document, args.operationName)?.operation;
      if (documents.has(key) || (operation !== 'query' && operation !== 'mutation')) return;
      if (documents.size >= MAX_DOCUMENTS) documents.delete(documents.keys().next().value!);
      documents.set(key, {
        document: args.document,
        operationName: args.operationName ?? undefined,
        mutation: operation === 'mutation',
        info: { type: operation, name: args.operationName ?? getOperationAST(args.document, args.operationName)?.name?.value },
      });
    },
  };

  /** The successful answer, or null when Yoga should answer (anything that is not a plain success). */
  async function answer(req: IncomingMessage, body: string): Promise<string | null> {
    let params: unknown;
    try {
      params = JSON.parse(body);
    } catch {
      return null;
    }
    if (!isPlainObject(params) || typeof params.query !== 'string') return null;
    for (const key in params) if (!PARAM_KEYS.has(key)) return null;
    const { operationName, variables } = params;
    if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') return null;
    if (variables !== undefined && variables !== null && !isPlainObject(variables)) return null;
    const entry = documents.get(keyOf(params.query, operationName as string | null | undefined));
    if (!entry) return null;
    const values = (variables ?? {}) as Record<string, unknown>;
    // A refusal is Yoga's to answer: its own run of the same guards gives the error.
    const guarded = { schema, document: entry.document, operationName: entry.operationName, variableValues: values };
    if (firstRefusal(options.guards, guarded)) return null;
    const compiled = options.compileCache.compiled(entry.document, entry.operationName);
    if (!compiled) return null;
    let context: RequestContext;
    try {
      context = await createRequestContext(deps, credentialsOfRequest(req), entry.mutation ? 'write' : 'read');
    } catch {
      return null;
    }
    const run = entry.mutation
      ? async () => {
          const json = await runMutationOnce(req, compiled, context, values);
          // Read-your-writes: announced before the answer goes out (a replay through Yoga announces again).
          if (deps.reads) await recordWrite(deps, context.caller);
          return json;
        }
      : async () => {
          let result = await compiled.query(undefined, context, values);
          // The read replica failed this read: the primary answers it (and the replica is marked down if away).
          if (result.errors?.length && retryOnPrimary(context, result.errors)) result = await compiled.query(undefined, primaryContext(context, deps), values);
          return result.errors?.length || result.extensions ? null : compiled.stringify(result);
        };
    return observeOperation(deps.metrics, deps.tracing, entry.info, run, (json) => json !== null);
  }

  /** Yoga's answer to a request whose body was read already. */
  async function replay(yoga: YogaServerInstance<any, any>, req: IncomingMessage, res: ServerResponse, body: Buffer) {
    const headers = new yoga.fetchAPI.Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const request = new yoga.fetchAPI.Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/graphql'}`, {
      method: 'POST',
      headers,
      body: body as unknown as BodyInit,
    });
    const response = await yoga.fetch(request, { req, res });
    const payload = Buffer.from(await response.arrayBuffer());
    if (res.destroyed) return;
    response.headers.forEach((value, name) => res.setHeader(name, value));
    res.writeHead(response.status, response.statusText);
    res.end(payload);
  }

  const mediaTypes = new Map<string, string | null>();
  const stats = { served: 0 };

  return {
    plugin,
    stats,
    async serve(yoga, req, res) {
      const length = Number(req.headers['content-length']);
      const mediaType = req.method === 'POST' && req.url === '/graphql' ? responseMediaType(mediaTypes, req.headers.accept) : null;
      if (
        !mediaType ||
        !JSON_CONTENT_TYPE.test(req.headers['content-type'] ?? '') ||
        req.headers['content-encoding'] !== undefined ||
        !(length > 0 && length <= options.maxBodyBytes)
      ) {
        await yoga(req, res);
        return;
      }
      const body = await readBody(req, options.maxBodyBytes).catch(() => null);
      if (!body) return; // the client went away mid-body
      // Anything unexpected is Yoga's to answer (and log) as well.
      const json = await answer(req, body.toString('utf8')).catch(() => null);
      if (json === null) {
        await replay(yoga, req, res, body);
        return;
      }
      const headers: Record<string, string> = {
        'content-type': `${mediaType}; charset=utf-8`,
        'content-length': String(Buffer.byteLength(json)),
        ...(req.headers.origin === undefined ? undefined : corsHeaders(options.cors, req)),
      };
      stats.served += 1;
      res.writeHead(200, headers);
      res.end(json);
    },
  };
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

// Yoga's choice of response format (plugins/result-processor): the last (processor, media type) pair
// matching the Accept header wins, processors in the order event stream, multipart, regular. Only the
// regular JSON answers are served here; the choice is cached per Accept header value.
const PROCESSORS: [string, string[]][] = [
  ['sse', ['text/event-stream']],
  ['multipart', ['multipart/mixed']],
  ['regular', ['application/graphql-response+json', 'application/json']],
];

function responseMediaType(cache: Map<string, string | null>, accept: string | undefined): string | null {
  const key = accept ?? '';
  let chosen = cache.get(key);
  if (chosen !== undefined) return chosen;
  const asked: string[] = [];
  for (const entry of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [mediaType, ...parameters] = entry.split(';');
    const charset = parameters.find((parameter) => parameter.includes('charset=')) ?? 'charset=utf-8';
    if (mediaType !== undefined && charset === 'charset=utf-8') asked.push(mediaType);
  }
  asked.reverse();
  let processor: string | null = null;
  chosen = null;
  for (const [name, types] of PROCESSORS) {
    for (const requested of asked) {
      const [requestedType, requestedSubtype] = requested.split('/');
      for (const type of types) {
        const [mainType, subtype] = type.split('/');
        if ((requestedType === '*' || requestedType === mainType) && (requestedSubtype === '*' || requestedSubtype === subtype)) {
          processor = name;
          chosen = type;
        }
      }
    }
  }
  if (processor !== 'regular') chosen = null;
  if (cache.size < 100) cache.set(key, chosen);
  return chosen;
}
