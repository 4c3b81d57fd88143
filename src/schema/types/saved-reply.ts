import type { SavedReplyRow } from '../../db/teamwork-tables.js';
import { AppError } from '../../errors.js';
import { createSavedReply, deleteSavedReply, listSavedReplies, savedRepliesByIds, updateSavedReply } from '../../services/saved-replies.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { InvalidSavedReplyError, SavedReplyNameTakenError, SavedReplyNotFoundError, typedError } from './errors.js';
import { UserRef } from './refs.js';

// Saved replies: canned texts with merge fields, sent with sendReply(input: { savedReplyId }).

const SavedReplyRef = builder.objectRef<SavedReplyRow>('SavedReply');

builder.node(SavedReplyRef, {
  description:
    'A canned reply. Its body may hold merge fields, filled in for the contact when it is sent or previewed: ' +
    '{{firstName}}, {{lastName}}, {{phone}} (E.164) and {{custom.<key>}}; a missing value or an unknown field renders blank.',
  id: { resolve: (row) => row.id },
  loadMany: (ids, ctx) => savedRepliesByIds(ctx.deps.db, ctx.caller.organizationId, ids),
  fields: (t) => ({
    uuid: t.exposeString('id', { description: 'Raw UUID.' }),
    name: t.exposeString('name', { description: 'Unique in the organization, ignoring case.' }),
    body: t.exposeString('body', { description: 'The template, merge fields as written.' }),
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'The member who made it; null when an integration token made it, or for a former member.',
      resolve: async (row, _args, ctx) => (row.createdByUserId ? ((await ctx.loaders.member.load(row.createdByUserId))?.user ?? null) : null),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryField('savedReplies', (t) =>
  t.field({
    type: [SavedReplyRef],
    description: "The organization's saved replies, by name (any member or token).",
    resolve: (_root, _args, ctx) => listSavedReplies(ctx.deps.db, ctx.caller.organizationId),
  }),
);

const CreateSavedReplyInput = builder.inputType('CreateSavedReplyInput', {
  fields: (t) => ({
    name: t.string({ required: true, description: 'At most 100 characters, trimmed; unique in the organization, ignoring case.' }),
    body: t.string({ required: true, description: 'The template, at most 1,600 characters (a message\'s limit), trimmed.' }),
  }),
});

const UpdateSavedReplyInput = builder.inputType('UpdateSavedReplyInput', {
  description: 'Omitted (or null) fields stay as they are.',
  fields: (t) => ({
    name: t.string(),
    body: t.string(),
  }),
});

const payload = (name: string, description: string) =>
  builder.objectRef<{ savedReply: SavedReplyRow }>(name).implement({
    description,
    fields: (t) => ({ savedReply: t.field({ type: SavedReplyRef, resolve: (p) => p.savedReply }) }),
  });
const CreateSavedReplyPayload = payload('CreateSavedReplyPayload', 'The new saved reply.');
const UpdateSavedReplyPayload = payload('UpdateSavedReplyPayload', 'The saved reply as changed.');
const DeleteSavedReplyPayload = payload('DeleteSavedReplyPayload', 'The saved reply as it was before it was deleted.');

const rethrowTyped = (error: unknown): never => {
  throw error instanceof AppError ? typedError(error) : error;
};
const savedReplyIdArg = (value: string | number) => uuidOfNodeId(value, 'SavedReply');

builder.mutationFields((t) => ({
  createSavedReply: t.field({
    type: CreateSavedReplyPayload,
    description: 'Creates a saved reply (ADMIN and OWNER).',
    args: { input: t.arg({ type: CreateSavedReplyInput, required: true }) },
    errors: { types: [SavedReplyNameTakenError, InvalidSavedReplyError], directResult: true, union: { name: 'CreateSavedReplyResult' } },
    resolve: async (_root, { input }, ctx) => ({ savedReply: await createSavedReply(ctx.deps.db, ctx.caller, input).catch(rethrowTyped) }),
  }),
  updateSavedReply: t.field({
    type: UpdateSavedReplyPayload,
    description: "Changes a saved reply's name or body (ADMIN and OWNER).",
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateSavedReplyInput, required: true }) },
    errors: {
      types: [SavedReplyNotFoundError, SavedReplyNameTakenError, InvalidSavedReplyError],
      directResult: true,
      union: { name: 'UpdateSavedReplyResult' },
    },
    resolve: async (_root, { id, input }, ctx) => ({
      savedReply: await updateSavedReply(ctx.deps.db, ctx.caller, savedReplyIdArg(id), input).catch(rethrowTyped),
    }),
  }),
  deleteSavedReply: t.field({
    type: DeleteSavedReplyPayload,
    description: 'Deletes a saved reply (ADMIN and OWNER). Messages already sent with it keep their text.',
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [SavedReplyNotFoundError], directResult: true, union: { name: 'DeleteSavedReplyResult' } },
    resolve: async (_root, { id }, ctx) => ({ savedReply: await deleteSavedReply(ctx.deps.db, ctx.caller, savedReplyIdArg(id)).catch(rethrowTyped) }),
  }),
}));
