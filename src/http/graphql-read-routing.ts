import { getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { primaryContext, readingContext, recordWrite, retryOnPrimary, type RequestContext } from '../context.js';

// Yoga's half of read routing (DATABASE_READ_URL; the fast path does the same in graphql-fast-path.ts). Yoga
// builds the context before it runs the document, so the context starts on the primary and a query is
// switched to the replica here when it may read there; a query the replica failed runs again on the
// primary. A mutation announces its caller's write before its answer goes out. Subscriptions stay on the
// primary, their catch-up reads included: they must not miss what was stored just before they started.

export function useReadRouting(): Plugin<RequestContext> {
  return {
    onExecute({ args, executeFn, extendContext }) {
      const context = args.contextValue as RequestContext;
      const operation = getOperationAST(args.document, args.operationName)?.operation;
      if (operation === 'mutation') return { onExecuteDone: () => recordWrite(context.deps, context.caller) };
      if (operation !== 'query') return undefined;
      const primary = context.deps;
      const reading = readingContext(context);
      if (reading === context) return undefined;
      extendContext({ deps: reading.deps, loaders: reading.loaders });
      return {
        async onExecuteDone({ result, setResult }) {
          if (Symbol.asyncIterator in result || !retryOnPrimary(context, result.errors)) return;
          const { deps, loaders } = primaryContext(context, primary);
          // The context object Envelop executes with: the retry and every resolver of it read the primary.
          Object.assign(context, { deps, loaders });
          setResult(await executeFn({ ...args, contextValue: context }));
        },
      };
    },
  };
}
