import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint, phoneFormats } from './helpers/adversarial.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { postTwilio, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL } from './helpers/realtime.js';

// Bad input, generated: malformed GraphQL documents, variables of the wrong types, huge strings, invalid
// UTF-8, odd phone numbers, forged cursors, malformed JSON and form bodies on every route. Whatever
// arrives, the answer is a 4xx (or a GraphQL error) with a code, never a 500, and nothing stored changes.

let t: TestApp;
let org: TestOrg;
const NUMBER = '+19195550100';
const CONTACT = '+19195552001';
const RUNS = { numRuns: 60 };

beforeAll(async () => {
  t = await createTestApp({ TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL, RATE_LIMIT_PER_MINUTE: '0' });
  org = await t.createOrg('Target', { credits: 50, phoneNumber: NUMBER });
  await t.createContact(org, { phoneNumber: CONTACT, firstName: 'Jane', lastName: 'Doe', isTextable: true });
  for (let i = 0; i < 6; i += 1) {
    await t.addMessage(org, { phoneNumber: CONTACT, direction: i % 2 ? 'outgoing' : 'incoming', body: `hello ${i}`, createdAt: new Date(Date.UTC(2025, 1, 1, 9, i)) });
  }
}, 60_000);
afterAll(() => t?.close());

const headers = () => ({ authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId });

type Answer = { status: number; text: string; json: any };

async function send(method: string, path: string, body?: string | Uint8Array, extra: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${t.url}${path}`, {
    method,
    redirect: 'manual',
    headers: { ...headers(), ...extra },
    // A copy: fetch detaches the buffer it sends, and fast-check replays values when shrinking.
    body: method === 'GET' || method === 'HEAD' ? undefined : ((typeof body === 'string' || body === undefined ? body : new Uint8Array(body)) as BodyInit | undefined),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, text, json };
}

const graphql = (query: unknown, variables?: unknown) =>
  send('POST', '/graphql', JSON.stringify({ query, variables }), { 'content-type': 'application/json', accept: 'application/graphql-response+json' });

/** The contract for every answer to bad input. */
function expectRefusedCleanly(answer: Answer, context: unknown) {
  const where = JSON.stringify(context).slice(0, 300);
  expect(answer.status, where).toBeLessThan(500);
  expect(answer.text, where).not.toMatch(/Unexpected error|INTERNAL|stack|at .*\.ts:\d+/);
  if (answer.status >= 400) {
    expect(answer.json, `${where} -> ${answer.text.slice(0, 200)}`).not.toBeNull();
    const code = answer.json.code ?? answer.json.errors?.[0]?.extensions?.code;
    expect(typeof code, `${where} -> ${answer.text.slice(0, 200)}`).toBe('string');
  }
  if (answer.json?.errors) {
    for (const error of answer.json.errors) expect(typeof error.extensions?.code, `${where} -> ${answer.text.slice(0, 300)}`).toBe('string');
  }
}

/** Runs a property and checks that no row changed. */
async function unchanged(run: () => Promise<void>) {
  const before = await fingerprint(t.db);
  await run();
  expect(await fingerprint(t.db)).toEqual(before);
}

// Text that databases and parsers trip on: NUL, lone surrogates, control and bidi characters, emoji.
const nasty = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('\u0000', 'a\u0000b', '\ud800', '\udfff x', '\u202e', '\r\n', '%00', '\\', '"', "'; drop table messages; --", '😀'.repeat(5), ' '),
);

describe('malformed GraphQL', () => {
  it('random documents are refused with a code', async () => {
    const token = fc.constantFrom('{', '}', '(', ')', '[', ']', ':', '$x', '...', '@skip', 'query', 'mutation', 'subscription', 'fragment', 'on',
      'conversations', 'conversation', 'messages', 'organization', 'first', 'edges', 'node', '"str"', '1', '-1', 'null', 'true', '#', '!', '=', '|');
    const document = fc.oneof(fc.array(token, { maxLength: 30 }).map((parts) => parts.join(' ')), fc.string({ maxLength: 200 }), nasty);
    await unchanged(() =>
      fc.assert(
        fc.asyncProperty(document, async (query) => {
          expectRefusedCleanly(await graphql(query), query);
        }),
        RUNS,
      ),
    );
  });

  it('wrong variable types and values are refused with a code', async () => {
    const operations = [
      `query($n: Int, $a: String) { conversations(first: $n, after: $a) { edges { node { phoneNumber } } } }`,
      `query($p: String!) { conversation(phoneNumber: $p) { phoneNumber messages(first: 2) { edges { node { body } } } } }`,
      `query($p: String!, $c: String) { conversation(phoneNumber: $p) { messages(first: 2, after: $c) { edges { node { body } } } } }`,
      `query($f: ConversationFilter) { conversations(first: 5, filter: $f) { edges { node { phoneNumber } } } }`,
      `query($id: ID!) { node(id: $id) { id } }`,
      `mutation($p: String!, $s: Boolean!) { setConversationStarred(phoneNumber: $p, starred: $s) { isStarred } }`,
      `mutation($i: SendReplyInput!) { sendReply(input: $i) { __typename ... on Error { code } } }`,
      `query($i: SendReplyInput!) { previewReply(input: $i) { credits error { code } } }`,
    ];
    // Values of every JSON type, some shaped like the real inputs.
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      nasty,
      fc.integer(),
      fc.double(),
      fc.record({ phoneNumber: fc.oneof(nasty, fc.integer()), message: fc.oneof(nasty, fc.constant(null)), idempotencyKey: fc.oneof(nasty, fc.integer()) }),
      fc.record({ search: nasty, unread: fc.oneof(fc.boolean(), nasty) }),
    );
    const variables = fc.record({ n: value, a: value, p: value, c: value, f: value, id: value, s: value, i: value }, { requiredKeys: [] });
    await unchanged(() =>
      fc.assert(
        fc.asyncProperty(fc.constantFrom(...operations), variables, async (query, vars) => {
          const answer = await graphql(query, vars);
          expectRefusedCleanly(answer, { query, vars });
          // Whatever was sent, no reply went out (phoneNumber is never this contact's number in a valid form).
          if (answer.json?.data?.sendReply) expect(answer.json.data.sendReply.__typename).not.toBe('SendReplyPayload');
        }),
        { numRuns: 100 },
      ),
    );
  });

  it('huge strings: over-limit arguments, pages and bodies are 4xx with a code', async () => {
    const cases: Array<[string, unknown]> = [
      [`query($p: String!) { conversation(phoneNumber: $p) { phoneNumber } }`, { p: '9'.repeat(100_000) }],
      [`query($s: String) { conversations(first: 5, filter: { search: $s }) { edges { node { phoneNumber } } } }`, { s: 'a'.repeat(200_000) }],
      [`query($c: String) { conversations(first: 5, after: $c) { edges { node { phoneNumber } } } }`, { c: 'Q'.repeat(50_000) }],
      [`query($i: SendReplyInput!) { previewReply(input: $i) { credits error { code } } }`, { i: { phoneNumber: CONTACT, message: 'x'.repeat(300_000) } }],
      [`mutation($i: SendReplyInput!) { sendReply(input: $i) { __typename ... on Error { code } } }`, { i: { phoneNumber: CONTACT, message: 'é'.repeat(100_000), idempotencyKey: 'k'.repeat(10_000) } }],
      [`mutation($i: UpdateContactInput!) { updateContact(input: $i) { __typename } }`, { i: { phoneNumber: CONTACT, firstName: 'J'.repeat(500_000) } }],
      [`{ organization { name } }`, { pad: 'x'.repeat(2_000_000) }],
    ];
    await unchanged(async () => {
      for (const [query, variables] of cases) {
        const answer = await graphql(query, variables);
        expectRefusedCleanly(answer, { query });
        expect(answer.json?.data?.sendReply?.__typename ?? 'none').not.toBe('SendReplyPayload');
      }
      const rest = await send('POST', `/api/conversations/${encodeURIComponent(CONTACT)}/reply`, JSON.stringify({ message: 'x'.repeat(40_000) }), {
        'content-type': 'application/json',
      });
      expectRefusedCleanly(rest, 'rest huge');
      expect(rest.status).toBe(400);
    });
    // A long name is a 400 with a code, not a database error; the contact keeps its name.
    const named = await graphql(`{ conversation(phoneNumber: "${CONTACT}") { contact { firstName } } }`);
    expect(named.json.data.conversation.contact.firstName).toBe('Jane');
  });

  it('text the database cannot store (NUL) is refused with a code, everywhere it can be sent', async () => {
    await unchanged(async () => {
      for (const text of ['a\u0000b', '\u0000']) {
        for (const [query, variables] of [
          [`mutation($i: SendReplyInput!) { sendReply(input: $i) { __typename ... on Error { code } } }`, { i: { phoneNumber: CONTACT, message: text } }],
          [`mutation($i: SendReplyInput!) { sendReply(input: $i) { __typename ... on Error { code } } }`, { i: { phoneNumber: CONTACT, message: 'ok', idempotencyKey: text } }],
          [`query($s: String) { conversations(first: 5, filter: { search: $s }) { edges { node { phoneNumber } } } }`, { s: text }],
          [`mutation($i: UpdateContactInput!) { updateContact(input: $i) { __typename } }`, { i: { phoneNumber: CONTACT, firstName: text } }],
          [`mutation($i: CreateContactInput!) { createContact(input: $i) { __typename } }`, { i: { phoneNumber: '+19195552999', lastName: text } }],
        ] as const) {
          const answer = await graphql(query, variables);
          expectRefusedCleanly(answer, { query, text });
          expect(answer.json?.errors?.[0]?.extensions?.code ?? answer.json?.data?.sendReply?.code, JSON.stringify(answer.json)).toBeTruthy();
        }
        const rest = await send('POST', `/api/conversations/${encodeURIComponent(CONTACT)}/reply`, JSON.stringify({ message: text }), { 'content-type': 'application/json' });
        expectRefusedCleanly(rest, 'rest NUL');
        expect(rest.status).toBe(400);
        const list = await send('GET', `/api/conversations?search=${encodeURIComponent(text)}`);
        expectRefusedCleanly(list, 'rest search NUL');
      }
    });
  });
});

describe('odd phone numbers and forged cursors', () => {
  it('phone arguments in any shape: a result, null, or INVALID_PHONE_NUMBER, on GraphQL and REST', async () => {
    const phone = fc.oneof(
      fc.string({ maxLength: 25 }),
      fc.stringMatching(/^[+()\-. 0-9]{0,24}$/),
      fc.constantFrom(...phoneFormats).map((format) => format(CONTACT)),
      fc.constantFrom('+1', '+', '911', '+44 20 7946 0958', '+19995550100', '1'.repeat(16), '+1 (919) 555-2001 ext. 5', '%2B19195552001', '%', '%ZZ', '..', '/'),
    );
    await unchanged(() =>
      fc.assert(
        fc.asyncProperty(phone, async (p) => {
          const byGraphql = await graphql(`query($p: String!) { conversation(phoneNumber: $p) { phoneNumber } }`, { p });
          expectRefusedCleanly(byGraphql, p);
          if (byGraphql.json.errors) expect(byGraphql.json.errors[0].extensions.code).toBe('BAD_USER_INPUT');
          else if (byGraphql.json.data.conversation) expect(byGraphql.json.data.conversation.phoneNumber).toBe(CONTACT);
          for (const segment of [encodeURIComponent(p), p.replace(/[/?#]/g, '')]) {
            if (!segment) continue;
            const byRest = await send('GET', `/api/conversations/${segment}/messages`);
            expectRefusedCleanly(byRest, { p, segment });
            // A valid number (any country) is an ordinary, possibly empty, page; anything else a 400 or 404.
            if (byRest.status === 200) expect(Array.isArray(byRest.json.messages)).toBe(true);
            else expect([400, 404]).toContain(byRest.status);
          }
        }),
        RUNS,
      ),
    );
  });

  it('forged cursors are INVALID_CURSOR, never another page', async () => {
    const page = await graphql(`{ conversation(phoneNumber: "${CONTACT}") { id messages(first: 2) { edges { cursor } } } }`);
    const real: string = page.json.data.conversation.messages.edges[1].cursor;
    const decoded = Buffer.from(real, 'base64url').toString('utf8');
    const forge = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.base64String({ maxLength: 120 }),
      fc.string({ maxLength: 60 }).map((s) => Buffer.from(s).toString('base64url')),
      // Real structure, altered: kind, scope, time or id swapped for something else.
      fc.tuple(fc.constantFrom('msg', 'conv', 'x', ''), fc.uuid(), fc.oneof(fc.nat().map(String), fc.string({ maxLength: 8 })), fc.oneof(fc.uuid(), fc.string({ maxLength: 10 })))
        .map((parts) => Buffer.from(parts.join(':')).toString('base64url')),
      fc.constantFrom(real.slice(1), `${real}=`, real.toUpperCase(), Buffer.from(decoded.replace(/:\d+:/, ':99999999999999999:')).toString('base64url')),
    );
    await unchanged(() =>
      fc.assert(
        fc.asyncProperty(forge, async (cursor) => {
          fc.pre(cursor !== real);
          for (const query of [
            `query($c: String) { conversation(phoneNumber: "${CONTACT}") { messages(first: 2, after: $c) { edges { node { body } } } } }`,
            `query($c: String) { conversation(phoneNumber: "${CONTACT}") { messages(last: 2, before: $c) { edges { node { body } } } } }`,
            `query($c: String) { conversations(first: 2, after: $c) { edges { node { phoneNumber } } } }`,
          ]) {
            const answer = await graphql(query, { c: cursor });
            expectRefusedCleanly(answer, { cursor, query });
            // Either refused, or (a syntactically valid cursor of this very list) an ordinary page.
            if (answer.json.errors) expect(answer.json.errors[0].extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
          }
          const rest = await send('GET', `/api/conversations/${encodeURIComponent(CONTACT)}/messages?cursor=${encodeURIComponent(cursor)}`);
          expectRefusedCleanly(rest, { cursor });
          if (rest.status !== 200) expect(rest.json).toMatchObject({ code: 'INVALID_CURSOR' });
        }),
        RUNS,
      ),
    );
  });
});

describe('malformed bodies on every route', () => {
  const routes: Array<[string, string]> = [
    ['POST', '/graphql'],
    ['GET', '/graphql'],
    ['PUT', '/graphql'],
    ['DELETE', '/graphql'],
    ['POST', '/api/conversations'],
    ['GET', '/api/conversations'],
    ['POST', `/api/conversations/${encodeURIComponent(CONTACT)}/reply`],
    ['PUT', `/api/conversations/${encodeURIComponent(CONTACT)}/reply`],
    ['GET', `/api/conversations/${encodeURIComponent(CONTACT)}/messages`],
    ['POST', '/api/openapi.json'],
    ['POST', '/webhooks/twilio/messages'],
    ['POST', '/webhooks/twilio/status'],
    ['GET', '/webhooks/twilio/messages'],
    ['POST', '/l/abc'],
    ['GET', '/l/%ZZ'],
    ['POST', '/health'],
    ['PATCH', '/'],
  ];
  const contentTypes = ['application/json', 'application/x-www-form-urlencoded', 'text/plain', 'application/graphql', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', ''];
  const body = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.uint8Array({ maxLength: 200 }), // includes invalid UTF-8
    fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
    fc.constantFrom('{', '[]', '{"query":', '{"query": 1}', '{"message": {"$gt": ""}}', 'null', '"string"', 'a=b&a=c&MessageSid=', '%FF%FE=%00', '\u0000'),
    fc.constant(new Uint8Array([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d])), // {"m":"<invalid UTF-8>"}
  );

  it('never a 500, always a code, nothing stored', async () => {
    await unchanged(() =>
      fc.assert(
        fc.asyncProperty(fc.constantFrom(...routes), fc.constantFrom(...contentTypes), body, async ([method, path], contentType, payload) => {
          const extra: Record<string, string> = contentType ? { 'content-type': contentType } : {};
          const answer = await send(method, path, typeof payload === 'string' ? payload : payload, extra);
          expectRefusedCleanly(answer, { method, path, contentType, payload: String(payload).slice(0, 80) });
          // Unsigned webhook posts never get past the signature check.
          if (path.startsWith('/webhooks') && method === 'POST' && contentType === 'application/x-www-form-urlencoded') expect(answer.status).toBe(403);
        }),
        { numRuns: 120 },
      ),
    );
  });

  it('signed webhooks with garbage parameters are refused with a code and store nothing', async () => {
    const value = fc.oneof(nasty, fc.constantFrom('', NUMBER, CONTACT, '+1', 'SMxyz', 'delivered', 'bogus', '-1', '99999999999'));
    const form = fc.dictionary(fc.constantFrom('MessageSid', 'From', 'To', 'Body', 'NumMedia', 'MediaUrl0', 'MessageStatus', 'ErrorCode', 'Extra'), fc.oneof(value, fc.array(value, { maxLength: 3 })), {
      maxKeys: 6,
    });
    await unchanged(() =>
      fc.assert(
        fc.asyncProperty(fc.constantFrom('/webhooks/twilio/messages', '/webhooks/twilio/status'), form, async (path, params) => {
          // A complete, valid inbound message would be stored (correctly): keep the sender invalid.
          if (path.endsWith('/messages') && params.To === NUMBER && typeof params.MessageSid === 'string' && params.MessageSid) fc.pre(typeof params.From !== 'string' || !/^\+?1?\d{10}$/.test(params.From.replace(/\D/g, '')));
          const res = await postTwilio(t.url, path, params as Record<string, string | string[]>);
          const json = (() => {
            try {
              return JSON.parse(res.text);
            } catch {
              return null;
            }
          })();
          expectRefusedCleanly({ status: res.status, text: res.text, json }, { path, params });
        }),
        { numRuns: 80 },
      ),
    );
  });
});
