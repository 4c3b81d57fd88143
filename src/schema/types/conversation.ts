import type { ConversationRow, MessageRow } from '../../db/tables.js';
import {
  conversationCursor,
  countConversations,
  listColumns,
  listConversations,
  updateConversationState,
  waitingCursor,
  type ConversationFilter,
  type ListColumns,
} from '../../services/conversations.js';
import { getArgumentValues, type FieldNode, type GraphQLObjectType, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';
import { messageCursor, messagePageRequest, type MessageColumns, type MessagePage, type PageArgs } from '../../services/messages.js';
import { DEFAULT_PAGE_SIZE, pageSize } from '../../services/pages.js';
import { normalizePhone } from '../../services/phone.js';
import { builder } from '../builder.js';
import { connectionNodeSelections, eachField, fieldsOfSelection } from '../selections.js';
import type { RequestContext } from '../../context.js';
import { CONTACT_FIELD_COLUMNS, ContactRef } from './contact.js';
import { MESSAGE_FIELD_COLUMNS, messageColumnsOf, MessageConnectionRef, MessageRef } from './message.js';
import { ConversationOrderEnum, ConversationStatusEnum } from './conversation-status.js';
import { ConversationRef } from './refs.js';
import { uuidOfNodeId } from '../global-ids.js';

builder.node(ConversationRef, {
  description: 'The two-way thread between the organization and one phone number.',
  id: { resolve: (row) => row.id },
  loadOne: (id, ctx) => ctx.loaders.conversation.load(id),
  fields: (t) => ({
    phoneNumber: t.exposeString('phoneNumber', { description: "The contact's number, E.164." }),
    contact: t.field({
      type: ContactRef,
      nullable: true,
      description: 'null when the number has no contact record.',
      resolve: (c, _args, ctx) => {
        const listed = ctx.loaders.listedWith(c);
        if (listed) return listed.contact;
        return c.contactId ? ctx.loaders.contact.load(c.contactId) : null;
      },
    }),
    lastMessage: t.field({
      type: MessageRef,
      nullable: true,
      resolve: (c, _args, ctx) => {
        const listed = ctx.loaders.listedWith(c);
        if (listed) return listed.lastMessage;
        return c.lastMessageId ? ctx.loaders.message.load(c.lastMessageId) : null;
      },
    }),
    lastMessageAt: t.expose('lastMessageAt', { type: 'DateTime', nullable: true }),
    lastMessageDirection: t.field({
      type: 'String',
      nullable: true,
      description: '`incoming` or `outgoing`.',
      resolve: (c) => c.lastDirection,
    }),
    unreadCount: t.exposeInt('unreadCount', { description: 'Inbound messages not yet marked read.' }),
    isArchived: t.exposeBoolean('isArchived'),
    isStarred: t.exposeBoolean('isStarred'),
    messages: t.connection(
      {
        type: MessageRef,
        description:
          'Messages newest first. `first`/`after` walk to older messages, `last`/`before` to newer ones. Default page 50, at most 200.',
        resolve: async (c, args, ctx, info) => {
          const request = messagePageRequest(c.id, args, messageColumnsOf(info.fieldNodes, info.fragments));
          const page = await ctx.loaders.messagePage(c.id, request);
          const edges = page.messages.map((node) => new MessageEdge(node));
          return { edges, pageInfo: new MessagePageInfo(page) };
        },
      },
      MessageConnectionRef,
    ),
  }),
});

// Cursors are encoded only when asked for (the inbox's message previews never ask), and once: graphql-jit
// reads a resolver-less field up to three times (null check, error check, serialization), and each read of a
// plain getter would encode the cursor again.

/** An edge whose cursor is encoded on first read. */
class MessageEdge {
  private encoded: string | undefined = undefined;
  constructor(readonly node: MessageRow) {}
  get cursor(): string {
    return (this.encoded ??= messageCursor(this.node));
  }
}

/** Page info whose cursors are encoded on first read. */
class MessagePageInfo {
  readonly hasNextPage: boolean;
  readonly hasPreviousPage: boolean;
  private start: string | null | undefined = undefined;
  private end: string | null | undefined = undefined;
  constructor(private readonly page: MessagePage) {
    this.hasNextPage = page.hasNextPage;
    this.hasPreviousPage = page.hasPreviousPage;
  }
  get startCursor(): string | null {
    if (this.start === undefined) {
      const first = this.page.messages[0];
      this.start = first ? messageCursor(first) : null;
    }
    return this.start;
  }
  get endCursor(): string | null {
    if (this.end === undefined) {
      const last = this.page.messages.at(-1);
      this.end = last ? messageCursor(last) : null;
    }
    return this.end;
  }
}

export const ConversationConnectionRef = builder.connectionObject(
  { type: ConversationRef, name: 'ConversationConnection', description: 'Conversations, most recent activity first.' },
  { name: 'ConversationEdge' },
);

const ConversationFilterInput = builder.inputType('ConversationFilter', {
  description: 'Filters combine with AND. Archived conversations are hidden unless includeArchived is true.',
  fields: (t) => ({
    unread: t.boolean({ description: 'true: only conversations with unread inbound messages.' }),
    unresponded: t.boolean({ description: 'true: only conversations whose last message is inbound.' }),
    search: t.string({ description: 'Contact first or last name (case-insensitive, partial) or phone digits in any format.' }),
    includeArchived: t.boolean({ description: 'true: include archived conversations.' }),
    archived: t.boolean({ description: 'true: only archived conversations; false: only the others (the default unless includeArchived).' }),
    starred: t.boolean({ description: 'true: only starred conversations.' }),
    status: t.field({ type: [ConversationStatusEnum], description: 'Only these statuses (absent: every status).' }),
    assignedTo: t.id({ description: 'Only conversations assigned to this member (a User id).' }),
    unassigned: t.boolean({ description: 'true: only unassigned conversations.' }),
    mine: t.boolean({ description: 'true: only conversations assigned to the viewer (none for an integration token).' }),
  }),
});

type FilterArgs = typeof ConversationFilterInput.$inferInput;

/** The GraphQL filter as the data layer takes it. */
function filterOf(filter: FilterArgs | null | undefined): ConversationFilter | null {
  if (!filter) return null;
  return { ...filter, assignedTo: filter.assignedTo == null ? null : uuidOfNodeId(filter.assignedTo, 'User') };
}

const ConversationCountsRef = builder
  .objectRef<Awaited<ReturnType<typeof countConversations>>>('ConversationCounts')
  .implement({
    description: 'How many conversations match the filter, in all and in each state (one SQL statement).',
    fields: (t) => ({
      all: t.exposeInt('all'),
      open: t.exposeInt('open'),
      pending: t.exposeInt('pending'),
      snoozed: t.exposeInt('snoozed'),
      resolved: t.exposeInt('resolved'),
      unread: t.exposeInt('unread', { description: 'With unread inbound messages.' }),
      unassigned: t.exposeInt('unassigned'),
      mine: t.exposeInt('mine', { description: 'Assigned to the viewer.' }),
      waiting: t.exposeInt('waiting', { description: 'Waiting for an answer (waitingSince set).' }),
    }),
  });

builder.queryFields((t) => ({
  conversations: t.field({
    type: ConversationConnectionRef,
    description: 'Conversations, most recent activity first (or longest waiting first). Default page 50, at most 200.',
    args: {
      first: t.arg.int({ description: 'Page size, 0 to 200 (default 50).' }),
      after: t.arg.string({ description: '`pageInfo.endCursor` of the previous page.' }),
      filter: t.arg({ type: ConversationFilterInput }),
      orderBy: t.arg({ type: ConversationOrderEnum, description: 'LAST_ACTIVITY (default) or WAITING_LONGEST.' }),
    },
    resolve: async (_root, args, ctx, info) => {
      const first = pageSize(args.first, 'first') ?? DEFAULT_PAGE_SIZE;
      const columns = listColumnsOf(info);
      const { items, hasNextPage } = await listConversations(ctx.deps.db, ctx.caller.organizationId, {
        filter: filterOf(args.filter),
        first,
        after: args.after,
        columns,
        orderBy: args.orderBy,
        viewerUserId: ctx.caller.userId,
      });
      ctx.loaders.primeConversationItems(items, { partial: columns.partial });
      const cursorOf = args.orderBy === 'WAITING_LONGEST' ? waitingCursor : conversationCursor;
      const edges = items.map(({ conversation }) => ({
        cursor: cursorOf(ctx.caller.organizationId, conversation),
        node: conversation,
      }));
      return {
        edges,
        pageInfo: {
          hasNextPage,
          hasPreviousPage: Boolean(args.after),
          startCursor: edges[0]?.cursor ?? null,
          endCursor: edges.at(-1)?.cursor ?? null,
        },
      };
    },
  }),
  conversationCounts: t.field({
    type: ConversationCountsRef,
    description: 'Counts of the conversations matching the filter, in all and per state, for inbox badges.',
    args: { filter: t.arg({ type: ConversationFilterInput }) },
    resolve: (_root, args, ctx) =>
      countConversations(ctx.deps.db, ctx.caller.organizationId, { filter: filterOf(args.filter), viewerUserId: ctx.caller.userId }),
  }),
  conversation: t.field({
    type: ConversationRef,
    nullable: true,
    description: 'The conversation with this phone number (any standard US format), or null.',
    args: { phoneNumber: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx, info) => {
      const phoneNumber = normalizedPhone(args.phoneNumber);
      // Asked for its messages too: read the conversation and that page in one statement.
      const messages = messagesSelectionOf(info);
      return messages
        ? ctx.loaders.conversationWithMessagePage(phoneNumber, messages.args, messages.columns)
        : ctx.loaders.conversationByPhone.load(phoneNumber);
    },
  }),
}));

/** The row fields each Conversation field reads; a field not listed reads the whole row. */
const CONVERSATION_FIELD_COLUMNS: Record<string, readonly (keyof ConversationRow)[]> = {
  __typename: [],
  id: ['id'],
  phoneNumber: ['phoneNumber'],
  contact: ['contactId'],
  lastMessage: ['lastMessageId'],
  lastMessageAt: ['lastMessageAt'],
  lastMessageDirection: ['lastDirection'],
  unreadCount: ['unreadCount'],
  isArchived: ['isArchived'],
  isStarred: ['isStarred'],
  messages: ['id'],
  status: ['status'],
  snoozedUntil: ['snoozedUntil'],
  resolvedAt: ['resolvedAt'],
  assignee: ['assigneeUserId'],
  waitingSince: ['waitingSince'],
};

const listColumnsByField = new WeakMap<FieldNode, ListColumns>();

/**
 * The columns an inbox page's selection (`edges { cursor node { ... contact { ... } lastMessage { ... } } }`,
 * `pageInfo`) shows, so the list reads only those: Q1 shows 14 of the 45 columns of its join. Cached per
 * field of a document (documents are cached, so per query shape).
 */
function listColumnsOf(info: GraphQLResolveInfo): ListColumns {
  const cached = info.fieldNodes.length === 1 ? listColumnsByField.get(info.fieldNodes[0]!) : undefined;
  if (cached) return cached;
  const nodes = connectionNodeSelections(info.fieldNodes, info.fragments);
  const contactSets: (SelectionSetNode | undefined)[] = [];
  const messageSets: (SelectionSetNode | undefined)[] = [];
  for (const set of nodes ?? []) {
    eachField(set, info.fragments, (field) => {
      if (field.name.value === 'contact') contactSets.push(field.selectionSet);
      else if (field.name.value === 'lastMessage') messageSets.push(field.selectionSet);
    });
  }
  const columns = !nodes
    ? listColumns({ conversation: null, contact: null, message: null })
    : listColumns({
        conversation: fieldsOfSelection(nodes, info.fragments, CONVERSATION_FIELD_COLUMNS),
        contact: fieldsOfSelection(contactSets, info.fragments, CONTACT_FIELD_COLUMNS),
        message: fieldsOfSelection(messageSets, info.fragments, MESSAGE_FIELD_COLUMNS),
      });
  if (info.fieldNodes.length === 1) listColumnsByField.set(info.fieldNodes[0]!, columns);
  return columns;
}

// Phone numbers as clients send them, normalized (libphonenumber's parse was ~3% of a page request).
const normalizedPhones = new Map<string, string>();
function normalizedPhone(input: string): string {
  let phoneNumber = normalizedPhones.get(input);
  if (phoneNumber === undefined) {
    phoneNumber = normalizePhone(input); // throws for an invalid number, which is not kept
    if (normalizedPhones.size >= 10_000) normalizedPhones.clear();
    normalizedPhones.set(input, phoneNumber);
  }
  return phoneNumber;
}

/** The `messages` fields (one response key, as execution merges them) under a conversation field. */
const messagesFieldsByField = new WeakMap<FieldNode, FieldNode[] | null>();
function messagesFieldsOf(info: GraphQLResolveInfo): FieldNode[] | null {
  const cached = info.fieldNodes.length === 1 ? messagesFieldsByField.get(info.fieldNodes[0]!) : undefined;
  if (cached !== undefined) return cached;
  let responseKey: string | null = null;
  const found: FieldNode[] = [];
  for (const node of info.fieldNodes) {
    eachField(node.selectionSet, info.fragments, (field) => {
      if (field.name.value !== 'messages') return;
      const key = field.alias?.value ?? 'messages';
      responseKey ??= key;
      if (key === responseKey) found.push(field);
    });
  }
  const result = found.length > 0 ? found : null;
  if (info.fieldNodes.length === 1) messagesFieldsByField.set(info.fieldNodes[0]!, result);
  return result;
}

/** The arguments and columns of the (first) `messages` field selected under this conversation field, if any. */
function messagesSelectionOf(info: GraphQLResolveInfo): { args: PageArgs; columns: MessageColumns } | null {
  const fields = messagesFieldsOf(info);
  if (!fields) return null;
  const definition = (info.schema.getType('Conversation') as GraphQLObjectType).getFields().messages!;
  try {
    return {
      args: getArgumentValues(definition, fields[0]!, info.variableValues) as PageArgs,
      columns: messageColumnsOf(fields, info.fragments),
    };
  } catch {
    return null; // the messages field reports its own bad arguments
  }
}

async function changeConversation(ctx: RequestContext, phoneNumber: string, state: Parameters<typeof updateConversationState>[3]) {
  const row = await updateConversationState(ctx.deps, ctx.caller.organizationId, normalizePhone(phoneNumber), state);
  ctx.loaders.clearConversation(row);
  return row;
}

builder.mutationFields((t) => ({
  markConversationRead: t.field({
    type: ConversationRef,
    description: 'Marks every inbound message of the conversation read (unreadCount 0).',
    args: { phoneNumber: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => changeConversation(ctx, args.phoneNumber, { unreadCount: 0 }),
  }),
  setConversationArchived: t.field({
    type: ConversationRef,
    description: 'Archives or unarchives; a new inbound message unarchives it again.',
    args: { phoneNumber: t.arg.string({ required: true }), archived: t.arg.boolean({ required: true }) },
    resolve: (_root, args, ctx) => changeConversation(ctx, args.phoneNumber, { isArchived: args.archived }),
  }),
  setConversationStarred: t.field({
    type: ConversationRef,
    args: { phoneNumber: t.arg.string({ required: true }), starred: t.arg.boolean({ required: true }) },
    resolve: (_root, args, ctx) => changeConversation(ctx, args.phoneNumber, { isStarred: args.starred }),
  }),
}));
