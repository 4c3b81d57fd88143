import type { IncomingMessage } from 'node:http';
import type { ExecutionResult } from 'graphql';
import type { CompiledQuery } from 'graphql-jit';

// Mutations on the fast path (graphql-fast-path.ts). A query whose answer is not a plain success is run
// again by Yoga to report it; a mutation must never run twice. So a mutation runs here exactly once, and
// when its answer is anything but a plain success (errors, extensions, a throw) the request goes to Yoga
// together with that outcome: Yoga parses, validates and builds the context as always, and its execute
// step hands back the outcome instead of running the document (the plugin below, the last one to set the
// execute function). Masking (graphql.ts maskError), status codes, headers and serialization are then
// Yoga's own, for exactly the result that was produced once.

type Outcome = { result: ExecutionResult } | { thrown: unknown };

/** Keyed by the request Yoga is about to answer; taken (and forgotten) by its execute step. */
const outcomes = new WeakMap<IncomingMessage, Outcome>();

/**
 * Runs the compiled mutation once; the JSON answer of a plain success, else null after leaving the outcome
 * for Yoga's replay of this request.
 */
export async function runMutationOnce(
  req: IncomingMessage,
  compiled: CompiledQuery,
  context: unknown,
  variables: Record<string, unknown>,
): Promise<string | null> {
  let result: ExecutionResult;
  try {
    result = (await compiled.query(undefined, context, variables)) as ExecutionResult;
  } catch (thrown) {
    outcomes.set(req, { thrown });
    return null;
  }
  if (!result.errors?.length && !result.extensions) {
    try {
      return compiled.stringify(result);
    } catch {
      // Yoga's serializer reports it
    }
  }
  outcomes.set(req, { result });
  return null;
}

/**
 * For Yoga's onExecute: an execute function that returns (or throws) the outcome already produced for
 * this request, or undefined when the request was not executed on the fast path.
 */
export function executedAlready(contextValue: unknown): (() => Promise<ExecutionResult>) | undefined {
  const req = (contextValue as { req?: IncomingMessage } | undefined)?.req;
  const outcome = req ? outcomes.get(req) : undefined;
  if (!outcome || !req) return undefined;
  outcomes.delete(req);
  return 'thrown' in outcome ? () => Promise.reject(outcome.thrown) : () => Promise.resolve(outcome.result);
}
