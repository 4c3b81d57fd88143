import { Kind, type DocumentNode, type GraphQLSchema } from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { makeExecute, type Plugin } from 'graphql-yoga';

// One cache of operations compiled to JavaScript (graphql-jit), shared by Yoga's execution and the fast
// path: execution without the generic executor's per-field promise machinery (bench/RESULTS.md says what
// it buys). Compiling costs more than running a document once, so Yoga compiles a document only from its
// second use (Yoga's parse cache hands back the same DocumentNode for the same text, which is what is
// counted): a stream of one-off, or hostile ever-different, documents never pays for compilation.
// Entries are per document and operation name: a document with several operations runs the one asked for.
// Subscriptions stay on graphql-js: under graphql-jit they lost their arguments and setup errors
// (tests/subscriptions.test.ts).

type DocumentEntry = { uses: number; operations: Map<string, CompiledQuery | null> };

export type CompileCache = {
  /** The compiled operation, compiled now if need be; null when graphql-jit cannot compile it. */
  compiled(document: DocumentNode, operationName: string | null | undefined): CompiledQuery | null;
  /** Counts a use; the compiled operation from the document's second use on, otherwise null. */
  compiledIfSeenBefore(document: DocumentNode, operationName: string | null | undefined): CompiledQuery | null;
};

export function createCompileCache(schema: GraphQLSchema): CompileCache {
  const documents = new WeakMap<DocumentNode, DocumentEntry>();
  const entryOf = (document: DocumentNode) => {
    let entry = documents.get(document);
    if (!entry) documents.set(document, (entry = { uses: 0, operations: new Map() }));
    return entry;
  };
  const compiledIn = (entry: DocumentEntry, document: DocumentNode, operationName: string | null | undefined) => {
    const key = operationName ?? '';
    let compiled = entry.operations.get(key);
    if (compiled === undefined) {
      try {
        const result = compileQuery(schema, document, operationName ?? undefined);
        compiled = isCompiledQuery(result) ? result : null;
      } catch {
        compiled = null;
      }
      entry.operations.set(key, compiled);
    }
    return compiled;
  };
  return {
    compiled: (document, operationName) => compiledIn(entryOf(document), document, operationName),
    compiledIfSeenBefore(document, operationName) {
      const entry = entryOf(document);
      entry.uses += 1;
      return entry.uses > 1 ? compiledIn(entry, document, operationName) : null;
    },
  };
}

const isSubscription = (document: DocumentNode) =>
  document.definitions.some((definition) => definition.kind === Kind.OPERATION_DEFINITION && definition.operation === 'subscription');

/** Yoga executes queries and mutations it has seen before from the cache; anything else with graphql-js. */
export function useCompiledExecution(cache: CompileCache): Plugin {
  return {
    onExecute({ args, setExecuteFn }) {
      if (isSubscription(args.document)) return;
      const compiled = cache.compiledIfSeenBefore(args.document, args.operationName);
      if (!compiled) return;
      setExecuteFn(makeExecute((execution) => compiled.query(execution.rootValue, execution.contextValue, execution.variableValues)));
    },
  };
}
