import type { MessageRow } from '../../db/tables.js';
import { builder } from '../builder.js';
import { ConversationRef } from './conversation.js';

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
    direction: t.field({ type: MessageDirectionEnum, resolve: (m) => m.direction }),
    body: t.exposeString('body'),
    mediaUrls: t.exposeStringList('mediaUrls'),
    status: t.field({
      type: MessageStatusEnum,
      nullable: true,
      description: 'null for incoming messages.',
      resolve: (m) => (m.direction === 'outgoing' ? (m.status as typeof MessageStatusEnum.$inferType | null) : null),
    }),
    errorCode: t.exposeInt('errorCode', { nullable: true, description: "The provider's error code for a failed send." }),
    sentiment: t.field({ type: SentimentEnum, nullable: true, resolve: (m) => m.sentiment }),
    sentimentScore: t.exposeFloat('sentimentScore', { nullable: true, description: 'Confidence of `sentiment`, in [0, 1].' }),
    category: t.exposeString('category', {
      nullable: true,
      description: 'general, question, opt_out, opt_in or help (inbound messages).',
    }),
    requiresResponse: t.exposeBoolean('requiresResponse', { nullable: true }),
    optOutDetected: t.exposeBoolean('optOutDetected', { nullable: true }),
    segments: t.exposeInt('segments', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    conversation: t.field({
      type: ConversationRef,
      resolve: async (m, _args, ctx) => (await ctx.loaders.conversation.load(m.conversationId))!,
    }),
  }),
});

/** The one connection type for message lists (a conversation's messages and any later list of messages). */
export const MessageConnectionRef = builder.connectionObject(
  { type: MessageRef, name: 'MessageConnection', description: 'Messages, newest first.' },
  { name: 'MessageEdge' },
);
