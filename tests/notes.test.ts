import { and, count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { conversations, messages } from '../src/db/tables.js';
import { noteMentions, notes } from '../src/db/teamwork-tables.js';
import { createTestApp, type TestApp, type TestMember, type TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { connectWs, subscribeWs, until } from './helpers/realtime.js';
import { restClient } from './helpers/rest.js';

// Internal notes (issue 17): addNote and its refusals, Conversation.notes and .timeline (one thread of
// messages and notes, both ways, one statement a page), Viewer.mentions, noteAdded over graphql-ws, and
// what notes never do: go out by SMS (a fake Twilio driven by the real SDK sees every send), show in the
// REST messages route, or touch unreadCount and lastMessage. Over real HTTP and WebSocket.

let t: TestApp;
let fake: FakeTwilio;
let rest: Awaited<ReturnType<typeof restClient>>;

beforeAll(async () => {
  fake = await startFakeTwilio();
  t = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: 'https://gateway.example.com', SIMULATED_STATUS_DELAY_MS: '0' });
  rest = await restClient(t);
}, 60_000);
afterAll(async () => {
  await t?.close();
  await fake?.close();
});
beforeEach(() => fake.reset());

const as = (who: TestOrg) => ({ headers: { authorization: `Bearer ${who.apiToken}`, 'x-organization-id': who.organizationId } });
const userId = (uuid: string) => Buffer.from(`User:${uuid}`).toString('base64');

const ADD = `mutation($input: AddNoteInput!) { addNote(input: $input) {
  __typename
  ... on Note { id uuid body createdAt author { uuid email } mentions { uuid email } conversation { phoneNumber } }
  ... on Error { code message }
} }`;
const NOTES = `query($phone: String!, $first: Int, $after: String, $last: Int, $before: String) { conversation(phoneNumber: $phone) {
  notes(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { uuid body } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }`;
const TIMELINE = `query($phone: String!, $first: Int, $after: String, $last: Int, $before: String) { conversation(phoneNumber: $phone) {
  timeline(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { __typename ... on Message { uuid body direction } ... on Note { uuid body } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }`;
const THREAD = `query($phone: String!) { conversation(phoneNumber: $phone) {
  unreadCount lastMessageAt lastMessage { uuid } waitingSince lastMessageDirection } }`;

let seq = 0;
async function workspace(name: string) {
  seq += 1;
  const org = await t.createOrg(name, { credits: 100, phoneNumber: `+1919557${String(1000 + seq).slice(-4)}` });
  const owner = await t.addMember(org, { email: `owner.${seq}@notes.example.com`, name: 'Olga Owner', role: 'owner' });
  const agent = await t.addMember(org, { email: `agent.${seq}@notes.example.com`, name: 'Alan Agent', role: 'agent' });
  return { org, owner, agent };
}

let phoneSeq = 0;
const nextPhone = () => `+1212555${String(2000 + ++phoneSeq).slice(-4)}`;

async function addNote(who: TestOrg, input: Record<string, unknown>) {
  const res = await t.graphql(ADD, { input }, as(who));
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res;
}

async function added(who: TestOrg, input: Record<string, unknown>) {
  const res = await addNote(who, input);
  expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
  expect(res.body.data.addNote.__typename, JSON.stringify(res.body.data)).toBe('Note');
  return res.body.data.addNote;
}

async function countsOf(org: TestOrg) {
  const [n] = await t.db.select({ n: count() }).from(notes).where(eq(notes.organizationId, org.organizationId));
  const [m] = await t.db.select({ n: count() }).from(noteMentions).where(eq(noteMentions.organizationId, org.organizationId));
  const [c] = await t.db.select({ n: count() }).from(conversations).where(eq(conversations.organizationId, org.organizationId));
  return { notes: n!.n, mentions: m!.n, conversations: c!.n };
}

describe('addNote', () => {
  it('stores a trimmed note by its author with its mentions, and changes neither unreadCount nor lastMessage', async () => {
    const { org, owner, agent } = await workspace('Add');
    const phone = nextPhone();
    await t.addMessage(org, { phoneNumber: phone, direction: 'incoming', body: 'Where is my order?' });
    const before = (await t.graphql(THREAD, { phone }, as(agent))).body.data.conversation;
    expect(before.unreadCount).toBe(1);

    // A User global id and a raw UUID (named twice: mentioned once).
    const note = await added(agent, {
      phoneNumber: '(212) 555-' + phone.slice(-4),
      body: '  Checked the warehouse: ships Monday.  ',
      mentionUserIds: [userId(owner.userId), agent.userId, owner.userId],
    });
    expect(note).toMatchObject({
      body: 'Checked the warehouse: ships Monday.',
      author: { uuid: agent.userId, email: agent.email },
      conversation: { phoneNumber: phone },
    });
    expect(note.mentions.map((u: { uuid: string }) => u.uuid)).toEqual([agent.userId, owner.userId]); // by name: Alan, Olga
    expect(Buffer.from(note.id, 'base64').toString()).toBe(`Note:${note.uuid}`);

    const after = (await t.graphql(THREAD, { phone }, as(agent))).body.data.conversation;
    expect(after).toEqual(before);
    expect(await countsOf(org)).toEqual({ notes: 1, mentions: 2, conversations: 1 });

    // An integration token writes notes too, without an author.
    expect((await added(org, { phoneNumber: phone, body: 'From the CRM' })).author).toBeNull();
    // node(id:) answers a note.
    const node = await t.graphql(`query($id: ID!) { node(id: $id) { __typename ... on Note { body } } }`, { id: note.id }, as(owner));
    expect(node.body.data.node).toEqual({ __typename: 'Note', body: 'Checked the warehouse: ships Monday.' });
  });

  it('starts a conversation for a contact without one (no message, nothing unread); a number without contact is ContactNotFoundError', async () => {
    const { org, agent } = await workspace('New thread');
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), firstName: 'Cora', isTextable: true });
    const note = await added(agent, { phoneNumber: contact.phoneNumber, body: 'Called her, will text tomorrow' });
    const thread = await t.graphql(
      `query($phone: String!) { conversation(phoneNumber: $phone) { unreadCount lastMessage { uuid } contact { firstName }
        messages(first: 5) { edges { node { uuid } } } notes(first: 5) { edges { node { uuid } } } } }`,
      { phone: contact.phoneNumber },
      as(agent),
    );
    expect(thread.body.data.conversation).toEqual({
      unreadCount: 0,
      lastMessage: null,
      contact: { firstName: 'Cora' },
      messages: { edges: [] },
      notes: { edges: [{ node: { uuid: note.uuid } }] },
    });

    const counts = await countsOf(org);
    const missing = await addNote(agent, { phoneNumber: nextPhone(), body: 'Nobody here' });
    expect(missing.body.data.addNote).toMatchObject({ __typename: 'ContactNotFoundError', code: 'CONTACT_NOT_FOUND' });
    expect(await countsOf(org)).toEqual(counts);
  });

  it('refuses a mention of anyone but a member (MemberNotFoundError) and writes nothing', async () => {
    const { org, owner, agent } = await workspace('Mentions');
    const other = await workspace('Elsewhere');
    const phone = nextPhone();
    await t.addMessage(org, { phoneNumber: phone, direction: 'incoming', body: 'hi' });
    const counts = await countsOf(org);
    for (const mentionUserIds of [
      [owner.userId, other.agent.userId], // a member of another organization
      ['0193a5b0-0000-7000-8000-000000000000'], // nobody
      ['not-an-id'],
      [Buffer.from(`Contact:${owner.userId}`).toString('base64')], // a global id of another type
    ]) {
      const res = await addNote(agent, { phoneNumber: phone, body: 'FYI', mentionUserIds });
      expect(res.body.data.addNote, JSON.stringify(mentionUserIds)).toMatchObject({
        __typename: 'MemberNotFoundError',
        code: 'MEMBER_NOT_FOUND',
      });
    }
    // Refused before the conversation is created, too.
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    const refused = await addNote(agent, { phoneNumber: contact.phoneNumber, body: 'FYI', mentionUserIds: [other.owner.userId] });
    expect(refused.body.data.addNote.__typename).toBe('MemberNotFoundError');
    expect(await countsOf(org)).toEqual(counts);
  });

  it('answers bad input with a typed error and writes nothing', async () => {
    const { org, agent } = await workspace('Bad input');
    const phone = nextPhone();
    await t.addMessage(org, { phoneNumber: phone, direction: 'incoming', body: 'hi' });
    const counts = await countsOf(org);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ phoneNumber: phone, body: '' }, 'BAD_USER_INPUT'],
      [{ phoneNumber: phone, body: ' \n\t ' }, 'BAD_USER_INPUT'],
      [{ phoneNumber: phone, body: 'x'.repeat(5001) }, 'BAD_USER_INPUT'],
      [{ phoneNumber: phone, body: 'a\u0000b' }, 'BAD_USER_INPUT'],
      [{ phoneNumber: 'not a phone', body: 'hello' }, 'BAD_USER_INPUT'],
      [{ phoneNumber: phone, body: 'hello', mentionUserIds: Array.from({ length: 51 }, (_, i) => `id-${i}`) }, 'BAD_USER_INPUT'],
    ];
    for (const [input, code] of cases) {
      const res = await t.graphql(ADD, { input }, as(agent));
      expect(res.status).toBeLessThan(500);
      expect(res.body.errors?.[0]?.extensions?.code, JSON.stringify(input).slice(0, 80)).toBe(code);
    }
    const literal = await t.graphql(
      `mutation { addNote(input: { phoneNumber: "${phone}", body: "a\\u0000b" }) { __typename } }`,
      {},
      as(agent),
    );
    expect(literal.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await countsOf(org)).toEqual(counts);
    // The limit counts characters (code points), so 5,000 emoji fit.
    expect((await added(agent, { phoneNumber: phone, body: '👍'.repeat(5000) })).body).toHaveLength(10_000);
  });
});

describe('what notes never do', () => {
  it('never go out by SMS and never show in the REST messages route', async () => {
    const { org, agent } = await workspace('Never sent');
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    await t.addMessage(org, { phoneNumber: contact.phoneNumber, direction: 'incoming', body: 'Is it in stock?' });
    await added(agent, { phoneNumber: contact.phoneNumber, body: 'Internal: check stock before answering' });
    expect(fake.requests.filter((request) => request.path.endsWith('/Messages.json'))).toHaveLength(0);

    const listed = await rest.call('GET', `/api/conversations/${encodeURIComponent(contact.phoneNumber)}/messages`, { org });
    expect(listed.status).toBe(200);
    expect(JSON.stringify(listed.body)).not.toContain('Internal: check stock');
    expect(listed.body.messages.map((m: { message: string }) => m.message)).toEqual(['Is it in stock?']);

    // A reply in the same thread does reach the provider: the check above could see a send.
    const reply = await t.graphql(
      `mutation($phone: String!) { sendReply(input: { phoneNumber: $phone, message: "Yes, it is" }) { __typename } }`,
      { phone: contact.phoneNumber },
      as(agent),
    );
    expect(reply.body.data.sendReply.__typename).toBe('SendReplyPayload');
    expect(fake.sent.map((m) => m.body)).toEqual(['Yes, it is']);
  });
});

type Edge = { cursor: string; node: { __typename?: string; uuid: string; body: string } };
type Connection = {
  edges: Edge[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
};

async function page(who: TestOrg, query: string, field: 'notes' | 'timeline', variables: Record<string, unknown>): Promise<Connection> {
  const res = await t.graphql(query, variables, as(who));
  expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
  return res.body.data.conversation[field];
}

/** Every item, walking forward with first/after and backward with last/before; both must agree. */
async function walkBothWays(who: TestOrg, query: string, field: 'notes' | 'timeline', phone: string, size: number) {
  const forward: string[] = [];
  let after: string | null = null;
  for (let pages = 0; ; pages += 1) {
    const p: Connection = await page(who, query, field, { phone, first: size, after });
    expect(p.edges.length).toBeLessThanOrEqual(size);
    expect(p.pageInfo.hasPreviousPage).toBe(after !== null);
    forward.push(...p.edges.map((e) => e.node.uuid));
    if (!p.pageInfo.hasNextPage) break;
    after = p.pageInfo.endCursor;
    expect(pages).toBeLessThan(50);
  }
  const backward: string[] = [];
  let before: string | null = null;
  for (let pages = 0; ; pages += 1) {
    const p: Connection = await page(who, query, field, { phone, last: size, before });
    expect(p.pageInfo.hasNextPage).toBe(before !== null);
    backward.unshift(...p.edges.map((e) => e.node.uuid));
    if (!p.pageInfo.hasPreviousPage) break;
    before = p.pageInfo.startCursor;
    expect(pages).toBeLessThan(50);
  }
  return { forward, backward };
}

describe('Conversation.notes and Conversation.timeline', () => {
  it('list notes newest first, paging forward and backward without gaps or duplicates', async () => {
    const { org, agent } = await workspace('Notes list');
    const phone = nextPhone();
    await t.addMessage(org, { phoneNumber: phone, direction: 'incoming', body: 'hi' });
    const written: string[] = [];
    for (let i = 0; i < 7; i += 1) written.push((await added(agent, { phoneNumber: phone, body: `note ${i}` })).uuid);
    const { forward, backward } = await walkBothWays(agent, NOTES, 'notes', phone, 3);
    expect(forward).toEqual([...written].reverse());
    expect(backward).toEqual(forward);
  });

  it('merges messages and notes into one thread, newest first, both ways, one SQL statement a page', async () => {
    const { org, agent } = await workspace('Timeline');
    const phone = nextPhone();
    const other = nextPhone();
    // Interleaved, some in the same millisecond; another thread's items stay out.
    const base = Date.now() - 60_000;
    for (let i = 0; i < 6; i += 1) {
      await t.addMessage(org, {
        phoneNumber: phone,
        direction: i % 2 ? 'outgoing' : 'incoming',
        body: `m${i}`,
        createdAt: new Date(base + i * 1000),
      });
      await added(agent, { phoneNumber: phone, body: `n${i}` });
      await t.addMessage(org, { phoneNumber: other, direction: 'incoming', body: `other ${i}` });
      await added(agent, { phoneNumber: other, body: `other note ${i}` });
    }
    const [conversation] = await t.db
      .select()
      .from(conversations)
      .where(and(eq(conversations.organizationId, org.organizationId), eq(conversations.phoneNumber, phone)));
    const rows = [
      ...(await t.db.select().from(messages).where(eq(messages.conversationId, conversation!.id))),
      ...(await t.db.select().from(notes).where(eq(notes.conversationId, conversation!.id))),
    ];
    const expected = rows.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1)).map((row) => row.id);
    expect(expected).toHaveLength(12);

    for (const size of [1, 5, 12, 50]) {
      const { forward, backward } = await walkBothWays(agent, TIMELINE, 'timeline', phone, size);
      expect(forward, `first: ${size}`).toEqual(expected);
      expect(backward, `last: ${size}`).toEqual(expected);
    }
    const first = await page(agent, TIMELINE, 'timeline', { phone, first: 12 });
    expect(first.edges.filter((e) => e.node.__typename === 'Note').map((e) => e.node.body)).toEqual(['n5', 'n4', 'n3', 'n2', 'n1', 'n0']);
    expect(first.edges.filter((e) => e.node.__typename === 'Message').map((e) => e.node.body)).toEqual([
      'm5',
      'm4',
      'm3',
      'm2',
      'm1',
      'm0',
    ]);

    // A page: the conversation, then the timeline in one statement (UNION ALL of two index walks).
    const stop = t.database.statementLog.record();
    const middle = await page(agent, TIMELINE, 'timeline', { phone, first: 4, after: first.edges[3]!.cursor });
    const statements = stop().filter((statement) => !/api_tokens|memberships/.test(statement));
    expect(middle.edges.map((e) => e.node.uuid)).toEqual(expected.slice(4, 8));
    expect(statements, statements.join('\n')).toHaveLength(2);
    expect(statements.filter((statement) => /union all/i.test(statement))).toHaveLength(1);

    // Cursors belong to their list and their conversation.
    const notesPage = await page(agent, NOTES, 'notes', { phone, first: 1 });
    for (const [query, variables] of [
      [TIMELINE, { phone, first: 2, after: notesPage.edges[0]!.cursor }],
      [NOTES, { phone, first: 2, after: first.edges[0]!.cursor }],
      [TIMELINE, { phone: other, first: 2, after: first.edges[0]!.cursor }],
      [TIMELINE, { phone, last: 2, before: 'garbage' }],
    ] as const) {
      const res = await t.graphql(query, variables, as(agent));
      expect(res.body.errors?.[0]?.extensions, JSON.stringify(variables)).toMatchObject({
        code: 'BAD_USER_INPUT',
        errorCode: 'INVALID_CURSOR',
      });
    }
  });

  it('pages the notes and timelines of a whole inbox page in one statement each, as each thread alone would', async () => {
    const { org, agent } = await workspace('Inbox timelines');
    const phones = [nextPhone(), nextPhone(), nextPhone()];
    for (const [k, phone] of phones.entries()) {
      for (let i = 0; i <= k + 1; i += 1) {
        await t.addMessage(org, { phoneNumber: phone, direction: 'incoming', body: `${phone} m${i}` });
        await added(agent, { phoneNumber: phone, body: `${phone} n${i}` });
      }
    }
    const INBOX = `{ conversations(first: 10) { edges { node { phoneNumber
      timeline(first: 3) { edges { node { ... on Message { uuid } ... on Note { uuid } } } pageInfo { hasNextPage } }
      notes(first: 2) { edges { node { uuid } } pageInfo { hasNextPage } } } } } }`;
    const stop = t.database.statementLog.record();
    const res = await t.graphql(INBOX, {}, as(agent));
    const statements = stop().filter((statement) => !/api_tokens|memberships/.test(statement));
    expect(res.body.errors).toBeUndefined();
    // The inbox page, then one statement for all the timelines and one for all the notes.
    expect(statements, statements.join('\n')).toHaveLength(3);
    expect(statements.filter((statement) => /unnest/.test(statement))).toHaveLength(2);
    for (const edge of res.body.data.conversations.edges) {
      const phone = edge.node.phoneNumber;
      const alone = await t.graphql(
        `query($phone: String!) { conversation(phoneNumber: $phone) {
          timeline(first: 3) { edges { node { ... on Message { uuid } ... on Note { uuid } } } pageInfo { hasNextPage } }
          notes(first: 2) { edges { node { uuid } } pageInfo { hasNextPage } } } }`,
        { phone },
        as(agent),
      );
      expect(edge.node.timeline).toEqual(alone.body.data.conversation.timeline);
      expect(edge.node.notes).toEqual(alone.body.data.conversation.notes);
      expect(edge.node.timeline.edges).toHaveLength(3);
    }
  });

  it('reads a page of 50 notes with authors and mentions in a fixed number of statements', async () => {
    const { org, owner, agent } = await workspace('No N+1');
    const third = await t.addMember(org, { email: `third.${seq}@notes.example.com`, name: 'Tess Third', role: 'agent' });
    const phone = nextPhone();
    await t.addMessage(org, { phoneNumber: phone, direction: 'incoming', body: 'hi' });
    const writers = [owner, agent, third, org];
    const QUERY = `query($phone: String!, $first: Int) { conversation(phoneNumber: $phone) { notes(first: $first) {
      edges { node { body createdAt author { email name } mentions { email } } } } } }`;
    const statementsFor = async (first: number) => {
      const stop = t.database.statementLog.record();
      const res = await t.graphql(QUERY, { phone, first }, as(agent));
      const statements = stop().filter((statement) => !/api_tokens|memberships" where "memberships"."user_id"/.test(statement));
      expect(res.body.errors).toBeUndefined();
      return { statements, edges: res.body.data.conversation.notes.edges as Array<{ node: { author: unknown; mentions: unknown[] } }> };
    };
    for (let i = 0; i < 50; i += 1) {
      const mentioned = [owner, agent, third].filter((_, k) => (i + k) % 2 === 0).map((m) => m.userId);
      await added(writers[i % 4]!, { phoneNumber: phone, body: `note ${i}`, mentionUserIds: mentioned });
    }
    const small = await statementsFor(2);
    const large = await statementsFor(50);
    expect(large.edges).toHaveLength(50);
    expect(large.edges.filter((e) => e.node.author === null)).toHaveLength(12); // the integration token's
    expect(large.edges.every((e) => e.node.mentions.length >= 1)).toBe(true);
    // The conversation, the page, the mentions (with their members), the authors.
    expect(large.statements.length, large.statements.join('\n')).toBe(4);
    expect(small.statements.length).toBe(large.statements.length);
  });
});

describe('Viewer.mentions', () => {
  const MENTIONS = `query($first: Int, $after: String, $last: Int, $before: String) { viewer { mentions(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { uuid body author { email } conversation { phoneNumber } } } pageInfo { hasNextPage hasPreviousPage endCursor startCursor } } } }`;
  const mentionsOf = async (who: TestOrg | { headers: Record<string, string> }, variables: Record<string, unknown> = { first: 50 }) => {
    const res = await t.graphql(MENTIONS, variables, 'headers' in who ? who : as(who));
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    return res.body.data.viewer.mentions as Connection;
  };

  it("lists the notes that mention the viewer, newest first, across the organization's threads; none for an integration token", async () => {
    const { org, owner, agent } = await workspace('Mentioned');
    const [a, b] = [nextPhone(), nextPhone()];
    await t.addMessage(org, { phoneNumber: a, direction: 'incoming', body: 'hi' });
    await t.addMessage(org, { phoneNumber: b, direction: 'incoming', body: 'hello' });
    const one = await added(owner, { phoneNumber: a, body: 'one', mentionUserIds: [agent.userId] });
    await added(owner, { phoneNumber: a, body: 'not for the agent', mentionUserIds: [owner.userId] });
    const two = await added(org, { phoneNumber: b, body: 'two', mentionUserIds: [agent.userId, owner.userId] });
    const three = await added(owner, { phoneNumber: a, body: 'three', mentionUserIds: [userId(agent.userId)] });
    await added(owner, { phoneNumber: b, body: 'no mentions' });

    const all = await mentionsOf(agent);
    expect(all.edges.map((e) => e.node.body)).toEqual(['three', 'two', 'one']);
    expect(all.edges.map((e: any) => e.node.conversation.phoneNumber)).toEqual([a, b, a]);
    expect((await mentionsOf(owner)).edges.map((e) => e.node.body)).toEqual(['two', 'not for the agent']);

    const firstPage = await mentionsOf(agent, { first: 2 });
    expect(firstPage.edges.map((e) => e.node.uuid)).toEqual([three.uuid, two.uuid]);
    expect(firstPage.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    const secondPage = await mentionsOf(agent, { first: 2, after: firstPage.pageInfo.endCursor });
    expect(secondPage.edges.map((e) => e.node.uuid)).toEqual([one.uuid]);
    expect(secondPage.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    const back = await mentionsOf(agent, { last: 2, before: secondPage.pageInfo.startCursor });
    expect(back.edges.map((e) => e.node.uuid)).toEqual([three.uuid, two.uuid]);

    // Someone else's cursor is not a cursor of this list.
    const foreign = await t.graphql(MENTIONS, { first: 2, after: (await mentionsOf(owner)).edges[0]!.cursor }, as(agent));
    expect(foreign.body.errors?.[0]?.extensions?.errorCode).toBe('INVALID_CURSOR');
    // An integration token is no person: nobody mentions it.
    expect((await mentionsOf(org)).edges).toEqual([]);
  });
});

describe('organization scoping', () => {
  it('another organization can neither see nor add notes, nor mention its members', async () => {
    const a = await workspace('Scope A');
    const b = await workspace('Scope B');
    const phone = nextPhone();
    await t.addMessage(a.org, { phoneNumber: phone, direction: 'incoming', body: 'hi' });
    const note = await added(a.agent, { phoneNumber: phone, body: 'A only', mentionUserIds: [a.owner.userId] });
    const countsA = await countsOf(a.org);

    // B has no contact or conversation with that number: nothing is created, in either organization.
    const fromB = await addNote(b.agent, { phoneNumber: phone, body: 'B writing into A' });
    expect(fromB.body.data.addNote.__typename).toBe('ContactNotFoundError');
    // B mentioning A's member, in a thread of its own.
    await t.addMessage(b.org, { phoneNumber: phone, direction: 'incoming', body: 'hi B' });
    const mentionA = await addNote(b.agent, { phoneNumber: phone, body: 'hey', mentionUserIds: [a.owner.userId] });
    expect(mentionA.body.data.addNote.__typename).toBe('MemberNotFoundError');
    expect(await countsOf(a.org)).toEqual(countsA);
    expect((await countsOf(b.org)).notes).toBe(0);

    const node = await t.graphql(`query($id: ID!) { node(id: $id) { __typename } }`, { id: note.id }, as(b.agent));
    expect(node.body.data.node).toBeNull();
    expect((await page(b.agent, NOTES, 'notes', { phone, first: 10 })).edges).toEqual([]);
    expect((await page(b.agent, TIMELINE, 'timeline', { phone, first: 10 })).edges.map((e) => e.node.body)).toEqual(['hi B']);

    // Someone in both organizations sees A's mentions only when acting in A.
    const both = await t.addMember(b.org, { email: a.owner.email, role: 'agent' }, { anyOrganization: true });
    const inA = { headers: { authorization: `Bearer ${both.apiToken}`, 'x-organization-id': a.org.organizationId } };
    const inB = { headers: { authorization: `Bearer ${both.apiToken}`, 'x-organization-id': b.org.organizationId } };
    const MINE = `{ viewer { mentions(first: 10) { edges { node { body } } } } }`;
    expect((await t.graphql(MINE, {}, inA)).body.data.viewer.mentions.edges).toEqual([{ node: { body: 'A only' } }]);
    expect((await t.graphql(MINE, {}, inB)).body.data.viewer.mentions.edges).toEqual([]);
  });
});

describe('noteAdded', () => {
  it('delivers notes over graphql-ws to subscribers of the organization, or of one conversation, and nobody else', async () => {
    const { org, owner, agent } = await workspace('Live');
    const outsider = await workspace('Live elsewhere');
    const [a, b] = [nextPhone(), nextPhone()];
    await t.addMessage(org, { phoneNumber: a, direction: 'incoming', body: 'hi' });
    await t.addMessage(org, { phoneNumber: b, direction: 'incoming', body: 'hi' });
    await t.addMessage(outsider.org, { phoneNumber: a, direction: 'incoming', body: 'hi' });

    const NOTE_ADDED = `subscription($phone: String) { noteAdded(phoneNumber: $phone) {
      body author { email } mentions { email } conversation { phoneNumber } } }`;
    const sockets = [connectWs(t.url, agent), connectWs(t.url, owner), connectWs(t.url, outsider.agent)];
    const everything = subscribeWs(sockets[0]!, NOTE_ADDED);
    const onlyB = subscribeWs(sockets[1]!, NOTE_ADDED, { phone: b });
    const elsewhere = subscribeWs(sockets[2]!, NOTE_ADDED);
    await until(() => t.deps.events.subscriberCount('noteAdded', org.organizationId) >= 2, 10_000, 'subscribers');
    await until(() => t.deps.events.subscriberCount('noteAdded', outsider.org.organizationId) >= 1, 10_000, 'outsider subscriber');

    await added(agent, { phoneNumber: a, body: 'on A', mentionUserIds: [owner.userId] });
    await added(org, { phoneNumber: b, body: 'on B' });
    const received = await everything.waitFor(2);
    expect(received.map((d) => d.noteAdded)).toEqual([
      { body: 'on A', author: { email: agent.email }, mentions: [{ email: owner.email }], conversation: { phoneNumber: a } },
      { body: 'on B', author: null, mentions: [], conversation: { phoneNumber: b } },
    ]);
    expect((await onlyB.waitFor(1)).map((d) => d.noteAdded.body)).toEqual(['on B']);

    // The outsider's own note reaches the outsider alone.
    await added(outsider.agent, { phoneNumber: a, body: 'outsider' });
    expect((await elsewhere.waitFor(1)).map((d) => d.noteAdded.body)).toEqual(['outsider']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(everything.data).toHaveLength(2);
    expect(onlyB.data).toHaveLength(1);
    expect(elsewhere.data).toHaveLength(1);

    for (const subscription of [everything, onlyB, elsewhere]) subscription.unsubscribe();
    await Promise.all(sockets.map((socket) => socket.client.dispose()));
  });
});
