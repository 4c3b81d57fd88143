import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// Conversations over GraphQL: filters, ordering, state mutations and tenant isolation.

let t: TestApp;
let acme: TestOrg;
let rival: TestOrg;
const minute = 60_000;
const base = Date.parse('2026-03-01T12:00:00.000Z');

const LIST = `query List($first: Int, $after: String, $filter: ConversationFilter) {
  conversations(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id phoneNumber unreadCount isArchived isStarred lastMessageAt contact { firstName lastName } lastMessage { body direction } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

async function phones(filter: Record<string, unknown> = {}, org: TestOrg = acme) {
  const res = await t.graphql(LIST, { filter, first: 200 }, org);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.conversations.edges.map((e: any) => e.node.phoneNumber);
}

beforeAll(async () => {
  t = await createTestApp();
  acme = await t.createOrg('Acme');
  rival = await t.createOrg('Rival');

  // Acme: Jane (unread inbound, newest), Bob (replied to), Zoe (archived, inbound read), unknown number.
  await t.createContact(acme, { phoneNumber: '+19195551234', firstName: 'Jane', lastName: 'Smith', isTextable: true });
  await t.createContact(acme, { phoneNumber: '+19195550002', firstName: 'Bob', lastName: 'Stone', isTextable: true });
  await t.createContact(acme, { phoneNumber: '+12125550003', firstName: 'Zoe', lastName: 'Quinn', isTextable: true });
  await t.addMessage(acme, { phoneNumber: '+19195550002', direction: 'incoming', body: 'Question?', createdAt: new Date(base) });
  await t.addMessage(acme, { phoneNumber: '+19195550002', direction: 'outgoing', body: 'Answer', status: 'delivered', createdAt: new Date(base + minute) });
  await t.addMessage(acme, { phoneNumber: '+12125550003', direction: 'incoming', body: 'Old news', createdAt: new Date(base + 2 * minute) });
  await t.addMessage(acme, { phoneNumber: '+14155550004', direction: 'incoming', body: 'Who is this?', createdAt: new Date(base + 3 * minute) });
  await t.addMessage(acme, { phoneNumber: '+19195551234', direction: 'outgoing', body: 'Hi Jane', status: 'sent', createdAt: new Date(base + 4 * minute) });
  await t.addMessage(acme, { phoneNumber: '+19195551234', direction: 'incoming', body: 'Sounds great, see you there!', createdAt: new Date(base + 5 * minute) });
  // An outgoing reply does not mark a thread read by itself (campaign texts go out unread threads too).
  await t.graphql('mutation { markConversationRead(phoneNumber: "+19195550002") { unreadCount } }', {}, acme);
  await t.graphql('mutation { markConversationRead(phoneNumber: "+12125550003") { unreadCount } }', {}, acme);
  await t.graphql('mutation { setConversationArchived(phoneNumber: "+12125550003", archived: true) { isArchived } }', {}, acme);
  await t.graphql('mutation { setConversationStarred(phoneNumber: "+19195550002", starred: true) { isStarred } }', {}, acme);

  // Rival holds a contact with Acme's search words and a number Acme also talks to.
  await t.createContact(rival, { phoneNumber: '+19195551234', firstName: 'Janet', lastName: 'Rival', isTextable: true });
  await t.addMessage(rival, { phoneNumber: '+19195551234', direction: 'incoming', body: 'rival secret', createdAt: new Date(base + 10 * minute) });
  await t.createContact(rival, { phoneNumber: '+13035550009', firstName: 'Smithers', lastName: 'Only', isTextable: true });
  await t.addMessage(rival, { phoneNumber: '+13035550009', direction: 'incoming', body: 'rival only', createdAt: new Date(base + 11 * minute) });
});
afterAll(() => t.close());

describe('conversations', () => {
  it('lists most recent activity first, hiding archived, with contact and last message', async () => {
    const res = await t.graphql(LIST, {}, acme);
    const nodes = res.body.data.conversations.edges.map((e: any) => e.node);
    expect(nodes.map((n: any) => n.phoneNumber)).toEqual(['+19195551234', '+14155550004', '+19195550002']);
    expect(nodes[0]).toMatchObject({
      unreadCount: 1,
      isArchived: false,
      lastMessageAt: new Date(base + 5 * minute).toISOString(),
      contact: { firstName: 'Jane', lastName: 'Smith' },
      lastMessage: { body: 'Sounds great, see you there!', direction: 'INCOMING' },
    });
    expect(nodes[1].contact).toBeNull();
    expect(nodes[2]).toMatchObject({ unreadCount: 0, isStarred: true, lastMessage: { direction: 'OUTGOING' } });
  });

  it('filters: unread, unresponded, starred, includeArchived', async () => {
    expect(await phones({ unread: true })).toEqual(['+19195551234', '+14155550004']);
    expect(await phones({ unresponded: true })).toEqual(['+19195551234', '+14155550004']);
    expect(await phones({ starred: true })).toEqual(['+19195550002']);
    expect(await phones({ includeArchived: true })).toEqual(['+19195551234', '+14155550004', '+12125550003', '+19195550002']);
    expect(await phones({ includeArchived: true, unresponded: true })).toEqual(['+19195551234', '+14155550004', '+12125550003']);
    expect(await phones({ unread: false })).toHaveLength(3);
  });

  it('archived: true lists only archived conversations, false only the others, whatever includeArchived says', async () => {
    expect(await phones({ archived: true })).toEqual(['+12125550003']);
    expect(await phones({ archived: true, includeArchived: false })).toEqual(['+12125550003']);
    expect(await phones({ archived: false, includeArchived: true })).toEqual(['+19195551234', '+14155550004', '+19195550002']);
    // Each shape has its own cached statement: asking again in another order gives the same answers.
    expect(await phones({ includeArchived: true })).toHaveLength(4);
    expect(await phones({ archived: true, unresponded: true })).toEqual(['+12125550003']);
    const counts = await t.graphql('{ archived: conversationCounts(filter: { archived: true }) { all } rest: conversationCounts { all } }', {}, acme);
    expect(counts.body.data).toEqual({ archived: { all: 1 }, rest: { all: 3 } });
  });

  it('search matches names case-insensitively and phone digits in any format', async () => {
    expect(await phones({ search: 'jan' })).toEqual(['+19195551234']);
    expect(await phones({ search: 'SMITH' })).toEqual(['+19195551234']);
    expect(await phones({ search: 'jane smith' })).toEqual(['+19195551234']);
    expect(await phones({ search: 'st' })).toEqual(['+19195550002']);
    expect(await phones({ search: '(919) 555-1234' })).toEqual(['+19195551234']);
    expect(await phones({ search: '919.555' })).toEqual(['+19195551234', '+19195550002']);
    expect(await phones({ search: '415' })).toEqual(['+14155550004']);
    expect(await phones({ search: 'quinn' })).toEqual([]);
    expect(await phones({ search: 'quinn', includeArchived: true })).toEqual(['+12125550003']);
    expect(await phones({ search: '100%_' })).toEqual([]);
  });

  it('pages with opaque keyset cursors', async () => {
    const first = await t.graphql(LIST, { first: 2, filter: { includeArchived: true } }, acme);
    const page1 = first.body.data.conversations;
    expect(page1.edges).toHaveLength(2);
    expect(page1.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    const second = await t.graphql(LIST, { first: 2, after: page1.pageInfo.endCursor, filter: { includeArchived: true } }, acme);
    const page2 = second.body.data.conversations;
    expect(page2.edges.map((e: any) => e.node.phoneNumber)).toEqual(['+12125550003', '+19195550002']);
    expect(page2.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
  });

  it('refuses page sizes above 200 and bad or foreign cursors with BAD_USER_INPUT', async () => {
    const big = await t.graphql(LIST, { first: 201 }, acme);
    expect(big.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(big.body.errors?.[0]?.message).toMatch(/200/);
    const rivalPage = await t.graphql(LIST, { first: 1 }, rival);
    const foreign = rivalPage.body.data.conversations.pageInfo.endCursor;
    for (const after of ['garbage', foreign, Buffer.from('conv:x:1:y').toString('base64url'), '']) {
      const res = await t.graphql(LIST, { first: 1, after }, acme);
      if (after === '') {
        expect(res.body.errors).toBeUndefined();
        continue;
      }
      expect(res.status).toBe(200);
      expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_CURSOR' });
    }
  });

  it('finds a conversation by phone number in any US format; invalid numbers are INVALID_PHONE_NUMBER', async () => {
    for (const phoneNumber of ['+19195551234', '(919) 555-1234', '919.555.1234', '9195551234', '1-919-555-1234']) {
      const res = await t.graphql('query($p: String!) { conversation(phoneNumber: $p) { phoneNumber contact { firstName } } }', { p: phoneNumber }, acme);
      expect(res.body.data.conversation).toEqual({ phoneNumber: '+19195551234', contact: { firstName: 'Jane' } });
    }
    const missing = await t.graphql('{ conversation(phoneNumber: "+16175550000") { id } }', {}, acme);
    expect(missing.body.data.conversation).toBeNull();
    const invalid = await t.graphql('{ conversation(phoneNumber: "555-12") { id } }', {}, acme);
    expect(invalid.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_PHONE_NUMBER' });
  });

  it('state mutations change read, archived and starred; a new inbound message unarchives', async () => {
    const read = await t.graphql('mutation { markConversationRead(phoneNumber: "919-555-1234") { unreadCount } }', {}, acme);
    expect(read.body.data.markConversationRead.unreadCount).toBe(0);
    expect(await phones({ unread: true })).toEqual(['+14155550004']);

    const archived = await t.graphql('mutation { setConversationArchived(phoneNumber: "+14155550004", archived: true) { isArchived } }', {}, acme);
    expect(archived.body.data.setConversationArchived.isArchived).toBe(true);
    expect(await phones()).not.toContain('+14155550004');
    await t.addMessage(acme, { phoneNumber: '+14155550004', direction: 'incoming', body: 'Hello?', createdAt: new Date(base + 20 * minute) });
    expect((await phones())[0]).toBe('+14155550004');

    const missing = await t.graphql('mutation { markConversationRead(phoneNumber: "+16175550000") { id } }', {}, acme);
    expect(missing.body.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', errorCode: 'CONVERSATION_NOT_FOUND' });
  });
});

describe('tenant isolation', () => {
  it('never lists, searches or finds another organization’s conversations', async () => {
    const all = await phones({ includeArchived: true });
    expect(all).not.toContain('+13035550009');
    expect(await phones({ search: 'Smithers' })).toEqual([]);
    expect(await phones({ search: 'rival' })).toEqual([]);
    expect(await phones({ search: '303' })).toEqual([]);
    const shared = await t.graphql('{ conversation(phoneNumber: "+19195551234") { lastMessage { body } contact { firstName } } }', {}, acme);
    expect(shared.body.data.conversation.contact.firstName).toBe('Jane');
    expect(shared.body.data.conversation.lastMessage.body).not.toBe('rival secret');
    const rivalOnly = await t.graphql('{ conversation(phoneNumber: "+13035550009") { id } }', {}, acme);
    expect(rivalOnly.body.data.conversation).toBeNull();
  });

  it('node(id) answers null for another organization’s conversation, message, contact and organization', async () => {
    const res = await t.graphql(
      '{ organization { id } conversations(first: 5) { edges { node { id contact { id } lastMessage { id } } } } }',
      {},
      rival,
    );
    const rivalIds = [
      res.body.data.organization.id,
      ...res.body.data.conversations.edges.flatMap((e: any) => [e.node.id, e.node.contact?.id, e.node.lastMessage?.id]),
    ].filter(Boolean);
    expect(rivalIds.length).toBeGreaterThanOrEqual(5);
    for (const id of rivalIds) {
      const own = await t.graphql('query($id: ID!) { node(id: $id) { id } }', { id }, rival);
      expect(own.body.data.node?.id).toBe(id);
      const stolen = await t.graphql('query($id: ID!) { node(id: $id) { id } }', { id }, acme);
      expect(stolen.body.errors).toBeUndefined();
      expect(stolen.body.data.node).toBeNull();
    }
  });

  it('refuses malformed node ids with BAD_USER_INPUT, and does not change another organization’s state', async () => {
    const bad = await t.graphql('{ node(id: "!!!") { id } }', {}, acme);
    expect(bad.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const notUuid = await t.graphql('query($id: ID!) { node(id: $id) { id } }', { id: Buffer.from('Conversation:123').toString('base64') }, acme);
    expect(notUuid.body.data.node).toBeNull();

    const attempt = await t.graphql('mutation { setConversationStarred(phoneNumber: "+13035550009", starred: true) { id } }', {}, acme);
    expect(attempt.body.errors?.[0]?.extensions?.errorCode).toBe('CONVERSATION_NOT_FOUND');
    expect(await phones({ starred: true }, rival)).toEqual([]);
    const rivalUnread = await t.graphql('{ conversation(phoneNumber: "+19195551234") { unreadCount } }', {}, rival);
    await t.graphql('mutation { markConversationRead(phoneNumber: "+19195551234") { id } }', {}, acme);
    const after = await t.graphql('{ conversation(phoneNumber: "+19195551234") { unreadCount } }', {}, rival);
    expect(after.body.data.conversation.unreadCount).toBe(rivalUnread.body.data.conversation.unreadCount);
    expect(after.body.data.conversation.unreadCount).toBe(1);
  });
});
