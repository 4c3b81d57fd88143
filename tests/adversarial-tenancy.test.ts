import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint, phoneFormats, textOf } from './helpers/adversarial.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { connectWs, inboundForm, postTwilio, subscribeSse, subscribeWs, until } from './helpers/realtime.js';

// Cross-tenant attacks, generated: organization B uses every identifier organization A has (global
// ids, raw uuids, phone numbers in any format, cursors, names and words to search for, its sending
// number's id, short link codes) in every operation it can run, over GraphQL, REST and subscriptions.
// A's data never comes back (every A message carries a marker that must never appear) and never changes.

let t: TestApp;
let a: TestOrg;
let b: TestOrg;
const A_NUMBER = '+19195550100';
const B_NUMBER = '+19195550200';
const A_ONLY = ['+12125553000', '+12125553001', '+12125553002', '+12125553003'];
const SHARED = '+12125559999';
const B_ONLY = '+12125554000';
const MARKER = 'ZQXA'; // in every text A owns; never in anything B owns

type AIds = { ids: string[]; uuids: string[]; conversationCursors: string[]; messageCursors: string[]; names: string[]; phoneNumberIds: string[]; shortCodes: string[] };
let aIds: AIds;
let aBefore: Record<string, string>;

const asB = (query: string, variables: Record<string, unknown> = {}) => t.graphql(query, variables, b);
const asA = (query: string, variables: Record<string, unknown> = {}) => t.graphql(query, variables, a);
const restAsB = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${b.apiToken}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
};

/** Nothing A owns in the answer (an error may echo the number B itself sent); and never a 500. */
function expectNoLeak(answer: { status: number; body?: unknown; text?: string }, context: unknown) {
  const text = answer.text ?? textOf(answer.body);
  const sent = (() => {
    try {
      return decodeURIComponent(textOf(context));
    } catch {
      return textOf(context);
    }
  })().replace(/\D/g, '');
  expect(answer.status, JSON.stringify(context)).toBeLessThan(500);
  expect(text, JSON.stringify(context)).not.toContain(MARKER);
  for (const phone of A_ONLY) if (!sent.includes(phone.slice(2))) expect(text, JSON.stringify(context)).not.toContain(phone);
}

beforeAll(async () => {
  // Simulated deliveries far in the future: A's data must change only by what the tests do.
  t = await createTestApp({ RATE_LIMIT_PER_MINUTE: '0', SIMULATED_STATUS_DELAY_MS: '3600000', TWILIO_AUTH_TOKEN: 'tenancy-token-000000000000', PUBLIC_BASE_URL: 'https://gateway.example.com' });
  a = await t.createOrg(`Victim ${MARKER}`, { credits: 100, phoneNumber: A_NUMBER });
  b = await t.createOrg('Attacker', { credits: 100, phoneNumber: B_NUMBER });
  for (const [i, phone] of [...A_ONLY, SHARED].entries()) {
    await t.createContact(a, { phoneNumber: phone, firstName: `Victoria${MARKER}`, lastName: `Secretname${i}`, isTextable: true });
    for (let m = 0; m < 4; m += 1) {
      await t.addMessage(a, { phoneNumber: phone, direction: m % 2 ? 'outgoing' : 'incoming', body: `${MARKER} private note ${i}.${m} about invoices`, createdAt: new Date(Date.UTC(2025, 2, 1 + i, 10, m)) });
    }
  }
  // A reply with a link: A gets a short link code.
  const sent = await asA(`mutation { sendReply(input: { phoneNumber: "${A_ONLY[0]}", message: "${MARKER} see https://example.com/${MARKER}/invoice" }) { __typename ... on SendReplyPayload { message { links { shortUrl } } } } }`);
  expect(sent.body.data.sendReply.__typename).toBe('SendReplyPayload');
  await t.createContact(b, { phoneNumber: SHARED, firstName: 'Bob', lastName: 'Shared', isTextable: true });
  await t.createContact(b, { phoneNumber: B_ONLY, firstName: 'Bea', lastName: 'Own', isTextable: true });
  for (const phone of [SHARED, B_ONLY]) await t.addMessage(b, { phoneNumber: phone, direction: 'incoming', body: 'hello from B', createdAt: new Date(Date.UTC(2025, 2, 10)) });

  // Everything A's own API hands out.
  const inventory = await asA(`{
    organization { id phoneNumbers { id uuid } }
    conversations(first: 50) { edges { cursor node { id phoneNumber contact { id uuid firstName lastName }
      messages(first: 10) { edges { cursor node { id uuid body links { shortUrl } } } } } } }
  }`);
  const data = inventory.body.data;
  const conversations = data.conversations.edges;
  const messages = conversations.flatMap((c: any) => c.node.messages.edges);
  aIds = {
    ids: [data.organization.id, ...data.organization.phoneNumbers.map((p: any) => p.id), ...conversations.map((c: any) => c.node.id), ...conversations.map((c: any) => c.node.contact.id), ...messages.map((m: any) => m.node.id)],
    uuids: [...data.organization.phoneNumbers.map((p: any) => p.uuid), ...conversations.map((c: any) => c.node.contact.uuid), ...messages.map((m: any) => m.node.uuid)],
    conversationCursors: conversations.map((c: any) => c.cursor),
    messageCursors: messages.map((m: any) => m.cursor),
    names: [`Victoria${MARKER}`, 'Secretname1', 'secretname', 'invoices', MARKER, '3001', '212555300', '(212) 555-3002'],
    phoneNumberIds: [...data.organization.phoneNumbers.map((p: any) => p.id), ...data.organization.phoneNumbers.map((p: any) => p.uuid)],
    shortCodes: messages.flatMap((m: any) => m.node.links.map((l: any) => l.shortUrl.split('/').pop())),
  };
  expect(aIds.shortCodes.length).toBeGreaterThan(0);
  aBefore = await fingerprint(t.db, a.organizationId);
}, 60_000);
afterAll(() => t?.close());

const aPhone = () => fc.tuple(fc.constantFrom(...A_ONLY), fc.constantFrom(...phoneFormats)).map(([phone, format]) => format(phone));
const anyPhone = () => fc.tuple(fc.constantFrom(...A_ONLY, SHARED), fc.constantFrom(...phoneFormats)).map(([phone, format]) => format(phone));
// Ids as A's API gives them, and re-encoded as other types (a message uuid presented as a Conversation, ...).
const anyId = () =>
  fc.oneof(
    fc.constantFrom(...aIds.ids, ...aIds.uuids),
    fc.tuple(fc.constantFrom('Conversation', 'Message', 'Contact', 'PhoneNumber', 'Organization'), fc.constantFrom(...aIds.uuids)).map(([type, uuid]) =>
      Buffer.from(`${type}:${uuid}`).toString('base64'),
    ),
  );

describe('GraphQL reads with A identifiers return nothing of A', () => {
  it('node(id:), conversation(phoneNumber:), search, and cursors', async () => {
    const operation = fc.oneof(
      anyId().map((id) => ({ query: `query($v: ID!) { node(id: $v) { id ... on Conversation { phoneNumber messages(first: 5) { edges { node { body } } } } ... on Message { body } ... on Contact { firstName lastName } ... on PhoneNumber { phoneNumber } } }`, v: id })),
      anyPhone().map((phone) => ({ query: `query($v: String!) { conversation(phoneNumber: $v) { phoneNumber contact { firstName lastName } lastMessage { body } messages(first: 20) { edges { node { body } } } } }`, v: phone })),
      fc.constantFrom(...aIds.names).map((term) => ({ query: `query($v: String) { conversations(first: 50, filter: { search: $v, includeArchived: true }) { edges { node { phoneNumber contact { firstName } lastMessage { body } } } } }`, v: term })),
      fc.constantFrom(...aIds.conversationCursors).map((cursor) => ({ query: `query($v: String) { conversations(first: 50, after: $v) { edges { node { phoneNumber lastMessage { body } } } } }`, v: cursor })),
      fc.constantFrom(...aIds.messageCursors).map((cursor) => ({ query: `query($v: String) { conversation(phoneNumber: "${SHARED}") { messages(first: 50, after: $v) { edges { node { body } } } } }`, v: cursor })),
      fc.constantFrom(...aIds.messageCursors).map((cursor) => ({ query: `query($v: String) { conversation(phoneNumber: "${SHARED}") { messages(last: 50, before: $v) { edges { node { body } } } } }`, v: cursor })),
    );
    await fc.assert(
      fc.asyncProperty(operation, async ({ query, v }) => {
        const res = await asB(query, { v });
        expectNoLeak(res, { query, v });
        if (query.includes('node(id')) expect(res.body.data?.node ?? null).toBeNull();
        if (query.includes('after: $v') || query.includes('before: $v')) expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      }),
      { numRuns: 80 },
    );
    // The shared number is B's own conversation, with B's messages only.
    const shared = await asB(`{ conversation(phoneNumber: "${SHARED}") { contact { firstName } messages(first: 50) { edges { node { body } } } } }`);
    expect(shared.body.data.conversation.contact.firstName).toBe('Bob');
    expect(shared.body.data.conversation.messages.edges.map((e: any) => e.node.body)).toEqual(['hello from B']);
    expect(await fingerprint(t.db, a.organizationId)).toEqual(aBefore);
  });
});

describe('GraphQL mutations aimed at A change nothing of A', () => {
  it('read/star/archive, contact updates, replies to A numbers or from A sending numbers', async () => {
    const operation = fc.oneof(
      aPhone().map((v) => ({ query: `mutation($v: String!) { markConversationRead(phoneNumber: $v) { phoneNumber unreadCount } }`, v })),
      fc.tuple(aPhone(), fc.boolean()).map(([v, flag]) => ({ query: `mutation($v: String!) { setConversationStarred(phoneNumber: $v, starred: ${flag}) { isStarred } }`, v })),
      fc.tuple(aPhone(), fc.boolean()).map(([v, flag]) => ({ query: `mutation($v: String!) { setConversationArchived(phoneNumber: $v, archived: ${flag}) { isArchived } }`, v })),
      anyId().map((v) => ({ query: `mutation($v: ID) { updateContact(input: { id: $v, firstName: "pwned", isOptedIn: false }) { __typename ... on UpdateContactPayload { contact { firstName } } } }`, v })),
      aPhone().map((v) => ({ query: `mutation($v: String) { updateContact(input: { phoneNumber: $v, lastName: "pwned" }) { __typename ... on UpdateContactPayload { contact { phoneNumber } } } }`, v })),
      aPhone().map((v) => ({ query: `mutation($v: String!) { sendReply(input: { phoneNumber: $v, message: "hi" }) { __typename ... on Error { code } } }`, v })),
      fc.constantFrom(...aIds.phoneNumberIds).map((v) => ({ query: `mutation($v: ID) { sendReply(input: { phoneNumber: "${B_ONLY}", message: "spoofed", fromPhoneNumberId: $v }) { __typename ... on Error { code } } }`, v })),
      fc.constantFrom(...aIds.phoneNumberIds).map((v) => ({ query: `query($v: ID) { previewReply(input: { phoneNumber: "${B_ONLY}", message: "x", fromPhoneNumberId: $v }) { error { code } } }`, v })),
    );
    await fc.assert(
      fc.asyncProperty(operation, async ({ query, v }) => {
        const res = await asB(query, { v });
        expectNoLeak(res, { query, v });
        const result = res.body.data && Object.values(res.body.data)[0];
        if (query.includes('sendReply') || query.includes('previewReply')) {
          expect(['CONTACT_NOT_FOUND', 'FROM_NUMBER_FORBIDDEN']).toContain((result as any)?.code ?? (result as any)?.error?.code);
        } else if (query.includes('updateContact')) {
          expect(res.body.errors?.[0]?.extensions?.code ?? (result as any)?.__typename).toMatch(/BAD_USER_INPUT|ContactNotFoundError/);
        } else {
          expect(res.body.errors?.[0]?.extensions?.errorCode ?? res.body.errors?.[0]?.extensions?.code).toMatch(/NOT_FOUND/);
        }
      }),
      { numRuns: 80 },
    );
    expect(await fingerprint(t.db, a.organizationId)).toEqual(aBefore);
  });
});

describe('REST with A identifiers', () => {
  it('lists, pages, cursors, replies and the organization header', async () => {
    const request = fc.oneof(
      fc.constantFrom(...aIds.names).map((term) => ['GET', `/api/conversations?search=${encodeURIComponent(term)}&includeArchived=true`] as const),
      aPhone().map((phone) => ['GET', `/api/conversations/${encodeURIComponent(phone)}/messages?limit=200`] as const),
      fc.constantFrom(...aIds.messageCursors).map((cursor) => ['GET', `/api/conversations/${encodeURIComponent(SHARED)}/messages?cursor=${encodeURIComponent(cursor)}`] as const),
      aPhone().map((phone) => ['POST', `/api/conversations/${encodeURIComponent(phone)}/reply`, { message: 'hi' }] as const),
      fc.constantFrom(...aIds.phoneNumberIds).map((id) => ['POST', `/api/conversations/${encodeURIComponent(B_ONLY)}/reply`, { message: 'spoofed', fromPhoneNumberId: id }] as const),
      fc.constantFrom('/api/conversations', `/api/conversations/${encodeURIComponent(A_ONLY[1]!)}/messages`).map((path) => ['GET', path, undefined, { 'x-organization-id': a.organizationId }] as const),
    );
    await fc.assert(
      fc.asyncProperty(request, async ([method, path, body, headers]) => {
        const res = await restAsB(method, path, body, headers as Record<string, string> | undefined);
        expectNoLeak(res, { method, path, body });
        if (headers) expect(res.status).toBe(403);
        if (path.includes('cursor=')) expect(JSON.parse(res.text)).toMatchObject({ code: 'INVALID_CURSOR' });
        // A global id where REST expects a raw uuid is malformed input; a raw uuid of A's number is forbidden.
        if (method === 'POST') expect(JSON.parse(res.text).code).toMatch(/CONTACT_NOT_FOUND|FROM_NUMBER_FORBIDDEN|INVALID_BODY|INVALID_PARAMETER/);
      }),
      { numRuns: 60 },
    );
    expect(await fingerprint(t.db, a.organizationId)).toEqual(aBefore);
  });
});

describe('subscriptions and short links', () => {
  it("B's subscriptions, filtered by A numbers or resumed from A cursors, never see A's events", async () => {
    const ws = connectWs(t.url, b);
    try {
      const subs = [
        subscribeWs(ws, `subscription { messageReceived { body conversation { phoneNumber } } }`),
        subscribeWs(ws, `subscription($p: String) { messageReceived(phoneNumber: $p) { body } }`, { p: SHARED }),
        subscribeWs(ws, `subscription { conversationUpdated { phoneNumber lastMessage { body } } }`),
        subscribeWs(ws, `subscription { messageStatusChanged { body status } }`),
      ];
      const sse = await subscribeSse(t.url, b, `subscription($p: String) { messageReceived(phoneNumber: $p) { body } }`, { p: A_ONLY[2] });
      // Resuming from A's cursor: refused, nothing replayed.
      const resumed = subscribeWs(ws, `subscription($c: String) { messageReceived(after: $c) { body } }`, { c: aIds.messageCursors[0] });
      const refusal = await resumed.waitForError();
      expect(refusal.extensions?.code ?? (refusal as any).message).toBeTruthy();
      expect(resumed.data).toEqual([]);
      await until(() => t.deps.events.subscriberCount('messageReceived', b.organizationId) >= 2, 5_000, "B's subscriptions");

      // A's traffic: inbound from A-only and shared numbers, a status update of A's reply.
      const post = (from: string, body: string, to = A_NUMBER) =>
        postTwilio(t.url, '/webhooks/twilio/messages', inboundForm(to, from, body), { authToken: 'tenancy-token-000000000000', publicBaseUrl: 'https://gateway.example.com' });
      for (const from of [A_ONLY[0]!, SHARED]) expect((await post(from, `${MARKER} inbound for A`)).status).toBe(200);
      await asA(`mutation { setConversationStarred(phoneNumber: "${SHARED}", starred: true) { isStarred } }`);
      // Then B's own traffic, which must arrive: proof the subscriptions were live all along.
      expect((await post(SHARED, 'inbound for B', B_NUMBER)).status).toBe(200);
      await subs[1]!.waitFor(1);
      await subs[0]!.waitFor(1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (const sub of [...subs, sse]) expectNoLeak({ status: 200, body: sub.data }, 'subscription');
      expect(subs[0]!.data.map((d: any) => d.messageReceived.body)).toEqual(['inbound for B']);
      expect(sse.data).toEqual([]);
      await sse.close();
    } finally {
      await ws.client.dispose();
    }
  });

  it("B never reaches A's short links through the API; the public redirect only counts clicks", async () => {
    const mine = await asB(`{ conversations(first: 50) { edges { node { messages(first: 50) { edges { node { links { shortUrl } } } } } } } }`);
    expect(textOf(mine.body)).not.toMatch(new RegExp(aIds.shortCodes.join('|')));
    for (const code of aIds.shortCodes) {
      const res = await fetch(`${t.url}/l/${code}`, { redirect: 'manual', headers: { authorization: `Bearer ${b.apiToken}` } });
      expect(res.status).toBe(302); // a public link in a text message, the same for everyone
      expect(await res.text()).not.toContain(MARKER);
    }
  });
});

describe('users and memberships of A stay out of B\'s reach', () => {
  it("B's members reach no user, token, membership or audit event of A, and A's members reach nothing of B", async () => {
    const aOwner = await t.addMember(a, { email: `owner.${MARKER.toLowerCase()}@victim.example.com`, name: `Vera${MARKER}`, role: 'owner' });
    const aAgent = await t.addMember(a, { email: `agent.${MARKER.toLowerCase()}@victim.example.com`, name: `Vic${MARKER}`, role: 'agent' }, { anyOrganization: true });
    const aToken = await asA(`mutation { createApiToken(input: { name: "${MARKER} crm" }) { apiToken { uuid } } }`);
    await t.graphql(`mutation { setConversationStatus(phoneNumber: "${A_ONLY[1]}", status: RESOLVED) { status } }`, {}, { headers: { authorization: `Bearer ${aOwner.apiToken}`, 'x-organization-id': a.organizationId } });
    const audit = await t.graphql(`{ organization { auditEvents(first: 1) { pageInfo { endCursor } } } }`, {}, { headers: { authorization: `Bearer ${aOwner.apiToken}`, 'x-organization-id': a.organizationId } });
    const aAuditCursor: string = audit.body.data.organization.auditEvents.pageInfo.endCursor;
    const bAdmin = await t.addMember(b, { email: 'admin@attacker.example.com', role: 'admin' });
    const asBAdmin = (query: string, variables: Record<string, unknown> = {}) =>
      t.graphql(query, variables, { headers: { authorization: `Bearer ${bAdmin.apiToken}`, 'x-organization-id': b.organizationId } });
    const before = await fingerprint(t.db, a.organizationId);

    const aUsers = [aOwner.userId, aAgent.userId].flatMap((uuid) => [uuid, Buffer.from(`User:${uuid}`).toString('base64')]);
    const aTokens = [aToken.body.data.createApiToken.apiToken.uuid].flatMap((uuid) => [uuid, Buffer.from(`ApiToken:${uuid}`).toString('base64')]);
    const operation = fc.oneof(
      fc.constantFrom(...aUsers, ...aTokens).map((v) => ({ query: `query($v: ID!) { node(id: $v) { id ... on User { email name } ... on ApiToken { name } } }`, v, expect: 'null' })),
      fc.constantFrom(...aUsers).map((v) => ({ query: `mutation($v: ID!) { setMemberRole(userId: $v, role: AGENT) { role } }`, v, expect: 'MEMBER_NOT_FOUND' })),
      fc.constantFrom(...aUsers).map((v) => ({ query: `mutation($v: ID!) { removeMember(userId: $v) { role } }`, v, expect: 'MEMBER_NOT_FOUND' })),
      fc.constantFrom(...aUsers).map((v) => ({ query: `mutation($v: ID) { createApiToken(input: { userId: $v }) { token } }`, v, expect: 'MEMBER_NOT_FOUND' })),
      fc.constantFrom(...aUsers).map((v) => ({ query: `mutation($v: ID) { assignConversation(phoneNumber: "${SHARED}", userId: $v) { id } }`, v, expect: 'MEMBER_NOT_FOUND' })),
      fc.constantFrom(...aUsers).map((v) => ({ query: `query($v: ID) { conversations(first: 50, filter: { assignedTo: $v }) { edges { node { id } } } }`, v, expect: 'empty' })),
      fc.constantFrom(...aTokens).map((v) => ({ query: `mutation($v: ID!) { revokeApiToken(id: $v) { uuid } }`, v, expect: 'NOT_FOUND' })),
      fc.constant({ query: `query($v: String) { organization { auditEvents(first: 5, after: $v) { edges { node { action } } } } }`, v: aAuditCursor, expect: 'INVALID_CURSOR' }),
      fc.constant({ query: `query($v: String) { organization { members { user { email name } } auditEvents(first: 50, after: $v) { edges { node { data objectId } } } } }`, v: null, expect: 'ok' }),
    );
    await fc.assert(
      fc.asyncProperty(operation, async ({ query, v, expect: outcome }) => {
        const res = await asBAdmin(query, { v });
        expectNoLeak(res, { query, v });
        const context = JSON.stringify({ query, v });
        if (outcome === 'null') expect(res.body.data?.node ?? null, context).toBeNull();
        else if (outcome === 'empty') expect(res.body.data.conversations.edges, context).toEqual([]);
        else if (outcome === 'ok') expect(res.body.errors, context).toBeUndefined();
        else expect(res.body.errors?.[0]?.extensions?.errorCode ?? res.body.errors?.[0]?.extensions?.code, context).toBe(outcome);
      }),
      { numRuns: 60 },
    );
    expect(await fingerprint(t.db, a.organizationId)).toEqual(before);

    // A's members with B's organization id: refused on every surface.
    for (const member of [aOwner, aAgent]) {
      const headers = { authorization: `Bearer ${member.apiToken}`, 'x-organization-id': b.organizationId };
      const graphql = await t.graphql(`{ conversations(first: 5) { edges { node { id } } } }`, {}, { headers });
      expect(graphql.status).toBe(403);
      const rest = await fetch(`${t.url}/api/conversations`, { headers });
      expect(rest.status).toBe(403);
      const socket = connectWs(t.url, { authorization: headers.authorization, organizationId: b.organizationId });
      const refused = subscribeWs(socket, `subscription { messageReceived { body } }`);
      const error = await refused.waitForError();
      expect(JSON.stringify(error)).toContain('4403');
      await socket.client.dispose();
    }
  });
});
