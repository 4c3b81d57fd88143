import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// The fast path (src/http/graphql-fast-path.ts) answers POSTed queries Yoga accepted before. Whatever it
// answers must be byte for byte what Yoga answers: every case here sends the same request twice (the
// first through Yoga, the second through the fast path or its fallback) and compares the two answers.

let t: TestApp;
let acme: TestOrg;
let rival: TestOrg;

const THREAD = `query Thread($phoneNumber: String!, $first: Int, $after: String) {
  conversation(phoneNumber: $phoneNumber) {
    id phoneNumber
    messages(first: $first, after: $after) {
      edges { cursor node { id direction body mediaUrls status sentiment segments createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

const INBOX = `{ conversations(first: 20) { edges { cursor node { id phoneNumber unreadCount lastMessageAt
  contact { id firstName lastName } lastMessage { id direction body createdAt }
  messages(first: 5) { edges { node { id direction body status createdAt } } } } } pageInfo { hasNextPage endCursor } } }`;

type Answer = { status: number; headers: Record<string, string>; body: string };

async function post(body: unknown, headers: Record<string, string> = {}, org: TestOrg | null = acme): Promise<Answer> {
  const auth: Record<string, string> = org ? { authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId } : {};
  const response = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const seen: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'date' && name !== 'x-request-id' && name !== 'keep-alive' && name !== 'connection') seen[name] = value;
  });
  return { status: response.status, headers: seen, body: await response.text() };
}

/** Sends the request twice (Yoga first, then the fast path) and expects the same answer; returns it. */
async function twice(body: unknown, headers: Record<string, string> = {}, org: TestOrg | null = acme) {
  const first = await post(body, headers, org);
  const served = t.app.graphql.fastPath.served;
  const second = await post(body, headers, org);
  expect(second).toEqual(first);
  return { answer: second, fast: t.app.graphql.fastPath.served > served };
}

beforeAll(async () => {
  // THREAD costs 4 + 14 x first: 200 and 150 are over, 50 is well under; the inbox costs about 1,100.
  t = await createTestApp({ GRAPHQL_MAX_COST: '2000' });
  acme = await t.createOrg('Acme');
  rival = await t.createOrg('Rival');
  await t.createContact(acme, { phoneNumber: '+19195551234', firstName: 'Jane', lastName: 'Smith', isTextable: true });
  for (let i = 0; i < 8; i += 1) {
    await t.addMessage(acme, {
      phoneNumber: '+19195551234',
      direction: i % 2 ? 'outgoing' : 'incoming',
      body: `message ${i} ✓`,
      status: i % 2 ? 'delivered' : null,
      createdAt: new Date(Date.UTC(2026, 2, 1, 12, i)),
    });
  }
  await t.addMessage(acme, {
    phoneNumber: '+14155550004',
    direction: 'incoming',
    body: 'Who is "this"? \\ 😀 \ud83d tab\there\nline',
    mediaUrls: ['https://example.com/a.jpg'],
  });
  await t.addMessage(rival, { phoneNumber: '+19195551234', direction: 'incoming', body: 'rival secret' });
});
afterAll(() => t.close());

describe('GraphQL fast path', () => {
  it('answers a repeated query itself, exactly as Yoga did', async () => {
    const thread = await twice({ query: THREAD, variables: { phoneNumber: '(919) 555-1234', first: 3 } });
    expect(thread.fast).toBe(true);
    expect(thread.answer.status).toBe(200);
    expect(thread.answer.headers['content-type']).toBe('application/json; charset=utf-8');
    const data = JSON.parse(thread.answer.body).data;
    expect(data.conversation.messages.edges.map((e: any) => e.node.body)).toEqual(['message 7 ✓', 'message 6 ✓', 'message 5 ✓']);

    // Escapes, emoji, media lists and nulls serialize exactly as Yoga serializes them.
    const odd = await twice({ query: THREAD, variables: { phoneNumber: '+14155550004', first: 3 } });
    expect(odd.fast).toBe(true);
    expect(JSON.parse(odd.answer.body).data.conversation.messages.edges[0].node).toMatchObject({
      mediaUrls: ['https://example.com/a.jpg'],
      status: null,
    });

    const inbox = await twice({ query: INBOX });
    expect(inbox.fast).toBe(true);
    expect(JSON.parse(inbox.answer.body).data.conversations.edges).toHaveLength(2);
  });

  it('follows Accept and CORS like Yoga', async () => {
    const body = { query: THREAD, variables: { phoneNumber: '+19195551234', first: 2 } };
    for (const accept of [
      'application/graphql-response+json',
      'application/json, application/graphql-response+json',
      '*/*',
      'application/json;q=0.9',
    ]) {
      const { answer, fast } = await twice(body, { accept });
      expect(fast).toBe(true);
      expect(answer.status).toBe(200);
    }
    const cors = await twice(body, { origin: 'https://app.example.com' });
    expect(cors.fast).toBe(true);
    expect(cors.answer.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(cors.answer.headers['access-control-expose-headers']).toBe('x-request-id, retry-after');
    // Event streams and multipart stay with Yoga.
    const stream = await post(body, { accept: 'text/event-stream' });
    expect(stream.headers['content-type']).toContain('text/event-stream');
  });

  it('leaves every error to Yoga: auth, bad cursors, bad variables, cost, NUL, unknown parameters', async () => {
    const body = { query: THREAD, variables: { phoneNumber: '+19195551234', first: 2 } };
    await twice(body); // accepted and compiled
    const served = t.app.graphql.fastPath.served;

    const unauthenticated = await twice(body, {}, null);
    expect(unauthenticated.answer.status).toBe(401);
    const forbidden = await twice(body, { 'x-organization-id': rival.organizationId });
    expect(forbidden.answer.status).toBe(403);
    const badCursor = await twice({ query: THREAD, variables: { phoneNumber: '+19195551234', after: 'bm9wZQ' } });
    expect(JSON.parse(badCursor.answer.body).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    const badVariable = await twice({ query: THREAD, variables: { phoneNumber: 5, first: 'x' } });
    expect(JSON.parse(badVariable.answer.body).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    const tooBig = await twice({ query: THREAD, variables: { phoneNumber: '+19195551234', first: 200 } });
    expect(JSON.parse(tooBig.answer.body).errors[0].extensions.code).toBe('QUERY_TOO_COMPLEX');
    const nul = await twice({ query: THREAD, variables: { phoneNumber: '+1919555\u00001234' } });
    expect(JSON.parse(nul.answer.body).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    const unknownKey = await twice({ ...body, extra: 1 });
    expect(unknownKey.answer.status).toBe(400);
    const malformed = await twice('{"query": ');
    expect(malformed.answer.status).toBe(400);
    expect(t.app.graphql.fastPath.served).toBe(served);

    // The cost is cached per page size, never across them.
    expect((await twice({ query: THREAD, variables: { phoneNumber: '+19195551234', first: 1 } })).fast).toBe(true);
    expect(
      JSON.parse((await post({ query: THREAD, variables: { phoneNumber: '+19195551234', first: 150 } })).body).errors[0].extensions.code,
    ).toBe('QUERY_TOO_COMPLEX');
  });

  it('tells an omitted variable (its default) from null when it weighs the cost', async () => {
    const query = `query Pages($n: Int = 2) { conversations(first: $n) { edges { node { messages { edges { node { id body } } } } } } }`;
    expect((await twice({ query })).fast).toBe(true);
    // null is no default: the page size is the resolver's 50, and 50 conversations of 50 messages cost too much.
    const refused = await post({ query, variables: { n: null } });
    expect(JSON.parse(refused.body).errors[0].extensions.code).toBe('QUERY_TOO_COMPLEX');
  });

  it('keeps tenants apart and never serves first-seen documents', async () => {
    const body = { query: THREAD, variables: { phoneNumber: '+19195551234', first: 5 } };
    const ours = await twice(body);
    const theirs = await twice(body, {}, rival);
    expect(theirs.fast).toBe(true);
    expect(JSON.parse(theirs.answer.body).data.conversation.messages.edges.map((e: any) => e.node.body)).toEqual(['rival secret']);
    expect(theirs.answer.body).not.toEqual(ours.answer.body);

    const served = t.app.graphql.fastPath.served;
    await post({ query: '{ organization { name } }' });
    expect(t.app.graphql.fastPath.served).toBe(served);
    const star = { query: 'mutation { setConversationStarred(phoneNumber: "+19195551234", starred: true) { isStarred } }' };
    // A repeated mutation is served too, run once (tests/graphql-fast-mutation.test.ts).
    await twice(star);
    expect(t.app.graphql.fastPath.served).toBe(served + 1);
  });

  it('keeps x-request-id and the rate limit', async () => {
    const body = { query: INBOX };
    await twice(body);
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${acme.apiToken}`, 'x-request-id': 'fast-123' },
      body: JSON.stringify(body),
    });
    expect(response.headers.get('x-request-id')).toBe('fast-123');

    const limited = await createTestApp({ RATE_LIMIT_PER_MINUTE: '3' });
    try {
      const org = await limited.createOrg('Limited');
      const send = () =>
        fetch(`${limited.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}` },
          body: JSON.stringify(body),
        });
      const statuses = [];
      for (let i = 0; i < 4; i += 1) statuses.push((await send()).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      expect(limited.app.graphql.fastPath.served).toBe(2);
    } finally {
      await limited.close();
    }
  });
});
