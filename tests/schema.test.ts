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
      'conversations(after: String, filter: ConversationFilter, first: Int, orderBy: ConversationOrder): ConversationConnection!',
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
      archived: 'Boolean',
      starred: 'Boolean',
      status: '[ConversationStatus!]',
      assignedTo: 'ID',
      unassigned: 'Boolean',
      mine: 'Boolean',
    });
    expect(
      String(schema.getType('MessageDirection') && (schema.getType('MessageDirection') as any).getValues().map((v: any) => v.name)),
    ).toBe('INCOMING,OUTGOING');
  });

  it('carries the team-inbox contract (people, roles, status, assignment, counts, audit)', () => {
    expect(signature(fieldOf('Query', 'viewer'))).toBe('viewer(): Viewer!');
    expect(signature(fieldOf('Query', 'conversationCounts'))).toBe('conversationCounts(filter: ConversationFilter): ConversationCounts!');
    expect(signature(fieldOf('Mutation', 'addMember'))).toBe('addMember(input: AddMemberInput!): Member!');
    expect(signature(fieldOf('Mutation', 'setMemberRole'))).toBe('setMemberRole(role: MemberRole!, userId: ID!): Member!');
    expect(signature(fieldOf('Mutation', 'removeMember'))).toBe('removeMember(userId: ID!): Member!');
    expect(signature(fieldOf('Mutation', 'createApiToken'))).toBe('createApiToken(input: CreateApiTokenInput!): CreateApiTokenPayload!');
    expect(signature(fieldOf('Mutation', 'revokeApiToken'))).toBe('revokeApiToken(id: ID!): ApiToken!');
    expect(signature(fieldOf('Mutation', 'setConversationStatus'))).toBe(
      'setConversationStatus(phoneNumber: String!, snoozedUntil: DateTime, status: ConversationStatus!): Conversation!',
    );
    expect(signature(fieldOf('Mutation', 'assignConversation'))).toBe('assignConversation(phoneNumber: String!, userId: ID): Conversation!');
    expect(signature(fieldOf('Organization', 'auditEvents'))).toBe('auditEvents(after: String, first: Int): AuditEventConnection!');
    const fieldsOf = (type: string) =>
      Object.fromEntries(Object.values((schema.getType(type) as GraphQLObjectType).getFields()).map((f) => [f.name, String(f.type)]));
    expect(fieldsOf('Viewer')).toEqual({ user: 'User', role: 'MemberRole!', organizations: '[Organization!]!', mentions: 'NoteConnection!' });
    expect(fieldsOf('Member')).toMatchObject({ user: 'User!', role: 'MemberRole!' });
    expect(fieldsOf('User')).toMatchObject({ id: 'ID!', uuid: 'String!', email: 'String!', name: 'String' });
    expect(fieldsOf('CreateApiTokenPayload')).toMatchObject({ token: 'String!' });
    expect(fieldsOf('Organization')).toMatchObject({ members: '[Member!]!' });
    expect(fieldsOf('Conversation')).toMatchObject({
      status: 'ConversationStatus!',
      snoozedUntil: 'DateTime',
      resolvedAt: 'DateTime',
      assignee: 'User',
      waitingSince: 'DateTime',
    });
    expect(fieldsOf('Message')).toMatchObject({ sentBy: 'User' });
    expect(Object.keys(fieldsOf('ConversationCounts')).sort()).toEqual(
      ['all', 'open', 'pending', 'snoozed', 'resolved', 'unread', 'unassigned', 'mine', 'waiting'].sort(),
    );
    const values = (type: string) => (schema.getType(type) as any).getValues().map((v: any) => v.name);
    expect(values('MemberRole')).toEqual(['OWNER', 'ADMIN', 'AGENT', 'INTEGRATION']);
    expect(values('ConversationStatus')).toEqual(['OPEN', 'PENDING', 'SNOOZED', 'RESOLVED']);
    expect(values('ConversationOrder')).toEqual(['LAST_ACTIVITY', 'WAITING_LONGEST']);
    const input = (type: string) =>
      Object.fromEntries(Object.entries((schema.getType(type) as any).getFields()).map(([k, v]: [string, any]) => [k, String(v.type)]));
    expect(input('AddMemberInput')).toEqual({ email: 'String!', name: 'String', role: 'MemberRole!' });
    expect(input('CreateApiTokenInput')).toEqual({ userId: 'ID', name: 'String' });
  });

  it('carries the internal-notes contract (issue 17)', () => {
    expect(signature(fieldOf('Mutation', 'addNote'))).toBe('addNote(input: AddNoteInput!): AddNoteResult!');
    expect(signature(fieldOf('Conversation', 'notes'))).toBe('notes(after: String, before: String, first: Int, last: Int): NoteConnection!');
    expect(signature(fieldOf('Conversation', 'timeline'))).toBe('timeline(after: String, before: String, first: Int, last: Int): TimelineConnection!');
    expect(signature(fieldOf('Viewer', 'mentions'))).toBe('mentions(after: String, before: String, first: Int, last: Int): NoteConnection!');
    expect(signature(fieldOf('Subscription', 'noteAdded'))).toBe('noteAdded(phoneNumber: String): Note!');
    const fields = (type: string) =>
      Object.fromEntries(Object.entries((schema.getType(type) as any).getFields()).map(([k, v]: [string, any]) => [k, String(v.type)]));
    expect(fields('Note')).toMatchObject({ id: 'ID!', uuid: 'String!', body: 'String!', author: 'User', mentions: '[User!]!', createdAt: 'DateTime!' });
    expect(fields('AddNoteInput')).toEqual({ phoneNumber: 'String!', body: 'String!', mentionUserIds: '[ID!]' });
    const members = (type: string) => (schema.getType(type) as any).getTypes().map((t: any) => t.name).sort();
    expect(members('TimelineItem')).toEqual(['Message', 'Note']);
    expect(members('AddNoteResult')).toEqual(['ContactNotFoundError', 'MemberNotFoundError', 'Note']);
    expect((schema.getType('Note') as GraphQLObjectType).getInterfaces().map((i) => i.name)).toContain('Node');
  });
});
