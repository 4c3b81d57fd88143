import type { RequestContext } from '../../context.js';
import { createLoaders } from '../../loaders/index.js';
import { messageCursor } from '../../services/messages.js';
import { normalizePhone } from '../../services/phone.js';
import { SHARED_EXECUTION, type SharedExecution } from '../../pubsub/shared-execution.js';
import { conversationUpdatedStream, messageReceivedStream, messageStatusStream } from '../../services/realtime.js';
import { builder } from '../builder.js';
import { ConversationRef } from './refs.js';
import { MessageRef } from './message.js';

// Realtime: served over graphql-ws (WebSocket on /graphql) and SSE (Accept: text/event-stream).
// Topics are keyed by the caller's organization, so no other organization's event can reach a subscriber.

/**
 * A subscription keeps one context for its whole life; a fresh set of loaders per event keeps nested
 * fields (contact consent, unread counts) current instead of cached from an earlier event.
 */
export function deliver<T extends { id: string }>(row: T, ctx: RequestContext): T {
  ctx.loaders = createLoaders(ctx.deps.db, ctx.caller.organizationId);
  return row;
}

/** A stream with nothing in it: the operation was only being admitted. */
const nothing = (): AsyncIterableIterator<never> => ({
  next: async () => ({ value: undefined, done: true }),
  return: async () => ({ value: undefined, done: true }),
  [Symbol.asyncIterator]() {
    return this;
  },
});

builder.objectField(MessageRef, 'cursor', (t) =>
  t.string({
    description:
      "This message's cursor in its conversation's `messages` connection; pass the last one received to " +
      '`messageReceived(after:)` to resume without missing anything.',
    resolve: (message) => messageCursor(message),
  }),
);

const phoneArg = (phoneNumber: string | null | undefined) => (phoneNumber ? normalizePhone(phoneNumber) : null);

builder.subscriptionFields((t) => ({
  messageReceived: t.field({
    type: MessageRef,
    description:
      'Inbound messages of your organization as they arrive, optionally of one conversation. With `after` (a cursor from ' +
      '`Conversation.messages`, or the cursor of the last message received here) it first replays every inbound message ' +
      'newer than that cursor, oldest first, then continues live: nothing missed, nothing twice.',
    args: {
      phoneNumber: t.arg.string({ description: 'Only this conversation (any standard US format).' }),
      after: t.arg.string({ description: 'Resume after this message cursor.' }),
    },
    // Subscribers with the same operation share one execution over WebSocket (one read and one
    // serialization per message for all of them); one resuming with `after` replays on its own.
    extensions: { [SHARED_EXECUTION]: { topic: 'messageReceived', resumeArgument: 'after' } satisfies SharedExecution },
    subscribe: (_root, args, ctx) => {
      const phoneNumber = phoneArg(args.phoneNumber);
      const hints = ctx.streamHints;
      if (hints?.admissionOnly) return nothing();
      return messageReceivedStream(ctx.deps, ctx.caller.organizationId, { phoneNumber, after: args.after ?? null, hints });
    },
    resolve: (row, _args, ctx) => {
      ctx.streamHints?.onRow?.({ at: row.createdAt, id: row.id });
      return deliver(row, ctx);
    },
  }),
  conversationUpdated: t.field({
    type: ConversationRef,
    description: 'Conversations of your organization as they change: a new message either way, read, archived, starred.',
    subscribe: (_root, _args, ctx) => conversationUpdatedStream(ctx.deps, ctx.caller.organizationId),
    resolve: (row, _args, ctx) => deliver(row, ctx),
  }),
  messageStatusChanged: t.field({
    type: MessageRef,
    description: 'Outgoing messages whose delivery status moved forward (sent, delivered, failed, ...), optionally of one conversation.',
    args: { phoneNumber: t.arg.string({ description: 'Only this conversation (any standard US format).' }) },
    subscribe: (_root, args, ctx) => messageStatusStream(ctx.deps, ctx.caller.organizationId, { phoneNumber: phoneArg(args.phoneNumber) }),
    resolve: (row, _args, ctx) => deliver(row, ctx),
  }),
}));
