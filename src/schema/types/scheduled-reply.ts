import type { MessageRow } from '../../db/tables.js';
import { cancelScheduledReply, rescheduleReply, scheduledRepliesOf } from '../../services/replies/index.js';
import type { RequestContext } from '../../context.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { MessageRef } from './message.js';
import { ConversationRef } from './refs.js';

// Scheduled replies: sendReply with `sendAt` stores them (reply.ts); here they are listed, moved and canceled.
// Any member may manage them, as any member may send.

function fresh(ctx: RequestContext, message: MessageRow): MessageRow {
  ctx.loaders.message.clear(message.id).prime(message.id, message);
  ctx.loaders.conversation.clear(message.conversationId);
  return message;
}

builder.objectFields(ConversationRef, (t) => ({
  scheduledReplies: t.field({
    type: [MessageRef],
    description: 'Replies still SCHEDULED in this conversation, soonest first.',
    resolve: (c, _args, ctx) => scheduledRepliesOf(ctx.deps, ctx.caller.organizationId, c.id),
  }),
}));

builder.mutationFields((t) => ({
  rescheduleReply: t.field({
    type: MessageRef,
    description:
      'Moves a SCHEDULED reply to another time (in the future, within 90 days), and replaces its text when `message` is given. ' +
      'A reply that is no longer SCHEDULED: BAD_USER_INPUT with errorCode NOT_SCHEDULED.',
    args: {
      id: t.arg.id({ required: true, description: 'The reply (its Message id or raw UUID).' }),
      sendAt: t.arg({ type: 'DateTime', required: true }),
      message: t.arg.string({ description: 'A new text; media and route stay as scheduled.' }),
    },
    resolve: async (_root, args, ctx) =>
      fresh(ctx, await rescheduleReply(ctx.deps, ctx.caller.organizationId, uuidOfNodeId(args.id, 'Message'), args.sendAt, args.message)),
  }),
  cancelScheduledReply: t.field({
    type: MessageRef,
    description: 'Cancels a SCHEDULED reply: it becomes CANCELED and never goes out. Otherwise BAD_USER_INPUT with errorCode NOT_SCHEDULED.',
    args: { id: t.arg.id({ required: true, description: 'The reply (its Message id or raw UUID).' }) },
    resolve: async (_root, args, ctx) => fresh(ctx, await cancelScheduledReply(ctx.deps, ctx.caller.organizationId, uuidOfNodeId(args.id, 'Message'))),
  }),
}));
