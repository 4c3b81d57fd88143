import type { RequestContext } from '../../context.js';
import type { ConversationRow } from '../../db/tables.js';
import { assignConversation, setConversationStatus } from '../../services/conversation-status.js';
import { normalizePhone } from '../../services/phone.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { ConversationRef, UserRef } from './refs.js';

// Working a thread: status, snooze, assignment, waiting time.

export const ConversationStatusEnum = builder.enumType('ConversationStatus', {
  values: {
    OPEN: { value: 'open', description: 'Needs the team (new conversations start here).' },
    PENDING: { value: 'pending', description: 'Waiting on something outside the thread.' },
    SNOOZED: { value: 'snoozed', description: 'Out of the way until snoozedUntil, or until the contact writes.' },
    RESOLVED: { value: 'resolved', description: 'Done, until the contact writes again.' },
  } as const,
});

export const ConversationOrderEnum = builder.enumType('ConversationOrder', {
  values: {
    LAST_ACTIVITY: { description: 'Most recent activity first (the default).' },
    WAITING_LONGEST: { description: 'Conversations waiting for an answer, longest wait (waitingSince) first; then the others by last activity.' },
  } as const,
});

builder.objectFields(ConversationRef, (t) => ({
  status: t.expose('status', { type: ConversationStatusEnum }),
  snoozedUntil: t.expose('snoozedUntil', { type: 'DateTime', nullable: true, description: 'When a SNOOZED conversation opens again.' }),
  resolvedAt: t.expose('resolvedAt', { type: 'DateTime', nullable: true, description: 'When it was resolved (RESOLVED only).' }),
  assignee: t.field({
    type: UserRef,
    nullable: true,
    description: 'The member who owns the thread.',
    resolve: async (c, _args, ctx) => (c.assigneeUserId ? ((await ctx.loaders.member.load(c.assigneeUserId))?.user ?? null) : null),
  }),
  waitingSince: t.expose('waitingSince', {
    type: 'DateTime',
    nullable: true,
    description: 'The time of the oldest inbound message after our last outgoing one: null when the last message is ours, or there is none.',
  }),
}));

async function changed(ctx: RequestContext, row: Promise<ConversationRow>): Promise<ConversationRow> {
  const conversation = await row;
  ctx.loaders.clearConversation(conversation);
  return conversation;
}

builder.mutationFields((t) => ({
  setConversationStatus: t.field({
    type: ConversationRef,
    description: 'Sets the status. SNOOZED needs a future snoozedUntil (at most a year ahead); other statuses clear it.',
    args: {
      phoneNumber: t.arg.string({ required: true }),
      status: t.arg({ type: ConversationStatusEnum, required: true }),
      snoozedUntil: t.arg({ type: 'DateTime' }),
    },
    resolve: (_root, args, ctx) =>
      changed(ctx, setConversationStatus(ctx.deps, ctx.caller, normalizePhone(args.phoneNumber), args.status, args.snoozedUntil)),
  }),
  assignConversation: t.field({
    type: ConversationRef,
    description: 'Assigns the conversation to a member (any member may assign anyone); userId null unassigns.',
    args: { phoneNumber: t.arg.string({ required: true }), userId: t.arg.id() },
    resolve: (_root, args, ctx) =>
      changed(
        ctx,
        assignConversation(ctx.deps, ctx.caller, normalizePhone(args.phoneNumber), args.userId == null ? null : uuidOfNodeId(args.userId, 'User')),
      ),
  }),
}));
