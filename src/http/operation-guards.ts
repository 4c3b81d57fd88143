import {
  getOperationAST,
  GraphQLError,
  isListType,
  isNonNullType,
  isObjectType,
  Kind,
  visit,
  type DocumentNode,
  type GraphQLOutputType,
  type GraphQLSchema,
  type ValueNode,
} from 'graphql';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';
import type { Plugin } from 'graphql-yoga';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../services/pages.js';
import { containsNul } from './body.js';

// The per-operation checks that depend on the request's variables, in one list that both GraphQL paths
// run: Yoga through useOperationGuards (below), the fast path before it executes a document. Checks that
// depend only on the document (depth, aliases, tokens, introspection, NUL literals) ran when Yoga first
// validated it, which is the only way a document reaches the fast path; auth runs in createRequestContext
// and the HTTP rate limit in app.ts, before either path (graphql-plugins.ts declares each plugin's part).

export type OperationArgs = {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null;
  variableValues?: Record<string, unknown> | null;
};

/** A check before any resolver runs: the error to answer with, or null to go on. */
export type OperationGuard = { name: string; check(args: OperationArgs): GraphQLError | null };

/** Cost (page-weighted, with the request's variables) and NUL in variables, in the order they run. */
export function operationGuards(maxCost: number): OperationGuard[] {
  return [costGuard(maxCost), nulVariablesGuard()];
}

/** The first guard's refusal, or null when every guard lets the operation run. */
export function firstRefusal(guards: readonly OperationGuard[], args: OperationArgs): GraphQLError | null {
  for (const guard of guards) {
    const error = guard.check(args);
    if (error) return error;
  }
  return null;
}

/** Runs the guards on Yoga's path, for queries, mutations and subscriptions alike. */
export function useOperationGuards(guards: readonly OperationGuard[]): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = firstRefusal(guards, args as OperationArgs);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = firstRefusal(guards, args as OperationArgs);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

/** A refusal for a document over one of the limits: cost here, depth, aliases, directives, tokens in protections.ts. */
export function tooComplex(message: string, details: Record<string, unknown>): GraphQLError {
  // spec: false keeps the 400 even for `Accept: application/json`, where validation errors are otherwise 200.
  return new GraphQLError(message, { extensions: { code: 'QUERY_TOO_COMPLEX', ...details, http: { status: 400, spec: false } } });
}

/** Items assumed for a plain list field (phone numbers, consent events, links). */
const LIST_GUESS = 10;

const unwrap = (type: GraphQLOutputType) => (isNonNullType(type) ? type.ofType : type);

/**
 * Cost: every field costs 1, and what is under a list costs once per item. A connection costs its
 * selection times its page size (`first`/`last`, default 50, at most 200); `edges` is already counted by
 * its connection; other lists count 10 items. So the README's inbox (20 conversations, 5 messages each)
 * costs about 1,300; with 200 conversations, about 12,700; 200 conversations x 200 messages, 120,000.
 */
export const pageWeightedCost: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  if (typeof args.first === 'number' || typeof args.last === 'number' || field.args.some((arg) => arg.name === 'first')) {
    const requested = typeof args.first === 'number' ? args.first : typeof args.last === 'number' ? args.last : DEFAULT_PAGE_SIZE;
    const size = Math.min(Math.max(Math.trunc(requested), 0), MAX_PAGE_SIZE);
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

export const NUL_MESSAGE = 'Strings must not contain NUL (\\u0000) characters.';
const nulError = () => new GraphQLError(NUL_MESSAGE, { extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } } });

/**
 * NUL characters in variables: PostgreSQL refuses them (a 500) and embedded PGlite truncates at them (a
 * silently different message). Literals are refused at validation (protections.ts useRejectNulLiterals).
 */
export function nulVariablesGuard(): OperationGuard {
  return { name: 'nul-variables', check: (args) => (containsNul(args.variableValues) ? nulError() : null) };
}

type CostEntry = {
  /** Variables the cost depends on (page sizes, @include/@skip); costs are cached by their values. */
  costVariables: string[];
  costs: Map<string, number>;
  limit: number;
};

const MAX_COSTS_PER_OPERATION = 100;

/**
 * Refuses an operation whose cost (with its variables) is over `maxCost`. The cost of a document depends
 * only on the variables under `first`/`last` and directives, so it is computed once per document,
 * operation and values of those variables, on either path.
 */
export function costGuard(maxCost: number): OperationGuard {
  const entries = new WeakMap<DocumentNode, Map<string, CostEntry>>();
  const entryOf = (args: OperationArgs): CostEntry => {
    let byOperation = entries.get(args.document);
    if (!byOperation) entries.set(args.document, (byOperation = new Map()));
    const operationKey = args.operationName ?? '';
    let entry = byOperation.get(operationKey);
    if (!entry) {
      const limit = selectsOnlyIntrospection(args.document, args.operationName) ? Math.max(maxCost, INTROSPECTION_MAX_COST) : maxCost;
      entry = { costVariables: costVariablesOf(args.document), costs: new Map(), limit };
      byOperation.set(operationKey, entry);
    }
    return entry;
  };
  return {
    name: 'cost',
    check(args) {
      const entry = entryOf(args);
      const variables = args.variableValues ?? {};
      // Omitted and null differ (an omitted variable takes its default).
      const key =
        entry.costVariables.length === 0 ? '' : JSON.stringify(entry.costVariables.map((name) => (name in variables ? [variables[name]] : [])));
      let cost = entry.costs.get(key);
      if (cost === undefined) {
        try {
          cost = getComplexity({
            schema: args.schema,
            query: args.document,
            variables,
            operationName: args.operationName ?? undefined,
            estimators: [pageWeightedCost],
          });
        } catch {
          // Bad variables and the like: execution reports them with their own error. Not cached: the
          // failure may come from a variable the cost does not read, so the next request is priced anew.
          return null;
        }
        if (entry.costs.size >= MAX_COSTS_PER_OPERATION) entry.costs.clear();
        entry.costs.set(key, cost);
      }
      if (cost <= entry.limit) return null;
      return tooComplex(
        `Query is too expensive: estimated cost ${cost} exceeds the limit of ${entry.limit}. Ask for smaller pages or fewer fields.`,
        { limit: 'cost', cost, maxCost: entry.limit },
      );
    },
  };
}

function selectsOnlyIntrospection(document: DocumentNode, operationName: string | null | undefined): boolean {
  const operation = getOperationAST(document, operationName ?? undefined);
  return (
    operation?.operation === 'query' &&
    operation.selectionSet.selections.every((selection) => selection.kind === Kind.FIELD && selection.name.value.startsWith('__'))
  );
}

/** Variables under `first`/`last` arguments and directives: the only ones the page-weighted cost reads. */
function costVariablesOf(document: DocumentNode): string[] {
  const names = new Set<string>();
  const collect = (value: ValueNode) =>
    visit(value, {
      Variable(node) {
        names.add(node.name.value);
      },
    });
  visit(document, {
    Field(node) {
      for (const argument of node.arguments ?? [])
        if (argument.name.value === 'first' || argument.name.value === 'last') collect(argument.value);
    },
    Directive(node) {
      for (const argument of node.arguments ?? []) collect(argument.value);
    },
    VariableDefinition() {
      return false; // defaults are constants
    },
  });
  return [...names];
}
