import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { and, count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokens, messages } from '../src/db/tables.js';
import { errorCatalog } from '../src/errors.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { restClient } from './helpers/rest.js';

// The REST surface as a whole: its OpenAPI document, auth, routing, and the request errors every
// route shares, each answered as `{ success: false, code, message }` with the documented status.

let t: TestApp;
let rest: Awaited<ReturnType<typeof restClient>>;
let acme: TestOrg;
let rival: TestOrg;
const spec = readFileSync(new URL('./fixtures/rest-conversations.md', import.meta.url), 'utf8');
const REPLY = '/api/conversations/%2B19195551234/reply';

beforeAll(async () => {
  t = await createTestApp();
  rest = await restClient(t);
  acme = await t.createOrg('Acme', { credits: 100, phoneNumber: '+19195550100' });
  rival = await t.createOrg('Rival');
  await t.createContact(acme, { phoneNumber: '+19195551234', firstName: 'Jane', lastName: 'Smith', isTextable: true });
  await t.addMessage(acme, {
    phoneNumber: '+19195551234',
    direction: 'incoming',
    body: 'Hello',
    createdAt: new Date('2026-01-01T00:00:00.000Z'),
  });
});
afterAll(() => t.close());

async function storedMessages() {
  const [row] = await t.db.select({ n: count() }).from(messages).where(eq(messages.organizationId, acme.organizationId));
  return row!.n;
}

describe('GET /api/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document, served without a token', async () => {
    const res = await fetch(`${t.url}/api/openapi.json`);
    expect(res.status).toBe(200);
    const doc = await res.json();
    expect(doc.openapi).toMatch(/^3\.1\./);
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(() => validator.resolveRefs()).not.toThrow();
  });

  it('describes every path and method of the published reference', async () => {
    const published = [...spec.matchAll(/^(GET|POST|PUT|PATCH|DELETE) (\/api\/\S+)$/gm)].map(([, method, path]) => [
      method!.toLowerCase(),
      path!.replace(/:(\w+)/g, '{$1}'),
    ]);
    expect(published).toHaveLength(3);
    for (const [method, path] of published) expect(rest.doc.paths[path!]?.[method!], `${method} ${path}`).toBeDefined();
  });

  it("documents every error of the reference's table with its status, and the statuses come from the error catalog", async () => {
    const reply = rest.doc.paths['/api/conversations/{phoneNumber}/reply'].post;
    const documented = new Map<string, string>();
    for (const [status, response] of Object.entries<any>(reply.responses)) {
      const codes = response.content?.['application/json']?.schema?.properties?.code?.enum ?? [];
      for (const code of codes) documented.set(code, status);
    }
    const table = [...spec.matchAll(/^\|\s*`(\d{3})`\s*\|\s*(`([A-Z_]+)`|—)\s*\|\s*(.+?)\s*\|$/gm)];
    expect(table.length).toBe(6);
    const byMeaning: Record<string, string> = { '402': 'INSUFFICIENT_CREDITS', '403': 'FROM_NUMBER_FORBIDDEN' };
    for (const [, status, , code] of table) {
      const expected = code ?? byMeaning[status!]!;
      expect(documented.get(expected), expected).toBe(status);
    }
    for (const [code, status] of documented) expect(String(errorCatalog[code as keyof typeof errorCatalog].status)).toBe(status);
    for (const code of [
      'CONTACT_TEXTABILITY_PENDING',
      'INVALID_MESSAGE',
      'PROVIDER_ERROR',
      'INVALID_BODY',
      'UNAUTHENTICATED',
      'FORBIDDEN',
    ]) {
      expect(documented.has(code), code).toBe(true);
    }
    expect(documented.get('PROVIDER_ERROR')).toBe('502');
  });

  it('checks responses for real: the validator refuses a body off the documented shape', () => {
    const good = { messages: [], timezone: 'America/New_York', cursor: null, hasMore: false };
    const path = '/api/conversations/{phoneNumber}/messages';
    expect(() => rest.validator.assert(path, 'GET', 200, good)).not.toThrow();
    expect(() => rest.validator.assert(path, 'GET', 200, { ...good, extra: 1 })).toThrow();
    expect(() => rest.validator.assert(path, 'GET', 200, { ...good, hasMore: 'no' })).toThrow();
    expect(() => rest.validator.assert('/api/conversations', 'GET', 200, [{ phoneNumber: '+19195551234' }])).toThrow();
    const error = { success: false, code: 'INVALID_CURSOR', message: 'bad' };
    expect(() => rest.validator.assert(path, 'GET', 400, error)).not.toThrow();
    expect(() => rest.validator.assert(path, 'GET', 400, { ...error, code: 'CONTACT_NOT_FOUND' })).toThrow();
    expect(() => rest.validator.assert(path, 'GET', 400, { ...error, success: true })).toThrow();
  });
});

describe('auth', () => {
  const routes: Array<[string, string]> = [
    ['GET', '/api/conversations'],
    ['GET', '/api/conversations/%2B19195551234/messages'],
    ['POST', REPLY],
  ];

  it('answers 401 UNAUTHENTICATED with WWW-Authenticate for a missing, malformed, unknown or revoked token', async () => {
    const { apiToken: revoked, organizationId } = await t.createOrg('Revoked');
    await t.db.update(apiTokens).set({ revokedAt: new Date() }).where(eq(apiTokens.organizationId, organizationId));
    for (const [method, path] of routes) {
      for (const authorization of [undefined, 'Basic abc', 'Bearer', 'Bearer cgw_not-a-real-token', `Bearer ${revoked}`]) {
        const headers: Record<string, string> = authorization ? { authorization } : {};
        const res = await rest.call(method, path, { headers, json: method === 'POST' ? { message: 'hi' } : undefined });
        expect(res.status, `${method} ${path} ${authorization}`).toBe(401);
        expect(res.body).toMatchObject({ success: false, code: 'UNAUTHENTICATED' });
        expect(res.headers.get('www-authenticate')).toBe('Bearer');
      }
    }
  });

  it('answers 403 FORBIDDEN for an organization the token does not grant, the same whether it exists or not', async () => {
    for (const [method, path] of routes) {
      const bodies = [];
      for (const organizationId of [rival.organizationId, randomUUID(), 'not-a-uuid']) {
        const res = await rest.call(method, path, {
          headers: { authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': organizationId },
          json: method === 'POST' ? { message: 'hi' } : undefined,
        });
        expect(res.status, `${method} ${path}`).toBe(403);
        expect(res.body).toMatchObject({ success: false, code: 'FORBIDDEN' });
        bodies.push(res.body);
      }
      expect(bodies[0]).toEqual(bodies[1]);
    }
    expect(await storedMessages()).toBe(1);
  });

  it("uses the token's organization when x-organization-id is left out", async () => {
    const res = await rest.call('GET', '/api/conversations', { headers: { authorization: `Bearer ${acme.apiToken}` } });
    expect(res.status).toBe(200);
    expect(res.body.map((c: any) => c.phoneNumber)).toEqual(['+19195551234']);
  });
});

describe('routing', () => {
  it('answers JSON 404 NOT_FOUND for unknown routes under /api, with or without a token', async () => {
    for (const path of [
      '/api',
      '/api/',
      '/api/nope',
      '/api/conversations/%2B19195551234',
      '/api/conversations/%2B19195551234/messages/extra',
      '/api/conversations//messages',
      '/api/Conversations',
    ]) {
      for (const org of [undefined, acme]) {
        const res = await rest.call('GET', path, { org });
        expect(res.status, path).toBe(404);
        expect(res.body).toMatchObject({ success: false, code: 'NOT_FOUND' });
      }
    }
  });

  it('answers 405 METHOD_NOT_ALLOWED with Allow for a known route and another method', async () => {
    for (const [method, path, allow] of [
      ['POST', '/api/conversations', 'GET'],
      ['DELETE', '/api/conversations/%2B19195551234/messages', 'GET'],
      ['GET', REPLY, 'POST'],
      ['PUT', REPLY, 'POST'],
      ['POST', '/api/openapi.json', 'GET'],
    ] as const) {
      const res = await rest.call(method, path, { org: acme });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(res.body).toMatchObject({ success: false, code: 'METHOD_NOT_ALLOWED' });
    }
  });

  it('tolerates a trailing slash and answers CORS preflights for browser clients', async () => {
    expect((await rest.call('GET', '/api/conversations/', { org: acme })).status).toBe(200);
    const preflight = await fetch(`${t.url}${REPLY}`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(204);
    // Any origin is allowed by default (CORS_ORIGINS=*): it is echoed, as Yoga answers GraphQL's.
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(preflight.headers.get('access-control-allow-methods')).toBe('POST');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(
      /authorization.*content-type.*x-organization-id.*idempotency-key/,
    );
    const res = await rest.call('GET', '/api/conversations', { org: acme, headers: { origin: 'https://app.example.com' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(res.headers.get('vary')).toMatch(/origin/i);
  });
});

describe('POST reply: request errors, answered before anything is sent', () => {
  const post = (init: { body?: string; headers?: Record<string, string>; json?: unknown; path?: string }) =>
    rest.call('POST', init.path ?? REPLY, { org: acme, headers: init.headers, json: init.json, body: init.body });

  it('answers 400 INVALID_BODY for a wrong content type, malformed JSON or a body that is not an object', async () => {
    const cases: Array<[string, { body?: string; headers?: Record<string, string> }]> = [
      ['no content type', { body: '{"message":"hi"}' }],
      ['text/plain', { body: '{"message":"hi"}', headers: { 'content-type': 'text/plain' } }],
      ['form', { body: 'message=hi', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
      ['malformed', { body: '{"message": "hi",', headers: { 'content-type': 'application/json' } }],
      ['trailing garbage', { body: '{"message": "hi"} x', headers: { 'content-type': 'application/json' } }],
      ['empty', { body: '', headers: { 'content-type': 'application/json' } }],
      ['array', { body: '[{"message":"hi"}]', headers: { 'content-type': 'application/json' } }],
      ['string', { body: '"hi"', headers: { 'content-type': 'application/json' } }],
      ['null', { body: 'null', headers: { 'content-type': 'application/json' } }],
    ];
    for (const [name, init] of cases) {
      const res = await post(init);
      expect(res.status, name).toBe(400);
      expect(res.body, name).toMatchObject({ success: false, code: 'INVALID_BODY' });
    }
    expect(await storedMessages()).toBe(1);
  });

  it('answers 400 INVALID_BODY for fields of the wrong type and INVALID_MESSAGE for a missing or empty message', async () => {
    const wrongTypes = [
      { message: 'hi', fromPhoneNumberId: 'not-a-uuid' },
      { message: 'hi', fromPhoneNumberId: 42 },
      { message: 'hi', mediaUrl: ['https://example.com/a.jpg'] },
      { message: 'hi', normalizeText: 'yes' },
      { message: 'hi', forceRoute: 'FAX' },
      { message: 'hi', forceRoute: 'sms' },
      { message: 'hi', mediaUrls: 'https://example.com/a.jpg' },
    ];
    for (const json of wrongTypes) {
      const res = await post({ json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(res.body, JSON.stringify(json)).toMatchObject({ success: false, code: 'INVALID_BODY' });
    }
    for (const json of [
      {},
      { message: '' },
      { message: null },
      { message: 42 },
      { message: ['hi'] },
      { fromPhoneNumberId: randomUUID() },
    ]) {
      const res = await post({ json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(res.body, JSON.stringify(json)).toMatchObject({ success: false, code: 'INVALID_MESSAGE' });
    }
    expect(await storedMessages()).toBe(1);
  });

  it('answers 413 PAYLOAD_TOO_LARGE for an oversized body, declared or streamed', async () => {
    const big = JSON.stringify({ message: 'x'.repeat(200_000) });
    const res = await post({ body: big, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ success: false, code: 'PAYLOAD_TOO_LARGE' });
    // Chunked, without a Content-Length, so the limit is enforced while reading.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 20; i += 1) controller.enqueue(new TextEncoder().encode(i === 0 ? '{"message":"' : 'y'.repeat(10_000)));
        controller.close();
      },
    });
    const chunked = await fetch(`${t.url}${REPLY}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${acme.apiToken}`, 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(await chunked.json()).toMatchObject({ success: false, code: 'PAYLOAD_TOO_LARGE' });
    expect(await storedMessages()).toBe(1);
  });

  it('answers 400 INVALID_PHONE_NUMBER for a bad number and INVALID_PARAMETER for an unusable Idempotency-Key', async () => {
    const phone = await post({ path: '/api/conversations/not-a-phone/reply', json: { message: 'hi' } });
    expect(phone.status).toBe(400);
    expect(phone.body).toMatchObject({ success: false, code: 'INVALID_PHONE_NUMBER' });
    for (const key of ['x'.repeat(256), '   ']) {
      const res = await post({ json: { message: 'hi' }, headers: { 'idempotency-key': key } });
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ success: false, code: 'INVALID_PARAMETER' });
    }
    expect(await storedMessages()).toBe(1);
  });
});

describe('errors never leak as 500', () => {
  it('keeps GET routes answering typed errors for odd but well-formed requests', async () => {
    const odd = [
      '/api/conversations?unread=%FF',
      '/api/conversations?search=%25%5F%5C',
      `/api/conversations?search=${'a'.repeat(5000)}`,
      '/api/conversations/%2B19195551234/messages?cursor=' + 'A'.repeat(5000),
      '/api/conversations/%2B19195551234/messages?limit=%00',
    ];
    for (const path of odd) {
      const res = await rest.call('GET', path, { org: acme });
      expect(res.status, path).toBeLessThan(500);
    }
    const [contact] = await t.db
      .select({ n: count() })
      .from(messages)
      .where(and(eq(messages.organizationId, acme.organizationId)));
    expect(contact!.n).toBe(1);
  });
});
