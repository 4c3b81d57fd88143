import { readFileSync } from 'node:fs';
import { type GraphQLField, type GraphQLObjectType } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/schema/index.js';
import { printedSchema, schemaFile } from '../src/schema/print.js';

/** A field's signature with arguments in name order (argument order carries no meaning in GraphQL). */
const signature = (field: GraphQLField<unknown, unknown>) =>
  `${field.name}(${[...field.args]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((a) => `${a.name}: ${String(a.type)}`)
    .join(', ')}): ${String(field.type)}`;
const fieldOf = (type: string, name: string) => (schema.getType(type) as GraphQLObjectType).getFields()[name]!;

describe('schema.graphql', () => {
  it('matches the schema printed from the Pothos code (run `npm run schema:print` after schema changes)', () => {
    expect(readFileSync(schemaFile, 'utf8')).toBe(printedSchema());
  });

  it('carries the contract fields with their exact types', () => {
    expect(signature(fieldOf('Query', 'node'))).toBe('node(id: ID!): Node');
    expect(signature(fieldOf('Query', 'organization'))).toBe('organization(): Organization!');
    expect(signature(fieldOf('Query', 'conversations'))).toBe(
      'conversations(after: String, filter: ConversationFilter, first: Int): ConversationConnection!',
    );
    expect(signature(fieldOf('Query', 'conversation'))).toBe('conversation(phoneNumber: String!): Conversation');
    expect(signature(fieldOf('Conversation', 'messages'))).toBe(
      'messages(after: String, before: String, first: Int, last: Int): MessageConnection!',
    );
    expect(signature(fieldOf('Mutation', 'markConversationRead'))).toBe('markConversationRead(phoneNumber: String!): Conversation!');
    expect(signature(fieldOf('Mutation', 'setConversationArchived'))).toBe(
      'setConversationArchived(archived: Boolean!, phoneNumber: String!): Conversation!',
    );
    expect(signature(fieldOf('Mutation', 'setConversationStarred'))).toBe(
      'setConversationStarred(phoneNumber: String!, starred: Boolean!): Conversation!',
    );
    const types: Record<string, Record<string, string>> = {
      Organization: { id: 'ID!', name: 'String!', timezone: 'String!', credits: 'Int!', phoneNumbers: '[PhoneNumber!]!' },
      PhoneNumber: { id: 'ID!', phoneNumber: 'String!', isDefault: 'Boolean!' },
      Conversation: {
        id: 'ID!',
        phoneNumber: 'String!',
        contact: 'Contact',
        lastMessage: 'Message',
        lastMessageAt: 'DateTime',
        unreadCount: 'Int!',
        isArchived: 'Boolean!',
        isStarred: 'Boolean!',
      },
      Message: {
        id: 'ID!',
        direction: 'MessageDirection!',
        body: 'String!',
        mediaUrls: '[String!]!',
        status: 'MessageStatus',
        sentiment: 'Sentiment',
        sentimentScore: 'Float',
        category: 'String',
        requiresResponse: 'Boolean',
        optOutDetected: 'Boolean',
        createdAt: 'DateTime!',
        conversation: 'Conversation!',
      },
      Contact: {
        id: 'ID!',
        phoneNumber: 'String!',
        firstName: 'String',
        lastName: 'String',
        isTextable: 'Boolean',
        isOptedIn: 'Boolean!',
        conversation: 'Conversation',
      },
    };
    for (const [type, fields] of Object.entries(types)) {
      for (const [name, fieldType] of Object.entries(fields))
        expect(`${type}.${name}: ${String(fieldOf(type, name).type)}`).toBe(`${type}.${name}: ${fieldType}`);
      expect((schema.getType(type) as GraphQLObjectType).getInterfaces().map(String)).toContain('Node');
    }
    const filter = schema.getType('ConversationFilter') as unknown as { getFields(): Record<string, { type: unknown }> };
    expect(Object.fromEntries(Object.entries(filter.getFields()).map(([k, v]) => [k, String(v.type)]))).toEqual({
      unread: 'Boolean',
      unresponded: 'Boolean',
      search: 'String',
      includeArchived: 'Boolean',
      starred: 'Boolean',
    });
    expect(
      String(schema.getType('MessageDirection') && (schema.getType('MessageDirection') as any).getValues().map((v: any) => v.name)),
    ).toBe('INCOMING,OUTGOING');
  });
});
