import type { GraphQLObjectType } from 'graphql';
import type { GatewayEvents } from './index.js';
import type { FeedKey } from './keyset-feed.js';

// The contract between a subscription field whose subscribers may share one execution and the transport
// that runs it once for all of them (src/http/graphql-ws.ts). The field declares it (a GraphQL field
// extension, set in schema/types/subscriptions.ts); the transport reads the declaration from the schema
// and passes its hints to the field's stream through the request context. Neither names the other.

/** The field extension that declares a subscription shareable. */
export const SHARED_EXECUTION = 'sharedExecution';

export type SharedExecution = {
  /** The topic whose subscriber count counts every member of a group (the group's own stream is uncounted). */
  topic: keyof GatewayEvents;
  /**
   * An argument that, when given a value, makes a subscriber replay from its own position: it runs alone.
   * Its stream must report row keys (StreamHints.onStart, onRow) so a slow member can leave its group.
   */
  resumeArgument?: string;
};

/** What a transport that executes once for many subscribers tells a shared field's stream (RequestContext.streamHints). */
export type StreamHints = {
  /** Check the arguments and run the operation's plugins (rate limit, cost, ...), but open no stream. */
  admissionOnly?: boolean;
  /** Start right after this row (null: at the first): a member of a shared group continuing on its own (already admitted). */
  resumeAfter?: FeedKey | null;
  /** Told where the stream starts (after this row; null: at the first). */
  onStart?: (after: FeedKey | null) => void;
  /** Not a subscriber itself: a group's stream, whose members are counted instead. */
  uncounted?: boolean;
  /** Told the key of each row as it is delivered, so results can be matched to rows. */
  onRow?: (key: FeedKey) => void;
};

/** The declaration of a root subscription field, or null when its subscribers each run their own. */
export function sharedExecutionOf(subscriptionType: GraphQLObjectType | null | undefined, fieldName: string): SharedExecution | null {
  const declared = subscriptionType?.getFields()[fieldName]?.extensions?.[SHARED_EXECUTION];
  return (declared as SharedExecution | undefined) ?? null;
}
