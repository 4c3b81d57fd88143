import type { FieldNode } from 'graphql';
import type { MessageRow } from '../../db/tables.js';
import { messageColumns, type MessageColumns } from '../../services/messages.js';
import { builder } from '../builder.js';
import { connectionNodeSelections, fieldsOfSelection, type Fragments } from '../selections.js';
import { ConversationRef, UserRef } from './refs.js';

export const MessageDirectionEnum = builder.enumType('MessageDirection', {
  values: {
    INCOMING: { value: 'incoming', description: 'Received from the contact.' },
    OUTGOING: { value: 'outgoing', description: 'Sent by the organization.' },
  } as const,
});

export const MessageStatusEnum = builder.enumType('MessageStatus', {
  description: 'Delivery status of an outgoing message, as the provider reports it. Statuses only move forward.',
  values: {
    ACCEPTED: { value: 'accepted' },
    SCHEDULED: { value: 'scheduled' },
    QUEUED: { value: 'queued' },
    SENDING: { value: 'sending' },
    SENT: { value: 'sent' },
    DELIVERED: { value: 'delivered' },
    UNDELIVERED: { value: 'undelivered' },
    FAILED: { value: 'failed' },
    READ: { value: 'read' },
    CANCELED: { value: 'canceled' },
  } as const,
});

export const SentimentEnum = builder.enumType('Sentiment', {
  values: {
    POSITIVE: { value: 'positive' },
    NEGATIVE: { value: 'negative' },
    NEUTRAL: { value: 'neutral' },
  } as const,
});

export const MessageRef = builder.objectRef<MessageRow>('Message');

builder.node(MessageRef, {
  description: 'One SMS or MMS, inbound or outbound.',
  id: { resolve: (row) => row.id },
  loadOne: (id, ctx) => ctx.loaders.message.load(id),
  fields: (t) => ({
    uuid: t.exposeString('id', { description: 'Raw UUID, as the REST API returns it.' }),
    // Exposed (no resolver): graphql-jit reads a field without a resolver inline.
    direction: t.expose('direction', { type: MessageDirectionEnum }),
    body: t.exposeString('body'),
    mediaUrls: t.exposeStringList('mediaUrls'),
    status: t.field({
      type: MessageStatusEnum,
      nullable: true,
      description: 'null for incoming messages.',
      resolve: (m) => (m.direction === 'outgoing' ? (m.status as typeof MessageStatusEnum.$inferType | null) : null),
    }),
    errorCode: t.exposeInt('errorCode', { nullable: true, description: "The provider's error code for a failed send." }),
    sentiment: t.expose('sentiment', { type: SentimentEnum, nullable: true }),
    sentimentScore: t.exposeFloat('sentimentScore', { nullable: true, description: 'Confidence of `sentiment`, in [0, 1].' }),
    category: t.exposeString('category', {
      nullable: true,
      description: 'general, question, opt_out, opt_in or help (inbound messages).',
    }),
    requiresResponse: t.exposeBoolean('requiresResponse', { nullable: true }),
    optOutDetected: t.exposeBoolean('optOutDetected', { nullable: true }),
    isFlood: t.exposeBoolean('flaggedAsFlood', { description: 'Inbound: arrived while its sender was flooding the number (stored all the same).' }),
    segments: t.exposeInt('segments', { nullable: true }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When it was received or sent; a scheduled reply carries its due time (where it will sit in the thread).',
    }),
    sendAt: t.expose('sendAt', {
      type: 'DateTime',
      nullable: true,
      description: 'A scheduled reply: when it is (or was) due to go out. null for other messages.',
    }),
    failureCode: t.exposeString('failureCode', {
      nullable: true,
      description:
        'Why a scheduled reply FAILED when it fell due, as an error code (SCHEDULE_EXPIRED, INSUFFICIENT_CREDITS, CONTACT_OPTED_OUT, CONTACT_NON_TEXTABLE, NO_FROM_NUMBER, PROVIDER_ERROR, ...). `errorCode` keeps the provider\'s own code.',
    }),
    conversation: t.field({
      type: ConversationRef,
      resolve: async (m, _args, ctx) => (await ctx.loaders.conversation.load(m.conversationId))!,
    }),
    sentBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'The member who sent it: null for inbound messages, integration tokens and former members.',
      resolve: async (m, _args, ctx) => (m.sentByUserId ? ((await ctx.loaders.member.load(m.sentByUserId))?.user ?? null) : null),
    }),
  }),
});

/** The one connection type for message lists (a conversation's messages and any later list of messages). */
export const MessageConnectionRef = builder.connectionObject(
  { type: MessageRef, name: 'MessageConnection', description: 'Messages, newest first.' },
  { name: 'MessageEdge' },
);

/**
 * The row fields each Message field reads. A field not listed here (added by another module) reads the
 * whole row. `cursor` needs only (conversationId, createdAt, id), which every page reads.
 */
export const MESSAGE_FIELD_COLUMNS: Record<string, readonly (keyof MessageRow)[]> = {
  __typename: [],
  id: ['id'],
  uuid: ['id'],
  direction: ['direction'],
  body: ['body'],
  mediaUrls: ['mediaUrls'],
  status: ['direction', 'status'],
  errorCode: ['errorCode'],
  sentiment: ['sentiment'],
  sentimentScore: ['sentimentScore'],
  category: ['category'],
  requiresResponse: ['requiresResponse'],
  optOutDetected: ['optOutDetected'],
  segments: ['segments'],
  createdAt: ['createdAt'],
  sendAt: ['sendAt'],
  failureCode: ['failureCode'],
  conversation: ['conversationId'],
  sentBy: ['sentByUserId'],
  cursor: [],
};

const columnsByField = new WeakMap<FieldNode, MessageColumns>();

/**
 * The columns a message connection's selection needs, so its page reads only those. Cached per field of a
 * document (documents are cached, so per query shape).
 */
export function messageColumnsOf(fieldNodes: readonly FieldNode[], fragments: Fragments): MessageColumns {
  // One node: its own selection decides (a field merged from several nodes is worked out every time).
  const cached = fieldNodes.length === 1 ? columnsByField.get(fieldNodes[0]!) : undefined;
  if (cached) return cached;
  const nodes = connectionNodeSelections(fieldNodes, fragments);
  const columns = messageColumns(nodes && fieldsOfSelection(nodes, fragments, MESSAGE_FIELD_COLUMNS));
  if (fieldNodes.length === 1) columnsByField.set(fieldNodes[0]!, columns);
  return columns;
}
