import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { and, count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { messages, organizations, phoneNumbers } from '../src/db/tables.js';
import { errorCatalog } from '../src/errors.js';
import { addPhoneNumber } from '../src/services/organizations.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { restClient } from './helpers/rest.js';

// POST /api/conversations/:phoneNumber/reply against the published reference, sending through the real
// twilio SDK to a local server that speaks Twilio's Messages API. The reference's own curl and fetch
// examples run unchanged except for host, token and ids.

const ACCOUNT_SID = `AC${'0'.repeat(32)}`;
const AUTH_TOKEN = 'test-auth-token';
const JANE = '+19195551234';

type TwilioRequest = { to: string; from: string; body: string | undefined; mediaUrls: string[]; sendAsMms: string | undefined };

/** Twilio's Messages API as far as the SDK uses it; `refuse` maps a `To` number to a Twilio error. */
async function startFakeTwilio() {
  const received: TwilioRequest[] = [];
  const refuse = new Map<string, { status: number; code: number; message: string }>();
  let delayMs = 0;
  let counter = 0;
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', async () => {
      const expectedAuth = `Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString('base64')}`;
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== expectedAuth) return json(401, { code: 20003, message: 'Authenticate', status: 401 });
      if (req.method === 'GET' && req.url?.startsWith('/v2/PhoneNumbers/')) {
        const phone = decodeURIComponent(req.url.split('/')[3]!.split('?')[0]!);
        return json(200, { phone_number: phone, valid: true, line_type_intelligence: { type: 'mobile', error_code: null } });
      }
      if (req.method !== 'POST' || req.url !== `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`) {
        return json(404, { code: 20404, message: 'Not found', status: 404 });
      }
      const form = new URLSearchParams(raw);
      const request = {
        to: form.get('To')!,
        from: form.get('From')!,
        body: form.get('Body') ?? undefined,
        mediaUrls: form.getAll('MediaUrl'),
        sendAsMms: form.get('SendAsMms') ?? undefined,
      };
      received.push(request);
      if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
      const refusal = refuse.get(request.to);
      if (refusal) {
        return json(refusal.status, {
          code: refusal.code,
          message: refusal.message,
          more_info: `https://www.twilio.com/docs/errors/${refusal.code}`,
          status: refusal.status,
        });
      }
      counter += 1;
      const sid = `SM${String(counter).padStart(32, '0')}`;
      json(201, {
        sid,
        account_sid: ACCOUNT_SID,
        to: request.to,
        from: request.from,
        body: request.body ?? '',
        status: 'queued',
        num_media: String(request.mediaUrls.length),
        num_segments: '1',
        direction: 'outbound-api',
        api_version: '2010-04-01',
        date_created: new Date().toUTCString(),
        uri: `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages/${sid}.json`,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    refuse,
    setDelay: (ms: number) => (delayMs = ms),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let twilioFake: Awaited<ReturnType<typeof startFakeTwilio>>;
let t: TestApp;
let rest: Awaited<ReturnType<typeof restClient>>;
let acme: TestOrg;
let rival: TestOrg;
let acmeDefaultNumberId: string;
let acmeSecondNumberId: string;
let rivalNumberId: string;
const spec = readFileSync(new URL('./fixtures/rest-conversations.md', import.meta.url), 'utf8');
const replySection = spec.slice(spec.indexOf('## Send a reply'), spec.indexOf('## Error responses'));

async function credits(org: TestOrg) {
  const [row] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId));
  return row!.credits;
}
async function storedOutgoing(org: TestOrg) {
  const [row] = await t.db
    .select({ n: count() })
    .from(messages)
    .where(and(eq(messages.organizationId, org.organizationId), eq(messages.direction, 'outgoing')));
  return row!.n;
}

/** The reference's example with its placeholders swapped for this server, token and ids. */
function localize(example: string) {
  return example
    .replaceAll('https://api.amplifi.com', t.url)
    .replaceAll('<token>', acme.apiToken)
    .replaceAll('3f4e5c6d-7a8b-9012-cdef-1234567890ab', acme.organizationId)
    .replaceAll('a2b3c4d5-e6f7-8901-bcde-f23456789012', acmeSecondNumberId);
}

function publishedResponse(): any {
  const section = replySection.slice(replySection.indexOf('### Response'));
  return JSON.parse(/```json[^\n]*\n([\s\S]*?)```/.exec(section)![1]!);
}

const reply = (phone: string, json: unknown, org: TestOrg = acme, headers: Record<string, string> = {}) =>
  rest.call('POST', `/api/conversations/${phone}/reply`, { org, json, headers });

beforeAll(async () => {
  twilioFake = await startFakeTwilio();
  t = await createTestApp({
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    TWILIO_API_BASE_URL: twilioFake.url,
    PUBLIC_BASE_URL: 'https://gw.example.com',
  });
  rest = await restClient(t);
  acme = await t.createOrg('Acme', { credits: 1_000, phoneNumber: '+19195550100' });
  rival = await t.createOrg('Rival', { credits: 1_000, phoneNumber: '+13035550100' });
  acmeSecondNumberId = (await addPhoneNumber(t.db, acme.organizationId, { phoneNumber: '+19195550111' })).phoneNumberId;
  const rows = await t.db.select().from(phoneNumbers);
  acmeDefaultNumberId = rows.find((r) => r.phoneNumber === '+19195550100')!.id;
  rivalNumberId = rows.find((r) => r.phoneNumber === '+13035550100')!.id;
  await t.createContact(acme, { phoneNumber: JANE, firstName: 'Jane', lastName: 'Smith', isTextable: true });
  await t.addMessage(acme, {
    phoneNumber: JANE,
    direction: 'incoming',
    body: 'Can someone call me?',
    createdAt: new Date('2026-01-01T00:00:00.000Z'),
  });
});
afterAll(async () => {
  await t?.close();
  await twilioFake?.close();
});
beforeEach(() => {
  twilioFake.received.length = 0;
  twilioFake.setDelay(0);
});

describe('the reference examples, run as published', () => {
  it('curl: sends the reply and answers the documented shape', async () => {
    const curl = localize(/```bash curl[^\n]*\n([\s\S]*?)```/.exec(replySection)![1]!.trim());
    expect(curl).toContain(`${t.url}/api/conversations/%2B19195551234/reply`);
    const { stdout } = await promisify(execFile)('bash', ['-c', `${curl} --silent --show-error --write-out '\\n%{http_code}'`]);
    const lines = stdout.trim().split('\n');
    const status = Number(lines.pop());
    const result = JSON.parse(lines.join('\n'));
    expect(status).toBe(200);
    rest.validator.assert('/api/conversations/{phoneNumber}/reply', 'POST', status, result);
    expect(result.messageLog.message).toBe('Thanks for reaching out! Our team will follow up shortly.');
    expect(twilioFake.received).toEqual([
      {
        to: JANE,
        from: '+19195550111',
        body: 'Thanks for reaching out! Our team will follow up shortly.',
        mediaUrls: [],
        sendAsMms: undefined,
      },
    ]);
  });

  it('fetch: sends the reply and answers the documented shape, field for field', async () => {
    const code = localize(/```javascript fetch[^\n]*\n([\s\S]*?)```/.exec(replySection)![1]!);
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
    const run = new AsyncFunction('fetch', `${code}\nreturn { status: response.status, result };`);
    const before = await credits(acme);
    const { status, result } = await run(fetch);
    expect(status).toBe(200);
    rest.validator.assert('/api/conversations/{phoneNumber}/reply', 'POST', status, result);

    const example = publishedResponse();
    expect(Object.keys(result).sort()).toEqual(Object.keys(example).sort());
    expect(Object.keys(result.messageLog).sort()).toEqual(Object.keys(example.messageLog).sort());
    expect(result).toMatchObject({
      success: true,
      messageLog: {
        phoneNumber: JANE,
        message: 'Thanks for reaching out! Our team will follow up shortly.',
        status: 'sent',
        sentAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      },
      provider: 'twilio',
      providerMessageId: expect.stringMatching(/^SM[0-9a-f]{32}$/),
    });
    expect(Math.abs(Date.parse(result.messageLog.sentAt) - Date.now())).toBeLessThan(60_000);
    expect(await credits(acme)).toBe(before - 1);

    // The reply is now the newest message of the thread, with the same id.
    const thread = await rest.call('GET', '/api/conversations/%2B19195551234/messages?limit=1', { org: acme });
    expect(thread.body.messages[0]).toMatchObject({
      id: result.messageLog.id,
      direction: 'outgoing',
      status: 'sent',
      message: result.messageLog.message,
    });
    const list = await rest.call('GET', '/api/conversations', { org: acme });
    expect(list.body[0]).toMatchObject({ phoneNumber: JANE, lastMessage: result.messageLog.message });
  });
});

describe('POST /api/conversations/:phoneNumber/reply', () => {
  it('sends from the default number when fromPhoneNumberId is left out, for every phone format', async () => {
    for (const phone of ['%2B19195551234', '+19195551234', encodeURIComponent('(919) 555-1234'), '919.555.1234']) {
      const res = await reply(phone, { message: `format ${phone}` });
      expect(res.status, phone).toBe(200);
      expect(res.body.messageLog.phoneNumber).toBe(JANE);
    }
    expect(twilioFake.received.map((r) => [r.to, r.from])).toEqual(Array(4).fill([JANE, '+19195550100']));
  });

  it('attaches mediaUrl as MMS, honours forceRoute, and normalizes text unless told not to', async () => {
    const mms = await reply(JANE, { message: 'Photo', mediaUrl: 'https://media.example.com/flyer.jpg' });
    expect(mms.status).toBe(200);
    expect(twilioFake.received.at(-1)).toMatchObject({ mediaUrls: ['https://media.example.com/flyer.jpg'] });
    const thread = await rest.call('GET', `/api/conversations/${JANE}/messages?limit=1`, { org: acme });
    expect(thread.body.messages[0]).toMatchObject({
      mediaUrl: 'https://media.example.com/flyer.jpg',
      mediaUrls: ['https://media.example.com/flyer.jpg'],
    });

    expect((await reply(JANE, { message: 'As MMS', forceRoute: 'MMS' })).status).toBe(200);
    expect(twilioFake.received.at(-1)).toMatchObject({ sendAsMms: 'true', mediaUrls: [] });
    expect((await reply(JANE, { message: 'As SMS', forceRoute: 'SMS', normalizeText: null, fromPhoneNumberId: null })).status).toBe(200);
    expect(twilioFake.received.at(-1)).toMatchObject({ sendAsMms: undefined, from: '+19195550100' });

    await reply(JANE, { message: '“Smart” quotes…' });
    expect(twilioFake.received.at(-1)!.body).toBe('"Smart" quotes...');
    await reply(JANE, { message: '“Smart” quotes…', normalizeText: false });
    expect(twilioFake.received.at(-1)!.body).toBe('“Smart” quotes…');
  });

  it('shortens links in the reply and answers the text as sent', async () => {
    const res = await reply(JANE, { message: 'Details: https://www.example.org/events/2026/spring-gala?ref=sms' });
    expect(res.status).toBe(200);
    expect(res.body.messageLog.message).toMatch(/^Details: https:\/\/gw\.example\.com\/\S+$/);
    expect(twilioFake.received.at(-1)!.body).toBe(res.body.messageLog.message);
  });

  it('sends once per Idempotency-Key, replaying the first answer to retries, even concurrent ones', async () => {
    const before = await credits(acme);
    const key = `retry-${randomUUID()}`;
    const first = await reply(JANE, { message: 'Only once' }, acme, { 'Idempotency-Key': key });
    const again = await reply(JANE, { message: 'Only once' }, acme, { 'Idempotency-Key': key });
    expect(first.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(twilioFake.received).toHaveLength(1);

    twilioFake.setDelay(150);
    const racingKey = `race-${randomUUID()}`;
    const racing = await Promise.all(
      Array.from({ length: 5 }, () => reply(JANE, { message: 'Raced' }, acme, { 'Idempotency-Key': racingKey })),
    );
    expect(racing.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(racing.map((r) => r.body.messageLog.id)).size).toBe(1);
    expect(twilioFake.received).toHaveLength(2);
    expect(await credits(acme)).toBe(before - 2);

    // Another organization's identical key is its own.
    await t.createContact(rival, { phoneNumber: JANE, isTextable: true });
    const rivalRes = await reply(JANE, { message: 'Only once' }, rival, { 'Idempotency-Key': key });
    expect(rivalRes.status).toBe(200);
    expect(rivalRes.body.messageLog.id).not.toBe(first.body.messageLog.id);
  });

  it('answers each refusal of the reference with its status and code, sending and charging nothing', async () => {
    const broke = await t.createOrg('Broke', { credits: 0, phoneNumber: '+19195550200' });
    const numberless = await t.createOrg('Numberless', { credits: 100 });
    for (const org of [broke, numberless]) await t.createContact(org, { phoneNumber: JANE, isTextable: true });
    await t.createContact(acme, { phoneNumber: '+19195550301', isOptedIn: false, isTextable: true });
    await t.createContact(acme, { phoneNumber: '+19195550302', isTextable: false });
    await t.createContact(acme, { phoneNumber: '+19195550303', isTextable: null });

    const cases: Array<[string, string, unknown, TestOrg, number]> = [
      ['CONTACT_NOT_FOUND', '+19195550399', { message: 'hi' }, acme, 400],
      ['CONTACT_OPTED_OUT', '+19195550301', { message: 'hi' }, acme, 400],
      ['CONTACT_NON_TEXTABLE', '+19195550302', { message: 'hi' }, acme, 400],
      ['CONTACT_TEXTABILITY_PENDING', '+19195550303', { message: 'hi' }, acme, 400],
      ['NO_FROM_NUMBER', JANE, { message: 'hi' }, numberless, 400],
      ['INVALID_MESSAGE', JANE, { message: '   ' }, acme, 400],
      ['INVALID_MESSAGE', JANE, { message: 'x'.repeat(1601) }, acme, 400],
      ['INVALID_MESSAGE', JANE, { message: 'hi', mediaUrl: 'not a url' }, acme, 400],
      ['INVALID_MESSAGE', JANE, { message: 'hi', mediaUrl: 'https://media.example.com/a.jpg', forceRoute: 'SMS' }, acme, 400],
      ['INSUFFICIENT_CREDITS', JANE, { message: 'hi' }, broke, 402],
      ['FROM_NUMBER_FORBIDDEN', JANE, { message: 'hi', fromPhoneNumberId: rivalNumberId }, acme, 403],
      ['FROM_NUMBER_FORBIDDEN', JANE, { message: 'hi', fromPhoneNumberId: randomUUID() }, acme, 403],
    ];
    const creditsBefore = await Promise.all([acme, broke, numberless].map(credits));
    const storedBefore = await storedOutgoing(acme);
    for (const [code, phone, body, org, status] of cases) {
      const res = await reply(encodeURIComponent(phone), body, org);
      expect(`${code} ${res.status} ${res.body.code}`).toBe(`${code} ${status} ${code}`);
      expect(errorCatalog[code as keyof typeof errorCatalog].status).toBe(status);
      expect(res.body.success).toBe(false);
      expect(typeof res.body.message).toBe('string');
    }
    expect(twilioFake.received).toEqual([]);
    expect(await Promise.all([acme, broke, numberless].map(credits))).toEqual(creditsBefore);
    expect(await storedOutgoing(acme)).toBe(storedBefore);
  });

  it('answers 502 PROVIDER_ERROR when Twilio refuses, refunding the credits; 21610 marks the contact opted out', async () => {
    await t.createContact(acme, { phoneNumber: '+19195550401', isTextable: true });
    await t.createContact(acme, { phoneNumber: '+19195550402', isTextable: true });
    twilioFake.refuse.set('+19195550401', {
      status: 400,
      code: 21606,
      message: "The 'From' phone number provided is not a valid message-capable Twilio phone number.",
    });
    twilioFake.refuse.set('+19195550402', { status: 400, code: 21610, message: 'Attempt to send to unsubscribed recipient' });
    const before = await credits(acme);

    const failed = await reply('%2B19195550401', { message: 'hi' });
    expect(failed.status).toBe(502);
    expect(failed.body).toMatchObject({ success: false, code: 'PROVIDER_ERROR' });
    const thread = await rest.call('GET', '/api/conversations/%2B19195550401/messages', { org: acme });
    expect(thread.body.messages.map((m: any) => m.status)).toEqual(['failed']);

    const unsubscribed = await reply('%2B19195550402', { message: 'hi' });
    expect(unsubscribed.status).toBe(400);
    expect(unsubscribed.body.code).toBe('CONTACT_OPTED_OUT');
    const retry = await reply('%2B19195550402', { message: 'hi again' });
    expect(retry.body.code).toBe('CONTACT_OPTED_OUT');
    expect(twilioFake.received.map((r) => r.to)).toEqual(['+19195550401', '+19195550402']);
    expect(await credits(acme)).toBe(before);
  });

  it('lets a contact with a pending lookup through once it has texted in, as the reference warns', async () => {
    await t.createContact(acme, { phoneNumber: '+19195550501', isTextable: null });
    await t.addMessage(acme, { phoneNumber: '+19195550501', direction: 'incoming', body: 'hello?', createdAt: new Date() });
    const res = await reply('%2B19195550501', { message: 'Hi there' });
    expect(res.status).toBe(200);
  });

  it("keeps tenants apart: another organization cannot reach Acme's contacts or send from its numbers", async () => {
    const res = await reply('%2B19195550301', { message: 'hi' }, rival);
    expect(res.body.code).toBe('CONTACT_NOT_FOUND');
    const forbidden = await reply(JANE, { message: 'hi', fromPhoneNumberId: acmeDefaultNumberId }, rival);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe('FROM_NUMBER_FORBIDDEN');
    expect(twilioFake.received).toEqual([]);
  });
});
