import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { count, eq, sql } from 'drizzle-orm';
import { buildClientSchema, getIntrospectionQuery } from 'graphql';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { conversations, messages } from '../src/db/tables.js';
import { assembleDeps, closeDeps } from '../src/deps.js';
import { INTROSPECTION_MAX_COST } from '../src/http/operation-guards.js';
import { requestLogMixin } from '../src/http/request-id.js';
import { issueApiToken, revokeApiToken } from '../src/services/api-tokens.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { createTestDatabase } from './helpers/database.js';
import { connectWs, inboundForm, postTwilio, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL } from './helpers/realtime.js';

// The limits and protections in front of the resolvers: query depth/alias/cost/token limits tuned so
// the documented queries pass, body size, batching, CORS, GET vs mutations, per-token rate limits,
// introspection, error masking, request ids and token revocation, all over real HTTP.

let t: TestApp;
let acme: TestOrg;
const ACME_NUMBER = '+19195550100';

const auth = (org: TestOrg) => ({ authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId });

async function post(app: { url: string }, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${app.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: response.status, headers: response.headers, json, text };
}

beforeAll(async () => {
  t = await createTestApp();
  acme = await t.createOrg('Acme', { credits: 100, phoneNumber: ACME_NUMBER });
  // 30 conversations of 8 messages: enough for every documented query to return real pages.
  for (let c = 0; c < 30; c += 1) {
    const phoneNumber = `+1919555${String(2000 + c)}`;
    await t.createContact(acme, { phoneNumber, firstName: `First${c}`, lastName: `Last${c}`, isTextable: true });
    for (let m = 0; m < 8; m += 1) {
      await t.addMessage(acme, {
        phoneNumber,
        direction: m % 2 === 0 ? 'incoming' : 'outgoing',
        body: `message ${m} of ${c}`,
        createdAt: new Date(Date.UTC(2025, 0, 1 + c, 12, m)),
      });
    }
  }
}, 120_000);
afterAll(() => t?.close());

const README_INBOX = (first: number) => `
query Inbox {
  organization { name timezone credits }
  conversations(first: ${first}, filter: { unread: true }) {
    edges {
      cursor
      node {
        id phoneNumber unreadCount isArchived isStarred lastMessageAt
        contact { firstName lastName isTextable isOptedIn }
        lastMessage { body direction createdAt }
        messages(first: 5) {
          edges { cursor node { direction body status sentiment createdAt } }
          pageInfo { hasNextPage endCursor }
        }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;

describe('documented queries pass the limits', () => {
  const documented: Array<[string, string, Record<string, unknown>]> = [
    ['README inbox, 20 conversations', README_INBOX(20), {}],
    ['README inbox, 200 conversations', README_INBOX(200), {}],
    [
      'inbox with variables (as urql sends it)',
      `query($n: Int!, $m: Int!) { conversations(first: $n) { edges { node { phoneNumber unreadCount contact { firstName } lastMessage { body } messages(first: $m) { edges { node { body } } } } } } }`,
      { n: 200, m: 5 },
    ],
    [
      'README: one conversation, 50 messages',
      `{ conversation(phoneNumber: "(919) 555-2001") { messages(first: 50) { edges { node { body createdAt } } } } }`,
      {},
    ],
    [
      'a full page of 200 messages with every field',
      `{ conversation(phoneNumber: "+19195552002") {
          contact { id uuid phoneNumber firstName lastName isTextable isOptedIn createdAt consentEvents { kind keyword source createdAt message { body } } }
          messages(first: 200) { edges { cursor node { id uuid cursor body direction status mediaUrls sentiment sentimentScore category requiresResponse
            optOutDetected errorCode segments encoding creditsCharged provider providerMessageId createdAt links { url shortUrl clicks } } }
            pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }`,
      {},
    ],
    [
      'node(id:) with fragments',
      `query($id: ID!) { node(id: $id) { id ... on Conversation { phoneNumber contact { conversation { phoneNumber } } messages(last: 10) { edges { node { body conversation { phoneNumber } } } } } } }`,
      { id: 'placeholder' },
    ],
  ];

  it.each(documented)('%s', async (_name, query, variables) => {
    if (variables.id === 'placeholder') {
      const first = await t.graphql(`{ conversations(first: 1) { edges { node { id } } } }`, {}, acme);
      variables = { id: first.body.data.conversations.edges[0].node.id };
    }
    const res = await t.graphql(query, variables, acme);
    expect(res.body.errors).toBeUndefined();
    expect(res.status).toBe(200);
  });

  it('the GraphiQL example query passes', async () => {
    const res = await t.graphql(
      `query Inbox { organization { name timezone credits } conversations(first: 10) { edges { node { phoneNumber unreadCount isStarred
        contact { firstName lastName isOptedIn } lastMessage { body direction createdAt } messages(first: 3) { edges { node { direction body status createdAt } } } } }
        pageInfo { hasNextPage endCursor } } }`,
      {},
      acme,
    );
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.conversations.edges).toHaveLength(10);
  });
});

describe('abusive queries are refused before any resolver runs', () => {
  const nested = (levels: number) => {
    let inner = 'body';
    for (let i = 0; i < levels; i += 1) inner = `conversation { messages(first: 1) { edges { node { ${inner} } } } }`;
    return `{ conversations(first: 1) { edges { node { messages(first: 1) { edges { node { ${inner} } } } } } } }`;
  };

  it.each([
    ['depth', nested(3)],
    ['aliases', `{ ${Array.from({ length: 16 }, (_, i) => `a${i}: organization { name }`).join(' ')} }`],
    ['cost', `{ conversations(first: 200) { edges { node { messages(first: 200) { edges { node { body } } } } } } }`],
    ['tokens', `{ organization { ${'name '.repeat(3_100)} } }`],
    ['directives', `{ organization { name ${'@include(if: true) '.repeat(21)} } }`],
  ])('%s limit: 400 QUERY_TOO_COMPLEX, no SQL', async (limit, query) => {
    const recording = t.database.statementLog.record();
    // application/graphql-response+json: request errors are 4xx (plain JSON keeps parse errors at 200, per the spec).
    const res = await t.graphql(query, {}, { headers: { ...auth(acme), accept: 'application/graphql-response+json' } });
    const statements = recording();
    expect(res.status).toBe(400);
    expect(res.body.data).toBeUndefined();
    expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit });
    // At most the auth lookup ran (the token may have left the cache).
    expect(statements.filter((s) => !/api_tokens/.test(s))).toEqual([]);
  });

  it('the cost uses variables: the same document passes with small pages and fails with large ones', async () => {
    const query = `query($a: Int, $b: Int) { conversations(first: $a) { edges { node { messages(first: $b) { edges { node { body } } } } } } }`;
    expect((await t.graphql(query, { a: 20, b: 20 }, acme)).body.errors).toBeUndefined();
    const big = await t.graphql(query, { a: 200, b: 200 }, acme);
    expect(big.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'cost', maxCost: 30_000 });
  });

  it('the schema query GraphiQL and codegen send passes (introspection has its own cost limit); a recursive one does not', async () => {
    const standard = getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true });
    const res = await t.graphql(standard, {}, acme);
    expect(res.body.errors).toBeUndefined();
    // The whole schema comes back: a client can build it.
    const schema = buildClientSchema(res.body.data);
    expect(schema.getQueryType()?.getFields()).toHaveProperty('conversations');
    // Priced as any other operation it would be refused: it is the limit that differs, not the price.
    const mixed = await t.graphql(standard.replace('__schema {', 'organization { name } __schema {'), {}, acme);
    expect(mixed.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'cost', maxCost: 30_000 });
    // The schema twice (aliases) is over the introspection limit too.
    const fragments = standard.slice(standard.indexOf('fragment'));
    const selection = standard.slice(standard.indexOf('__schema'), standard.indexOf('fragment'));
    const twice = await t.graphql(`query Twice { a: ${selection.trim().slice(0, -1)} b: ${selection.trim().slice(0, -1)} }\n${fragments}`, {}, acme);
    expect(twice.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'cost', maxCost: INTROSPECTION_MAX_COST });
    // Introspection nested on itself (it multiplies per level) is graphql-js's own validation error.
    let inner = 'name';
    for (let level = 0; level < 4; level += 1) inner = `fields { type { ${inner} } }`;
    const recursive = await t.graphql(`{ __schema { types { ${inner} } } }`, {}, acme);
    expect(recursive.body.errors?.[0]).toMatchObject({ message: 'Maximum introspection depth exceeded', extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });
  });

  it('a page size over 200 is still the resolver\'s BAD_USER_INPUT naming the limit, not a cost error', async () => {
    const res = await t.graphql(`{ conversations(first: 100000) { edges { node { phoneNumber } } } }`, {}, acme);
    expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(res.body.errors?.[0]?.message).toContain('200');
  });
});

describe('request body size and batching', () => {
  it('a /graphql body over 1 MB is HTTP 413, declared or chunked', async () => {
    const huge = JSON.stringify({ query: '{ organization { name } }', variables: { pad: 'x'.repeat(1024 * 1024) } });
    const declared = await post(t, huge, auth(acme));
    expect(declared.status).toBe(413);
    expect(declared.json.errors[0].extensions.code).toBeTruthy();

    // Chunked transfer (no Content-Length): counted as it streams.
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${t.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth(acme) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i += 1) req.write(i === 0 ? huge.slice(0, 100_000) : 'x'.repeat(100_000));
      req.end();
    });
    expect(status).toBe(413);
    // Just under the limit still works.
    const fine = await post(t, { query: '{ organization { name } }', variables: { pad: 'x'.repeat(900_000) } }, auth(acme));
    expect(fine.status).toBe(200);
  });

  it('a REST body over 64 KB is 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await fetch(`${t.url}/api/conversations/%2B19195552001/reply`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth(acme) },
      body: JSON.stringify({ message: 'x'.repeat(70_000) }),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ success: false, code: 'PAYLOAD_TOO_LARGE' });
  });

  it('batches of up to 10 operations run; more are refused', async () => {
    const op = { query: '{ organization { name } }' };
    const ok = await post(t, Array.from({ length: 3 }, () => op), auth(acme));
    expect(ok.status).toBe(200);
    expect(ok.json).toHaveLength(3);
    expect(ok.json.every((r: any) => r.data.organization.name === 'Acme')).toBe(true);
    const tooMany = await post(t, Array.from({ length: 11 }, () => op), auth(acme));
    expect(tooMany.status).toBe(413);
    expect(tooMany.json.errors[0].message).toMatch(/limited to 10/);
  });
});

describe('GET', () => {
  it('queries work over GET, as urql sends them by default', async () => {
    const query = encodeURIComponent('query Q($n: Int) { conversations(first: $n) { edges { node { phoneNumber } } } }');
    const res = await fetch(`${t.url}/graphql?query=${query}&variables=${encodeURIComponent('{"n":2}')}&operationName=Q`, {
      headers: { accept: 'application/graphql-response+json, application/json', ...auth(acme) },
    });
    expect(res.status).toBe(200);
    expect((await res.json()).data.conversations.edges).toHaveLength(2);
  });

  it('mutations never run over GET', async () => {
    const before = await t.db.select().from(conversations).where(eq(conversations.phoneNumber, '+19195552003'));
    const mutation = encodeURIComponent('mutation { setConversationStarred(phoneNumber: "+19195552003", starred: true) { isStarred } }');
    const res = await fetch(`${t.url}/graphql?query=${mutation}`, { headers: { accept: 'application/json', ...auth(acme) } });
    expect(res.status).toBe(405);
    const body = await res.json();
    expect(body.errors[0].message).toMatch(/POST/);
    const after = await t.db.select().from(conversations).where(eq(conversations.phoneNumber, '+19195552003'));
    expect(after[0]!.isStarred).toBe(before[0]!.isStarred);
    expect(after[0]!.isStarred).toBe(false);
  });
});

describe('CORS', () => {
  it('allows any origin by default, on GraphQL and REST', async () => {
    const graphql = await fetch(`${t.url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin: 'https://anywhere.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
    });
    expect([200, 204]).toContain(graphql.status);
    expect(graphql.headers.get('access-control-allow-origin')).toBe('https://anywhere.example');
    const rest = await fetch(`${t.url}/api/conversations`, { headers: { origin: 'https://anywhere.example', ...auth(acme) } });
    expect(rest.headers.get('access-control-allow-origin')).toBe('https://anywhere.example');
    // One policy: a REST preflight allows the same request headers as GraphQL's, and both expose the same.
    const restPreflight = await fetch(`${t.url}/api/conversations`, {
      method: 'OPTIONS',
      headers: { origin: 'https://anywhere.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(restPreflight.headers.get('access-control-allow-headers')).toBe(graphql.headers.get('access-control-allow-headers'));
    expect(restPreflight.headers.get('access-control-allow-headers')).toMatch(/x-request-id/);
    const graphqlGet = await fetch(`${t.url}/graphql?query=%7Borganization%7Bname%7D%7D`, { headers: { origin: 'https://anywhere.example', ...auth(acme) } });
    expect(rest.headers.get('access-control-expose-headers')).toBe(graphqlGet.headers.get('access-control-expose-headers'));
    // Short links and webhooks get the same answer.
    const link = await fetch(`${t.url}/l/unknown`, { headers: { origin: 'https://anywhere.example' } });
    expect(link.headers.get('access-control-allow-origin')).toBe('https://anywhere.example');
  });

  it('with CORS_ORIGINS, only the listed origins are allowed', async () => {
    const app = await createTestApp({ CORS_ORIGINS: 'https://app.example.com, https://admin.example.com' });
    try {
      const org = await app.createOrg('Cors');
      const call = (path: string, origin: string, method = 'GET') =>
        fetch(`${app.url}${path}`, {
          method,
          headers:
            method === 'OPTIONS'
              ? { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' }
              : { origin, ...auth(org) },
        });
      for (const path of ['/graphql?query=%7Borganization%7Bname%7D%7D', '/api/conversations']) {
        expect((await call(path, 'https://app.example.com')).headers.get('access-control-allow-origin')).toBe('https://app.example.com');
        expect((await call(path, 'https://evil.example.com')).headers.get('access-control-allow-origin')).toBeNull();
      }
      expect((await call('/graphql', 'https://admin.example.com', 'OPTIONS')).headers.get('access-control-allow-origin')).toBe(
        'https://admin.example.com',
      );
      expect((await call('/graphql', 'https://evil.example.com', 'OPTIONS')).headers.get('access-control-allow-origin')).toBeNull();
      expect(() => loadConfig({ CORS_ORIGINS: 'not a url' })).toThrow(/CORS_ORIGINS/);
    } finally {
      await app.close();
    }
  });
});

describe('rate limiting per token', () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await createTestApp({ RATE_LIMIT_PER_MINUTE: '20', TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
  });
  afterAll(() => limited?.close());

  it('answers 429 with Retry-After and RATE_LIMITED on GraphQL and REST, and one flood does not refuse another organization', async () => {
    const flooder = await limited.createOrg('Flooder');
    const bystander = await limited.createOrg('Bystander');
    const answers = await Promise.all(Array.from({ length: 30 }, () => post(limited, { query: '{ organization { name } }' }, auth(flooder))));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(20);
    const refused = answers.filter((a) => a.status === 429);
    expect(refused).toHaveLength(10);
    for (const answer of refused) {
      expect(answer.json.errors[0].extensions.code).toBe('RATE_LIMITED');
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(Number(answer.headers.get('retry-after'))).toBeLessThanOrEqual(60);
      expect(answer.headers.get('x-request-id')).toBeTruthy();
    }
    const rest = await fetch(`${limited.url}/api/conversations`, { headers: auth(flooder) });
    expect(rest.status).toBe(429);
    expect(rest.headers.get('retry-after')).toBeTruthy();
    expect(await rest.json()).toMatchObject({ success: false, code: 'RATE_LIMITED' });

    // The flooder keeps hammering while the bystander works normally.
    const flood = Promise.all(Array.from({ length: 200 }, () => post(limited, { query: '{ organization { name } }' }, auth(flooder))));
    const mine = await post(limited, { query: '{ organization { name } }' }, auth(bystander));
    expect(mine.status).toBe(200);
    expect(mine.json.data.organization.name).toBe('Bystander');
    expect((await flood).every((a) => a.status === 429)).toBe(true);
  });

  it('a batch costs one request per operation', async () => {
    const org = await limited.createOrg('Batcher');
    const batch = await post(limited, Array.from({ length: 10 }, () => ({ query: '{ organization { name } }' })), auth(org));
    expect(batch.status).toBe(200);
    const second = await post(limited, Array.from({ length: 10 }, () => ({ query: '{ organization { name } }' })), auth(org));
    // 10 + 10 = 20 spent: the next single request is refused.
    expect(second.status).toBe(200);
    expect((await post(limited, { query: '{ organization { name } }' }, auth(org))).status).toBe(429);
  });

  it('operations over one WebSocket are counted too', async () => {
    const org = await limited.createOrg('Socket');
    const ws = connectWs(limited.url, org);
    try {
      const results = [];
      for (let i = 0; i < 22; i += 1) {
        const sub = subscribeWs(ws, '{ organization { name } }');
        await new Promise((resolve) => setTimeout(resolve, 0));
        results.push(sub);
      }
      const settled = await Promise.all(
        results.map(async (sub) => {
          const deadline = Date.now() + 5_000;
          while (!sub.completed && sub.errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          return sub;
        }),
      );
      expect(settled.filter((s) => s.data.length === 1)).toHaveLength(20);
      const errors = settled.flatMap((s) => s.errors) as Array<{ extensions?: { code?: string } }>;
      expect(errors).toHaveLength(2);
      expect(errors.every((e) => e.extensions?.code === 'RATE_LIMITED')).toBe(true);
    } finally {
      await ws.client.dispose();
    }
  });

  it('subscriptions over one WebSocket are counted too, shared or not', async () => {
    const org = await limited.createOrg('Subscriber', { phoneNumber: '+19195550778' });
    const ws = connectWs(limited.url, org);
    try {
      // The same operation 22 times: served by one shared execution, but each one is an operation of the token.
      const subs = Array.from({ length: 22 }, () => subscribeWs(ws, 'subscription { messageReceived { body } }'));
      const deadline = Date.now() + 5_000;
      while (subs.filter((s) => s.errors.length > 0).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const refused = subs.filter((s) => s.errors.length > 0);
      expect(refused).toHaveLength(2);
      expect(refused.every((s) => (s.errors[0] as { extensions?: { code?: string } }).extensions?.code === 'RATE_LIMITED')).toBe(true);
      // The admitted ones are live.
      const form = inboundForm('+19195550778', '+12125550178', 'for the admitted');
      expect((await postTwilio(limited.url, '/webhooks/twilio/messages', form)).status).toBe(200);
      for (const sub of subs.filter((s) => s.errors.length === 0)) await sub.waitFor(1);
      expect(refused.every((s) => s.data.length === 0)).toBe(true);
    } finally {
      await ws.client.dispose();
    }
  });

  it('Twilio webhooks are never rate limited: a flood from one sender is stored whole', async () => {
    const org = await limited.createOrg('Inbound', { phoneNumber: '+19195550777' });
    const forms = Array.from({ length: 40 }, (_, i) => inboundForm('+19195550777', '+12125550199', `flood ${i}`));
    const answers = await Promise.all(forms.map((form) => postTwilio(limited.url, '/webhooks/twilio/messages', form)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const [stored] = await limited.db.select({ n: count() }).from(messages).where(eq(messages.organizationId, org.organizationId));
    expect(stored!.n).toBe(40);
  });

  it('RATE_LIMIT_PER_MINUTE=0 turns it off', async () => {
    const app = await createTestApp({ RATE_LIMIT_PER_MINUTE: '0' });
    try {
      const org = await app.createOrg('Unlimited');
      const answers = await Promise.all(Array.from({ length: 50 }, () => post(app, { query: '{ organization { name } }' }, auth(org))));
      expect(answers.every((a) => a.status === 200)).toBe(true);
    } finally {
      await app.close();
    }
  });
});

describe('failed authentications per client address', () => {
  const madeUp = (i: number) => ({ authorization: `Bearer not-a-real-token-${i}` });

  it('refuses an address after AUTH_FAILURES_PER_MINUTE 401s, except for tokens it already verified', async () => {
    const app = await createTestApp({ AUTH_FAILURES_PER_MINUTE: '5' });
    try {
      const member = await app.createOrg('Shared office');
      expect((await post(app, { query: '{ organization { name } }' }, auth(member))).status).toBe(200); // verified, cached

      for (let i = 0; i < 4; i += 1) {
        const guess = await post(app, { query: '{ organization { name } }' }, madeUp(i));
        expect(guess.status).toBe(401);
      }
      // A failed WebSocket authentication counts as well (the fifth failure).
      const socket = connectWs(app.url, { authorization: 'Bearer not-a-real-token-4' });
      subscribeWs(socket, '{ organization { name } }');
      for (const deadline = Date.now() + 5_000; socket.closes.length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
      expect(socket.closes[0]).toMatchObject({ code: 4401 });
      await socket.client.dispose();
      // Every further guess is refused before any token lookup, on GraphQL and REST alike.
      const refused = await post(app, { query: '{ organization { name } }' }, madeUp(99));
      expect(refused.status).toBe(429);
      expect(refused.json.errors[0].extensions.code).toBe('RATE_LIMITED');
      expect(refused.json.errors[0].message).toMatch(/failed authentications/);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const rest = await fetch(`${app.url}/api/conversations`, { headers: madeUp(100) });
      expect(rest.status).toBe(429);
      expect(await rest.json()).toMatchObject({ success: false, code: 'RATE_LIMITED' });
      const missing = await fetch(`${app.url}/api/conversations`);
      expect(missing.status).toBe(429);

      // Guessing over a WebSocket is refused the same way, before the token is looked up.
      const guesser = connectWs(app.url, { authorization: 'Bearer not-a-real-token-ws' });
      const attempt = subscribeWs(guesser, '{ organization { name } }');
      const deadline = Date.now() + 5_000;
      while (guesser.closes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(guesser.closes[0]).toMatchObject({ code: 4429 });
      expect(guesser.closes[0]!.reason).toMatch(/failed authentications/);
      expect(attempt.data).toHaveLength(0);
      await guesser.client.dispose();

      // The person already at work behind that address is not locked out by the guesser...
      const mine = await post(app, { query: '{ organization { name } }' }, auth(member));
      expect(mine.status).toBe(200);
      expect(mine.json.data.organization.name).toBe('Shared office');
      // ...but a token not verified yet waits out the minute like any guess.
      const newcomer = await app.createOrg('Newcomer');
      expect((await post(app, { query: '{ organization { name } }' }, auth(newcomer))).status).toBe(429);
    } finally {
      await app.close();
    }
  });

  it('AUTH_FAILURES_PER_MINUTE=0 turns it off', async () => {
    const app = await createTestApp({ AUTH_FAILURES_PER_MINUTE: '0' });
    try {
      const answers = await Promise.all(Array.from({ length: 80 }, (_, i) => post(app, { query: '{ organization { name } }' }, madeUp(i))));
      expect(answers.every((a) => a.status === 401)).toBe(true);
    } finally {
      await app.close();
    }
  });
});

describe('introspection, GraphiQL and error masking in production', () => {
  type LogLine = { level: number; msg: string; requestId?: string; err?: { message: string }; [key: string]: unknown };
  let prod: { url: string; close(): Promise<void>; db: TestApp['db']; logs: LogLine[]; org: TestOrg };

  beforeAll(async () => {
    const database = await createTestDatabase();
    const logs: LogLine[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
        done();
      },
    });
    const config = loadConfig({
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      PORT: '0',
      HOST: '127.0.0.1',
      TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
      PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
    });
    const deps = assembleDeps(config, database, pino({ level: 'info', mixin: requestLogMixin }, sink));
    const app = buildApp(deps);
    const url = await app.start(0, '127.0.0.1');
    const org = await createOrganization(database.db, { name: 'Prod' });
    prod = {
      url,
      db: database.db,
      logs,
      org,
      async close() {
        await app.stop(1_000);
        await closeDeps(deps);
      },
    };
  });
  afterAll(() => prod?.close());

  it('introspection is off by default in production and on in development and test', async () => {
    // GraphQL over HTTP: a validation error is 400 with application/graphql-response+json (200 with plain JSON).
    const res = await post(prod, { query: '{ __schema { types { name } } }' }, { ...auth(prod.org), accept: 'application/graphql-response+json' });
    expect(res.status).toBe(400);
    expect(res.json.data).toBeUndefined();
    expect(res.json.errors[0]).toMatchObject({ message: expect.stringMatching(/introspection/i), extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });
    const typename = await post(prod, { query: '{ __typename organization { name } }' }, auth(prod.org));
    expect(typename.json.data).toMatchObject({ __typename: 'Query', organization: { name: 'Prod' } });
    const dev = await t.graphql('{ __schema { queryType { name } } }', {}, acme);
    expect(dev.body.data.__schema.queryType.name).toBe('Query');
    expect(loadConfig({ NODE_ENV: 'production', GRAPHQL_INTROSPECTION: 'true' }).introspection).toBe(true);
  });

  it('no field suggestions and no GraphiQL in production', async () => {
    const res = await post(prod, { query: '{ organization { nam } }' }, { ...auth(prod.org), accept: 'application/graphql-response+json' });
    expect(res.status).toBe(400);
    expect(res.json.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(res.text).not.toMatch(/Did you mean/);
    const page = await fetch(`${prod.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await page.text()).not.toMatch(/graphiql/i);
    const devPage = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await devPage.text()).toMatch(/graphiql/i);
  });

  it('GraphiQL loads nothing from the network: its scripts and styles are in the page', async () => {
    for (let view = 0; view < 2; view += 1) {
      const page = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      const html = await page.text();
      expect(html).toContain('<title>Conversations gateway</title>');
      expect(html).toContain('renderYogaGraphiQL');
      // The example query and the prefilled headers reach the page.
      expect(html).toContain('query Inbox');
      expect(html).toContain('x-organization-id');
      // Nothing fetched from elsewhere: no external script, stylesheet or icon (Yoga's default page takes
      // them from unpkg.com).
      expect(html).not.toMatch(/<script[^>]*\ssrc=/i);
      expect(html).not.toMatch(/<link[^>]*href="https?:/i);
      expect(html).not.toContain('unpkg.com');
    }
  });

  it('an unexpected failure reaches the client masked (no SQL, no stack) and is logged once with the request id', async () => {
    // A real internal fault: the table the resolver reads is gone.
    await prod.db.execute(sql`alter table conversations rename to conversations_gone`);
    try {
      const before = prod.logs.length;
      const res = await post(prod, { query: '{ conversations(first: 5) { edges { node { phoneNumber } } } }' }, { ...auth(prod.org), 'x-request-id': 'client-chosen-42' });
      expect(res.headers.get('x-request-id')).toBe('client-chosen-42');
      expect(res.json.errors[0].message).toBe('Unexpected error.');
      expect(res.text).not.toMatch(/conversations_gone|relation|select|stack|\.ts:/i);
      const rest = await fetch(`${prod.url}/api/conversations`, { headers: auth(prod.org) });
      const restText = await rest.text();
      expect(rest.status).toBe(500);
      expect(JSON.parse(restText)).toMatchObject({ success: false, code: 'INTERNAL_ERROR' });
      expect(restText).not.toMatch(/relation|select|stack/i);
      const restId = rest.headers.get('x-request-id')!;
      expect(restId).toMatch(/^[0-9a-f-]{36}$/);

      const mine = prod.logs.slice(before).filter((line) => line.requestId === 'client-chosen-42' && line.level >= 40);
      expect(mine).toHaveLength(1);
      expect(JSON.stringify(mine[0])).toMatch(/conversations/);
      expect(prod.logs.slice(before).filter((line) => line.requestId === restId && line.level >= 40)).toHaveLength(1);
    } finally {
      await prod.db.execute(sql`alter table conversations_gone rename to conversations`);
    }
  });

  it('a sender flooding one number is stored in full and flagged once in the log', async () => {
    await addPhoneNumber(prod.db, prod.org.organizationId, { phoneNumber: '+19195550888', isDefault: true });
    const before = prod.logs.length;
    const forms = Array.from({ length: 75 }, (_, i) => inboundForm('+19195550888', '+13105550100', `again ${i}`));
    for (let i = 0; i < forms.length; i += 15) {
      const answers = await Promise.all(forms.slice(i, i + 15).map((form) => postTwilio(prod.url, '/webhooks/twilio/messages', form)));
      expect(answers.every((a) => a.status === 200)).toBe(true);
    }
    const [stored] = await prod.db.select({ n: count() }).from(messages).where(eq(messages.organizationId, prod.org.organizationId));
    expect(stored!.n).toBe(75);
    expect(prod.logs.slice(before).filter((line) => line.msg === 'inbound flood from one sender')).toHaveLength(1);
  });

  it('refused requests are logged once at info with their request id', async () => {
    const before = prod.logs.length;
    const res = await post(prod, { query: '{ organization { name } }' }, { authorization: 'Bearer nope' });
    expect(res.status).toBe(401);
    const id = res.headers.get('x-request-id');
    expect(prod.logs.slice(before).filter((line) => line.requestId === id)).toHaveLength(1);
  });
});

describe('x-request-id', () => {
  it('is on every response, generated or kept', async () => {
    for (const path of ['/health', '/nope', '/api/conversations', '/graphql', '/webhooks/twilio/messages', '/l/none']) {
      const res = await fetch(`${t.url}${path}`);
      expect(res.headers.get('x-request-id'), path).toMatch(/^[0-9a-f-]{36}$/);
    }
    const kept = await fetch(`${t.url}/health`, { headers: { 'x-request-id': 'abc-123_X' } });
    expect(kept.headers.get('x-request-id')).toBe('abc-123_X');
    // Not a sane id (too long, or with characters that could forge log lines): replaced.
    const replaced = await fetch(`${t.url}/health`, { headers: { 'x-request-id': 'a'.repeat(300) } });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('is on the WebSocket upgrade response', async () => {
    const { default: WebSocket } = await import('ws');
    const socket = new WebSocket(`${t.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    const id = await new Promise<string | undefined>((resolve, reject) => {
      socket.on('upgrade', (response) => resolve(response.headers['x-request-id'] as string | undefined));
      socket.on('error', reject);
    });
    socket.close();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('token revocation', () => {
  it('takes effect at once despite the auth cache (LISTEN/NOTIFY), and the cache is short anyway', async () => {
    const org = await t.createOrg('Revoked');
    const second = await issueApiToken(t.db, org.organizationId, 'second');
    expect((await post(t, { query: '{ organization { name } }' }, auth(org))).status).toBe(200); // now cached
    expect((await post(t, { query: '{ organization { name } }' }, auth({ ...org, apiToken: second.apiToken }))).status).toBe(200);
    expect(await revokeApiToken(t.db, org.apiToken)).toMatchObject({ tokenId: expect.any(String) });
    // The notification arrives asynchronously; it must beat a human retyping a request by far.
    const deadline = Date.now() + 1_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) status = (await post(t, { query: '{ organization { name } }' }, auth(org))).status;
    expect(status).toBe(401);
    // The organization's other token keeps working.
    expect((await post(t, { query: '{ organization { name } }' }, auth({ ...org, apiToken: second.apiToken }))).status).toBe(200);
    expect(await revokeApiToken(t.db, org.apiToken)).toBeNull();
    expect(loadConfig({}).authCacheTtlMs).toBe(10_000);
  });
});
