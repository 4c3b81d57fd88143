import { Kind, type FieldNode, type SelectionSetNode } from 'graphql';
import type { NoteRow } from '../../db/teamwork-tables.js';
import { AppError } from '../../errors.js';
import { messageColumns, type MessageColumns } from '../../services/messages.js';
import { isNoteRow, keysetCursor, keysetRequest, mentionsPage, type Page, type TimelineRow } from '../../services/note-pages.js';
import { addNote, MAX_MENTIONS, MAX_NOTE_LENGTH } from '../../services/notes.js';
import { normalizePhone } from '../../services/phone.js';
import { noteAddedStream } from '../../services/realtime.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { fieldsOfSelection, type Fragments } from '../selections.js';
import { ContactNotFoundError, MemberNotFoundError, typedError } from './errors.js';
import { MESSAGE_FIELD_COLUMNS, MessageRef } from './message.js';
import { ConversationRef, UserRef } from './refs.js';
import { deliver } from './subscriptions.js';
import { ViewerRef } from './user.js';

// Internal notes: the Note type, addNote, Conversation.notes and Conversation.timeline (messages and notes in
// one thread), Viewer.mentions and the noteAdded subscription.

export const NoteRef = builder.objectRef<NoteRow>('Note');

builder.node(NoteRef, {
  description: 'An internal note on a conversation: for the team only, never sent to the contact.',
  id: { resolve: (row) => row.id },
  loadOne: (id, ctx) => ctx.loaders.note.load(id),
  fields: (t) => ({
    uuid: t.exposeString('id', { description: 'Raw UUID.' }),
    body: t.exposeString('body'),
    author: t.field({
      type: UserRef,
      nullable: true,
      description: 'The member who wrote it: null for an integration token and for a former member.',
      resolve: async (note, _args, ctx) => (note.authorUserId ? ((await ctx.loaders.member.load(note.authorUserId))?.user ?? null) : null),
    }),
    mentions: t.field({
      type: [UserRef],
      description: 'The members it mentions, by name (former members are left out).',
      resolve: async (note, _args, ctx) => (await ctx.loaders.noteMentions.load(note.id)).map((member) => member.user),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    conversation: t.field({
      type: ConversationRef,
      resolve: async (note, _args, ctx) => (await ctx.loaders.conversation.load(note.conversationId))!,
    }),
  }),
});

export const NoteConnectionRef = builder.connectionObject(
  { type: NoteRef, name: 'NoteConnection', description: 'Notes, newest first.' },
  { name: 'NoteEdge' },
);

const TimelineItemRef = builder.unionType('TimelineItem', {
  description: 'One entry of a thread: a message (either way) or an internal note.',
  types: [MessageRef, NoteRef],
  resolveType: (row) => (isNoteRow(row as TimelineRow) ? NoteRef : MessageRef),
});

const TimelineConnectionRef = builder.connectionObject(
  { type: TimelineItemRef, name: 'TimelineConnection', description: 'Messages and notes of one thread, newest first.' },
  { name: 'TimelineEdge' },
);

/** A connection's edges and page info; cursors are scoped to `scope` (the conversation, or the mentioned member). */
function connectionOf<T extends TimelineRow>(page: Page<T>, kind: 'note' | 'timeline' | 'mention', scope: string) {
  const edges = page.items.map((node) => ({ cursor: keysetCursor(kind, scope, node), node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.hasNextPage,
      hasPreviousPage: page.hasPreviousPage,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

// A timeline reads the message columns its `... on Message` selections show (and every column when it
// selects anything else), as Conversation.messages does; notes are always read whole (six columns).
const TIMELINE_MESSAGE_CONDITIONS = new Set(['Message', 'Node', 'TimelineItem']);
const columnsByField = new WeakMap<FieldNode, MessageColumns>();

function timelineColumnsOf(fieldNodes: readonly FieldNode[], fragments: Fragments): MessageColumns {
  const cached = fieldNodes.length === 1 ? columnsByField.get(fieldNodes[0]!) : undefined;
  if (cached) return cached;
  const sets: (SelectionSetNode | undefined)[] = [];
  let all = false;
  // node's selection: fragments on Message (or an abstract type Message is part of) apply to messages.
  const collect = (set: SelectionSetNode | undefined, depth = 0) => {
    for (const selection of set?.selections ?? []) {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value !== '__typename') all = true;
        continue;
      }
      const fragment = selection.kind === Kind.INLINE_FRAGMENT ? selection : fragments[selection.name.value];
      const condition = fragment?.typeCondition?.name.value;
      if (!fragment || depth > 32) continue;
      if (condition === undefined || condition === 'TimelineItem') collect(fragment.selectionSet, depth + 1);
      else if (TIMELINE_MESSAGE_CONDITIONS.has(condition)) sets.push(fragment.selectionSet);
    }
  };
  for (const connection of fieldNodes) {
    for (const edges of connection.selectionSet?.selections ?? []) {
      if (edges.kind !== Kind.FIELD) all = true;
      else if (edges.name.value === 'edges') {
        for (const node of edges.selectionSet?.selections ?? []) {
          if (node.kind !== Kind.FIELD) all = true;
          else if (node.name.value === 'node') collect(node.selectionSet);
        }
      }
    }
  }
  const columns = messageColumns(all ? null : fieldsOfSelection(sets, fragments, MESSAGE_FIELD_COLUMNS));
  if (fieldNodes.length === 1) columnsByField.set(fieldNodes[0]!, columns);
  return columns;
}

builder.objectFields(ConversationRef, (t) => ({
  notes: t.connection(
    {
      type: NoteRef,
      description:
        'Internal notes, newest first. `first`/`after` walk to older notes, `last`/`before` to newer ones. Default page 50, at most 200.',
      resolve: async (c, args, ctx) => {
        const page = await ctx.loaders.conversationPage<NoteRow>(c.id, keysetRequest('note', c.id, args));
        return connectionOf(page, 'note', c.id);
      },
    },
    NoteConnectionRef,
  ),
  timeline: t.connection(
    {
      type: TimelineItemRef,
      description:
        'Messages and notes in one list, newest first, to draw a thread. `first`/`after` walk to older items, `last`/`before` to newer ones. Default page 50, at most 200.',
      resolve: async (c, args, ctx, info) => {
        const request = keysetRequest('timeline', c.id, args, timelineColumnsOf(info.fieldNodes, info.fragments));
        return connectionOf(await ctx.loaders.conversationPage(c.id, request), 'timeline', c.id);
      },
    },
    TimelineConnectionRef,
  ),
}));

builder.objectFields(ViewerRef, (t) => ({
  mentions: t.connection(
    {
      type: NoteRef,
      description:
        'Notes that mention the viewer in this organization, newest first. Always empty for an integration token (no person to mention).',
      resolve: async ({ ctx }, args) => {
        const userId = ctx.caller.userId;
        // Checked even when empty, so a bad cursor is refused the same way for every caller.
        const request = keysetRequest('mention', userId ?? ctx.caller.organizationId, args);
        if (!userId) return connectionOf({ items: [], hasNextPage: false, hasPreviousPage: false }, 'mention', ctx.caller.organizationId);
        const page = await mentionsPage(ctx.deps.db, ctx.caller.organizationId, userId, request);
        for (const note of page.items) ctx.loaders.note.prime(note.id, note);
        return connectionOf(page, 'mention', userId);
      },
    },
    NoteConnectionRef,
  ),
}));

const AddNoteInput = builder.inputType('AddNoteInput', {
  fields: (t) => ({
    phoneNumber: t.string({
      required: true,
      description:
        "The conversation's number (any standard US format). Without a conversation, one is created when a contact has the number.",
    }),
    body: t.string({
      required: true,
      description: `The note, trimmed: not empty, at most ${MAX_NOTE_LENGTH.toLocaleString('en-US')} characters.`,
    }),
    mentionUserIds: t.idList({ description: `Members to mention (User ids or raw UUIDs), at most ${MAX_MENTIONS}.` }),
  }),
});

const rethrowTyped = (error: unknown): never => {
  throw error instanceof AppError ? typedError(error) : error;
};

builder.mutationField('addNote', (t) =>
  t.field({
    type: NoteRef,
    description:
      'Adds an internal note to a conversation (any member, or an integration token). Never sent by SMS; changes neither unreadCount nor lastMessage.',
    args: { input: t.arg({ type: AddNoteInput, required: true }) },
    errors: { types: [ContactNotFoundError, MemberNotFoundError], directResult: true, union: { name: 'AddNoteResult' } },
    resolve: async (_root, { input }, ctx) => {
      const added = await addNote(ctx.deps, ctx.caller, {
        phoneNumber: normalizePhone(input.phoneNumber),
        body: input.body,
        mentionUserIds: input.mentionUserIds?.map((id) => uuidOfNodeId(id, 'User')),
      }).catch(rethrowTyped);
      ctx.loaders.note.prime(added.note.id, added.note);
      ctx.loaders.noteMentions.prime(added.note.id, added.mentions);
      for (const member of added.mentions) ctx.loaders.member.prime(member.user.id, member);
      if (added.conversationCreated) ctx.loaders.conversation.clear(added.note.conversationId);
      return added.note;
    },
  }),
);

builder.subscriptionField('noteAdded', (t) =>
  t.field({
    type: NoteRef,
    description: 'Notes added in your organization as they are written, optionally of one conversation.',
    args: { phoneNumber: t.arg.string({ description: 'Only this conversation (any standard US format).' }) },
    subscribe: (_root, args, ctx) =>
      noteAddedStream(ctx.deps, ctx.caller.organizationId, { phoneNumber: args.phoneNumber ? normalizePhone(args.phoneNumber) : null }),
    resolve: (row, _args, ctx) => deliver(row, ctx),
  }),
);
