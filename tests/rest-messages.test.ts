import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { restClient } from './helpers/rest.js';

// GET /api/conversations/:phoneNumber/messages against the published reference: shape, status mapping,
// phone formats, limit rules, keyset pagination through 500 messages, cursors, tenant isolation.

let t: TestApp;
let rest: Awaited<ReturnType<typeof restClient>>;
let acme: TestOrg;
let rival: TestOrg;
const second = 1_000;
const base = Date.parse('2025-04-23T17:30:00.000Z');
const JANE = '+19195551234';
const BULK = '+19195550500';
let bulkIds: string[] = [];

/** The messages example under "Get conversation messages" in the published reference. */
function publishedExample(): { messages: Array<Record<string, unknown>>; timezone: string } {
  const spec = readFileSync(new URL('./fixtures/rest-conversations.md', import.meta.url), 'utf8');
  const section = spec.slice(spec.indexOf('## Get conversation messages'), spec.indexOf('## Send a reply'));
  return JSON.parse(/```json[^\n]*\n([\s\S]*?)```/.exec(section)![1]!);
}

const typeOf = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);
const messagesOf = (phone: string, query = '', org: TestOrg = acme) =>
  rest.call('GET', `/api/conversations/${phone}/messages${query}`, { org });

beforeAll(async () => {
  t = await createTestApp();
  rest = await restClient(t);
  acme = await t.createOrg('Acme', { timezone: 'America/New_York' });
  rival = await t.createOrg('Rival', { timezone: 'Europe/Berlin' });
  await t.createContact(acme, { phoneNumber: JANE, firstName: 'Jane', lastName: 'Smith', isTextable: true });

  // Jane's thread, oldest first: the spec's two messages, then one outgoing message per provider status.
  await t.addMessage(acme, {
    phoneNumber: JANE,
    direction: 'outgoing',
    body: 'Hi Jane, just confirming your RSVP for April 28!',
    status: 'delivered',
    provider: 'twilio',
    providerMessageId: 'SM-rsvp',
    createdAt: new Date(base),
  });
  await t.addMessage(acme, {
    phoneNumber: JANE,
    direction: 'incoming',
    body: 'Sounds great, see you there!',
    sentiment: 'positive',
    sentimentScore: 0.92,
    category: 'general',
    requiresResponse: false,
    optOutDetected: false,
    createdAt: new Date(base + 75 * 60 * second),
  });
  const statuses = ['accepted', 'scheduled', 'queued', 'sending', 'sent', 'delivered', 'read', 'undelivered', 'failed', 'canceled', null];
  for (const [i, status] of statuses.entries()) {
    await t.addMessage(acme, {
      phoneNumber: JANE,
      direction: 'outgoing',
      body: `status ${status}`,
      status,
      createdAt: new Date(base + (2 + i) * 3600 * second),
    });
  }
  await t.addMessage(acme, {
    phoneNumber: JANE,
    direction: 'incoming',
    body: 'Look at this',
    mediaUrls: ['https://media.example.com/a.jpg', 'https://media.example.com/b.png'],
    sentiment: 'neutral',
    sentimentScore: 0,
    category: 'general',
    requiresResponse: true,
    optOutDetected: false,
    createdAt: new Date(base + 20 * 3600 * second),
  });

  // 500 messages in one conversation, five to a timestamp, so the id tie-break is exercised.
  for (let i = 0; i < 500; i += 1) {
    const row = await t.addMessage(acme, {
      phoneNumber: BULK,
      direction: i % 3 === 0 ? 'outgoing' : 'incoming',
      body: `bulk ${i}`,
      status: i % 3 === 0 ? 'delivered' : null,
      createdAt: new Date(base + Math.floor(i / 5) * second),
    });
    bulkIds.push(row!.message.id);
  }

  // Rival talks to Jane's number too.
  await t.addMessage(rival, { phoneNumber: JANE, direction: 'incoming', body: 'rival secret', createdAt: new Date(base + 5 * second) });
}, 240_000);
afterAll(() => t.close());

describe('GET /api/conversations/:phoneNumber/messages', () => {
  it('answers the published shape with the fields of the example, newest first, and the org timezone', async () => {
    const example = publishedExample();
    const res = await messagesOf('%2B19195551234');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['cursor', 'hasMore', 'messages', 'timezone']);
    expect(res.body.timezone).toBe('America/New_York');
    expect(res.body).toMatchObject({ cursor: null, hasMore: false });

    // Every message carries every field the reference shows (the union of its two examples).
    const fields = [...new Set(example.messages.flatMap((m) => Object.keys(m)))].sort();
    for (const message of res.body.messages) expect(Object.keys(message).sort()).toEqual(fields);

    const [incoming, outgoing] = res.body.messages.slice(-2); // the two oldest, newest first
    expect(incoming).toMatchObject({ ...example.messages[0], id: expect.any(String), timestamp: '2025-04-23T18:45:00.000Z' });
    expect(outgoing).toMatchObject({ ...example.messages[1], id: expect.any(String) });
    expect(outgoing).toMatchObject({
      mediaUrls: null,
      sentiment: null,
      sentimentScore: null,
      messageCategory: null,
      requiresResponse: null,
      optOutDetected: null,
    });
    for (const [field, value] of Object.entries(example.messages[0]!))
      expect(`${field}: ${typeOf(incoming[field])}`).toBe(`${field}: ${typeOf(value)}`);

    const times = res.body.messages.map((m: any) => m.timestamp);
    expect([...times].sort().reverse()).toEqual(times);
    for (const time of times) expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('shows exactly sent/delivered/failed/undelivered for outgoing messages and null for incoming; replies still scheduled or canceled are left out', async () => {
    const res = await messagesOf(JANE);
    const byBody = Object.fromEntries(res.body.messages.map((m: any) => [m.message, m.status]));
    expect(byBody).not.toHaveProperty('status scheduled');
    expect(byBody).not.toHaveProperty('status canceled');
    expect(byBody).toMatchObject({
      'status accepted': 'sent',
      'status queued': 'sent',
      'status sending': 'sent',
      'status sent': 'sent',
      'status delivered': 'delivered',
      'status read': 'delivered',
      'status undelivered': 'undelivered',
      'status failed': 'failed',
      'status null': 'sent',
      'Sounds great, see you there!': null,
      'Look at this': null,
    });
  });

  it('gives the first media URL as mediaUrl and all of them as mediaUrls', async () => {
    const res = await messagesOf(JANE, '?limit=1');
    expect(res.body.messages[0]).toMatchObject({
      message: 'Look at this',
      mediaUrl: 'https://media.example.com/a.jpg',
      mediaUrls: ['https://media.example.com/a.jpg', 'https://media.example.com/b.png'],
      sentiment: 'neutral',
      sentimentScore: 0,
      requiresResponse: true,
    });
  });

  it('accepts every standard US format, URL-encoded or not, for the same conversation', async () => {
    const expected = (await messagesOf('%2B19195551234')).body;
    expect(expected.messages.length).toBeGreaterThan(10);
    const formats = [
      '%2B19195551234',
      '+19195551234',
      encodeURIComponent('(919) 555-1234'),
      '(919)%20555-1234',
      '919.555.1234',
      '9195551234',
      '919-555-1234',
      '1-919-555-1234',
    ];
    for (const format of formats) {
      const res = await messagesOf(format);
      expect(res.status, format).toBe(200);
      expect(res.body, format).toEqual(expected);
    }
  });

  it('answers 400 INVALID_PHONE_NUMBER for a number that is not one', async () => {
    for (const bad of ['abc', '123', '%2B1', '555-1234', '%E0%A4%A', encodeURIComponent('+1 919 555 12345 6789'), 'x'.repeat(80)]) {
      const res = await messagesOf(bad);
      expect(res.status, bad).toBe(400);
      expect(res.body, bad).toMatchObject({ success: false, code: 'INVALID_PHONE_NUMBER' });
    }
  });

  it('answers 200 with an empty page for a number without a conversation', async () => {
    const res = await messagesOf('(704) 555-0199');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ messages: [], timezone: 'America/New_York', cursor: null, hasMore: false });
  });

  it('reads 50 by default, caps limit at 200 and refuses limits below 1 or not integers', async () => {
    expect((await messagesOf(BULK)).body.messages).toHaveLength(50);
    expect((await messagesOf(BULK, '?limit=7')).body.messages).toHaveLength(7);
    for (const limit of ['200', '201', '500', '100000', '99999999999999999999']) {
      const res = await messagesOf(BULK, `?limit=${limit}`);
      expect(res.status, limit).toBe(200);
      expect(res.body.messages, limit).toHaveLength(200);
      expect(res.body.hasMore).toBe(true);
    }
    for (const limit of ['0', '-1', '1.5', 'ten', '', '1e2', '0x10', '20&limit=30']) {
      const res = await messagesOf(BULK, `?limit=${limit}`);
      expect(res.status, limit).toBe(400);
      expect(res.body, limit).toMatchObject({ success: false, code: 'INVALID_PARAMETER' });
    }
  });

  it('pages through 500 messages (equal timestamps included) with no duplicate and no gap', async () => {
    const expected = [...bulkIds].reverse(); // appended in time order, ids tie-broken by the keyset
    const all = await t.db.query.messages.findMany({
      where: (m, { eq }) => eq(m.organizationId, acme.organizationId),
      orderBy: (m, { desc }) => [desc(m.createdAt), desc(m.id)],
    });
    const bulkOrder = all.filter((m) => bulkIds.includes(m.id)).map((m) => m.id);
    expect(new Set(expected)).toEqual(new Set(bulkOrder));

    for (const limit of [37, 200]) {
      const seen: string[] = [];
      const pageSizes: number[] = [];
      let cursor: string | null = null;
      for (let requests = 0; requests < 100; requests += 1) {
        const query: string = `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await messagesOf(encodeURIComponent('(919) 555-0500'), query);
        expect(res.status).toBe(200);
        seen.push(...res.body.messages.map((m: any) => m.id));
        pageSizes.push(res.body.messages.length);
        expect(res.body.hasMore).toBe(res.body.cursor !== null);
        if (!res.body.hasMore) break;
        cursor = res.body.cursor;
      }
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(bulkOrder);
      expect(pageSizes).toEqual(limit === 200 ? [200, 200, 100] : [...Array(13).fill(37), 500 - 13 * 37]);
    }
  });

  it('answers 400 INVALID_CURSOR for a cursor that is garbage or belongs to another conversation', async () => {
    const janeCursor = (await messagesOf(JANE, '?limit=2')).body.cursor;
    expect(typeof janeCursor).toBe('string');
    // A conversation list cursor, a tampered one, garbage, and Jane's cursor used on another thread.
    const listCursor = Buffer.from(`conv:${acme.organizationId}:${base}:${bulkIds[0]}`).toString('base64url');
    for (const [phone, cursor] of [
      [BULK, janeCursor],
      [BULK, 'not-a-cursor'],
      [BULK, '%%%'],
      [BULK, listCursor],
      [BULK, janeCursor.slice(0, -3)],
      ['(704) 555-0199', janeCursor],
    ]) {
      const res = await messagesOf(phone, `?cursor=${encodeURIComponent(cursor)}`);
      expect(res.status, cursor).toBe(400);
      expect(res.body, cursor).toMatchObject({ success: false, code: 'INVALID_CURSOR' });
    }
    // The same cursor works where it was issued.
    const next = await messagesOf(JANE, `?limit=2&cursor=${encodeURIComponent(janeCursor)}`);
    expect(next.status).toBe(200);
    expect(next.body.messages).toHaveLength(2);
  });

  it('keeps tenants apart: the same number shows each organization only its own messages and timezone', async () => {
    const own = await messagesOf(JANE, '', rival);
    expect(own.body.timezone).toBe('Europe/Berlin');
    expect(own.body.messages.map((m: any) => m.message)).toEqual(['rival secret']);
    const acmeJane = await messagesOf(JANE);
    expect(JSON.stringify(acmeJane.body)).not.toContain('rival');
    // Acme's cursor means nothing to Rival's conversation with the same number.
    const acmeCursor = (await messagesOf(JANE, '?limit=1')).body.cursor;
    const res = await messagesOf(JANE, `?cursor=${encodeURIComponent(acmeCursor)}`, rival);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('INVALID_CURSOR');
    // Rival has no conversation with the bulk number at all.
    expect((await messagesOf(BULK, '', rival)).body).toEqual({ messages: [], timezone: 'Europe/Berlin', cursor: null, hasMore: false });
  });

  it('reads a page with a fixed number of statements, however long the page', async () => {
    await messagesOf(BULK, '?limit=1');
    for (const limit of [1, 200]) {
      const stop = t.deps.database.statementLog.record();
      const res = await messagesOf(BULK, `?limit=${limit}`);
      const statements = stop();
      expect(res.body.messages).toHaveLength(limit);
      // one statement: the organization's timezone, the conversation and its page
      expect(statements).toHaveLength(1);
    }
  });
});
