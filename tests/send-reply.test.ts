import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consentEvents, contacts, conversations, messages, messageStatusEvents, organizations, shortLinks } from '../src/db/tables.js';
import { createDemoOrganization } from '../src/services/demo.js';
import { addPhoneNumber } from '../src/services/organizations.js';
import { sendReply } from '../src/services/replies/index.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// sendReply / previewReply end to end over HTTP, with the simulated provider (no Twilio credentials).

const PUBLIC = 'https://sms.example.test';
let t: TestApp;
let acme: TestOrg;
let acmeNumber: string;
let seq = 0;

/** A fresh US number (555 exchange) whose last digit is not 0, the simulated lookup's landline rule. */
function phone(): string {
  do seq += 1;
  while (seq % 10 === 0);
  return `+1919555${2000 + seq}`;
}

const SEND = `mutation Send($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on Error { code message }
    ... on InsufficientCreditsError { required balance }
    ... on ContactOptedOutError { phoneNumber }
    ... on SendReplyPayload {
      provider providerMessageId segments encoding creditsCharged
      # Error.message is a String, so the payload's Message needs an alias in the same selection.
      sent: message { id uuid body status direction mediaUrls segments encoding creditsCharged links { url shortUrl clicks } }
    }
  }
}`;

const PREVIEW = `query Preview($input: SendReplyInput!) {
  previewReply(input: $input) { text encoding segments route credits error { __typename code message } }
}`;

async function send(org: TestOrg, input: Record<string, unknown>) {
  const res = await t.graphql(SEND, { input }, org);
  expect(res.body.errors).toBeUndefined();
  const result = res.body.data.sendReply;
  // Tests read the sent message as `message`, as the service names it.
  return result.__typename === 'SendReplyPayload' ? { ...result, message: result.sent } : result;
}

async function preview(org: TestOrg, input: Record<string, unknown>) {
  const res = await t.graphql(PREVIEW, { input }, org);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.previewReply;
}

async function balance(org: TestOrg): Promise<number> {
  const [row] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId));
  return row!.credits;
}

async function messageCount(org: TestOrg): Promise<number> {
  const [row] = await t.db
    .select({ n: sql<number>`count(*)::int` })
    .from(messages)
    .where(eq(messages.organizationId, org.organizationId));
  return row!.n;
}

async function textableContact(
  org: TestOrg,
  overrides: Partial<{ isOptedIn: boolean; isTextable: boolean | null; phoneNumber: string }> = {},
) {
  return t.createContact(org, { phoneNumber: overrides.phoneNumber ?? phone(), firstName: 'Pat', isTextable: true, ...overrides });
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

beforeAll(async () => {
  t = await createTestApp({ PUBLIC_BASE_URL: PUBLIC, SIMULATED_STATUS_DELAY_MS: '30' });
  acmeNumber = '+19195550101';
  acme = await t.createOrg('Acme', { credits: 10_000, phoneNumber: acmeNumber });
});
afterAll(() => t?.close());

describe('sendReply with the simulated provider', () => {
  it('stores, charges, sends, and reaches DELIVERED through the status path', async () => {
    const contact = await textableContact(acme);
    const before = await balance(acme);
    const result = await send(acme, { phoneNumber: contact.phoneNumber, message: 'Thanks for reaching out!' });
    expect(result).toMatchObject({
      __typename: 'SendReplyPayload',
      provider: 'simulated',
      segments: 1,
      encoding: 'GSM-7',
      creditsCharged: 1,
      message: { body: 'Thanks for reaching out!', direction: 'OUTGOING', creditsCharged: 1, encoding: 'GSM-7', segments: 1 },
    });
    expect(result.providerMessageId).toMatch(/^SM[0-9a-f]{32}$/);
    expect(['QUEUED', 'SENT', 'DELIVERED']).toContain(result.message.status);
    expect(await balance(acme)).toBe(before - 1);

    // The conversation moved forward (last message, direction).
    const [conversation] = await t.db
      .select()
      .from(conversations)
      .where(and(eq(conversations.organizationId, acme.organizationId), eq(conversations.phoneNumber, contact.phoneNumber)));
    expect(conversation).toMatchObject({
      lastMessageId: result.message.uuid,
      lastMessageBody: 'Thanks for reaching out!',
      lastDirection: 'outgoing',
    });

    // Simulated callbacks: sent, then delivered, applied by applyMessageStatus (history kept).
    const status = await waitFor(
      async () =>
        (await t.graphql(`{ conversation(phoneNumber: "${contact.phoneNumber}") { lastMessage { status } } }`, {}, acme)).body.data
          .conversation.lastMessage.status,
      (value) => value === 'DELIVERED',
    );
    expect(status).toBe('DELIVERED');
    const history = await t.db
      .select({ status: messageStatusEvents.status })
      .from(messageStatusEvents)
      .where(and(eq(messageStatusEvents.organizationId, acme.organizationId), eq(messageStatusEvents.messageId, result.message.uuid)))
      .orderBy(messageStatusEvents.createdAt, messageStatusEvents.id);
    expect(history.map((h) => h.status)).toEqual(['queued', 'sent', 'delivered']);
  });

  it('sends from a chosen number by Node id or UUID', async () => {
    const second = await addPhoneNumber(t.db, acme.organizationId, { phoneNumber: '+19195550102' });
    const contact = await textableContact(acme);
    const nodeId = Buffer.from(`PhoneNumber:${second.phoneNumberId}`).toString('base64');
    for (const fromPhoneNumberId of [second.phoneNumberId, nodeId]) {
      const result = await send(acme, { phoneNumber: contact.phoneNumber, message: 'From the other line', fromPhoneNumberId });
      expect(result.__typename).toBe('SendReplyPayload');
      const [row] = await t.db
        .select()
        .from(messages)
        .where(and(eq(messages.organizationId, acme.organizationId), eq(messages.id, result.message.uuid)));
      expect(row!.fromPhoneNumberId).toBe(second.phoneNumberId);
    }
  });

  it('accepts any US format for the phone number and refuses an invalid one with INVALID_PHONE_NUMBER', async () => {
    const contact = await textableContact(acme, { phoneNumber: '+19195557771' });
    const ok = await send(acme, { phoneNumber: '(919) 555-7771', message: 'hi' });
    expect(ok.__typename).toBe('SendReplyPayload');
    expect(contact.phoneNumber).toBe('+19195557771');
    const res = await t.graphql(SEND, { input: { phoneNumber: 'not a phone', message: 'hi' } }, acme);
    expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_PHONE_NUMBER' });
  });
});

describe('credit arithmetic', () => {
  const long = `https://example.org/${'very-long-path/'.repeat(12)}?ref=campaign`;
  // [name, input, expected credits, segments, encoding]
  const cases: Array<[string, Record<string, unknown>, number, number, 'GSM-7' | 'UCS-2']> = [
    ['160 GSM-7 characters', { message: 'a'.repeat(160) }, 1, 1, 'GSM-7'],
    ['161 GSM-7 characters', { message: 'a'.repeat(161) }, 2, 2, 'GSM-7'],
    ['307 GSM-7 characters', { message: 'a'.repeat(307) }, 3, 3, 'GSM-7'],
    ['81 euro signs (extension characters count double)', { message: '€'.repeat(81) }, 2, 2, 'GSM-7'],
    ['70 Cyrillic characters', { message: 'ж'.repeat(70) }, 1, 1, 'UCS-2'],
    ['71 Cyrillic characters', { message: 'ж'.repeat(71) }, 2, 2, 'UCS-2'],
    ['135 Cyrillic characters', { message: 'ж'.repeat(135) }, 3, 3, 'UCS-2'],
    ['smart quotes, normalized', { message: `“${'a'.repeat(150)}”` }, 1, 1, 'GSM-7'],
    ['smart quotes, not normalized', { message: `“${'a'.repeat(150)}”`, normalizeText: false }, 3, 3, 'UCS-2'],
    ['emoji survive normalization', { message: `Approved — ${'a'.repeat(60)} 🎉` }, 2, 2, 'UCS-2'],
    ['a long URL, shortened', { message: `Details: ${long}` }, 1, 1, 'GSM-7'],
    ['MMS with media (AUTO)', { message: 'a'.repeat(400), mediaUrl: 'https://cdn.example.org/flyer.png' }, 3, 1, 'GSM-7'],
    ['MMS forced without media', { message: 'hello', forceRoute: 'MMS' }, 3, 1, 'GSM-7'],
    [
      'media only, empty text',
      { message: '', mediaUrls: ['https://cdn.example.org/a.png', 'https://cdn.example.org/b.png'] },
      3,
      1,
      'GSM-7',
    ],
  ];

  it.each(cases)('%s', async (_name, input, credits, segments, encoding) => {
    const contact = await textableContact(acme);
    const previewed = await preview(acme, { phoneNumber: contact.phoneNumber, ...input });
    expect(previewed).toMatchObject({ credits, segments, encoding, error: null });
    const before = await balance(acme);
    const result = await send(acme, { phoneNumber: contact.phoneNumber, ...input });
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', creditsCharged: credits, segments, encoding });
    expect(await balance(acme)).toBe(before - credits);
    expect(result.message.body.length).toBe(previewed.text.length);
  });

  it('counts the shortened link, not the original URL', async () => {
    const contact = await textableContact(acme);
    const result = await send(acme, { phoneNumber: contact.phoneNumber, message: `Details: ${long}` });
    expect(result.message.body).toMatch(new RegExp(`^Details: ${PUBLIC}/l/[A-Za-z0-9_-]{8}$`));
    expect(result.message.links).toEqual([{ url: long, shortUrl: result.message.body.slice('Details: '.length), clicks: 0 }]);
    // The original text alone would need 2 segments.
    expect(`Details: ${long}`.length).toBeGreaterThan(160);
    expect(result.segments).toBe(1);
  });
});

describe('errors: each refuses, sends nothing and charges nothing', () => {
  async function expectRefused(org: TestOrg, input: Record<string, unknown>, code: string) {
    const credits = await balance(org);
    const count = await messageCount(org);
    const links = await t.db
      .select({ n: sql<number>`count(*)::int` })
      .from(shortLinks)
      .where(eq(shortLinks.organizationId, org.organizationId));
    const result = await send(org, input);
    expect(result.__typename).not.toBe('SendReplyPayload');
    expect(result.code).toBe(code);
    expect(result.message).toEqual(expect.any(String));
    expect(await balance(org)).toBe(credits);
    expect(await messageCount(org)).toBe(count);
    const linksAfter = await t.db
      .select({ n: sql<number>`count(*)::int` })
      .from(shortLinks)
      .where(eq(shortLinks.organizationId, org.organizationId));
    expect(linksAfter[0]!.n).toBe(links[0]!.n);
    const previewed = await preview(org, input);
    expect(previewed.error?.code).toBe(code);
    return result;
  }

  it('CONTACT_NOT_FOUND', async () => {
    const result = await expectRefused(acme, { phoneNumber: phone(), message: 'hi' }, 'CONTACT_NOT_FOUND');
    expect(result.__typename).toBe('ContactNotFoundError');
  });

  it('CONTACT_OPTED_OUT', async () => {
    const contact = await textableContact(acme, { isOptedIn: false });
    const result = await expectRefused(acme, { phoneNumber: contact.phoneNumber, message: 'hi' }, 'CONTACT_OPTED_OUT');
    expect(result).toMatchObject({ __typename: 'ContactOptedOutError', phoneNumber: contact.phoneNumber });
  });

  it('CONTACT_NON_TEXTABLE', async () => {
    const contact = await textableContact(acme, { isTextable: false });
    expect((await expectRefused(acme, { phoneNumber: contact.phoneNumber, message: 'hi' }, 'CONTACT_NON_TEXTABLE')).__typename).toBe(
      'ContactNonTextableError',
    );
  });

  it('CONTACT_TEXTABILITY_PENDING, then the lookup it starts settles the contact', async () => {
    const contact = await textableContact(acme, { isTextable: null });
    const credits = await balance(acme);
    const result = await send(acme, { phoneNumber: contact.phoneNumber, message: 'hi' });
    expect(result).toMatchObject({ __typename: 'ContactTextabilityPendingError', code: 'CONTACT_TEXTABILITY_PENDING' });
    expect(await balance(acme)).toBe(credits);
    const settled = await waitFor(
      async () =>
        (
          await t.db
            .select()
            .from(contacts)
            .where(and(eq(contacts.organizationId, acme.organizationId), eq(contacts.id, contact.id)))
        )[0]!,
      (row) => row.isTextable !== null,
    );
    expect(settled.isTextable).toBe(true);
  });

  it('a pending contact that has texted us is textable', async () => {
    const contact = await textableContact(acme, { isTextable: null });
    await t.addMessage(acme, { phoneNumber: contact.phoneNumber, direction: 'incoming', body: 'hello?' });
    const result = await send(acme, { phoneNumber: contact.phoneNumber, message: 'Hi, how can we help?' });
    expect(result.__typename).toBe('SendReplyPayload');
  });

  it('NO_FROM_NUMBER', async () => {
    const bare = await t.createOrg('No numbers', { credits: 10 });
    const contact = await textableContact(bare);
    expect((await expectRefused(bare, { phoneNumber: contact.phoneNumber, message: 'hi' }, 'NO_FROM_NUMBER')).__typename).toBe(
      'NoFromNumberError',
    );
  });

  it('FROM_NUMBER_FORBIDDEN for another organization\u2019s number, an unknown id and garbage', async () => {
    const other = await t.createOrg('Other', { credits: 10, phoneNumber: '+19195550201' });
    const [otherNumber] = await t
      .graphql('{ organization { phoneNumbers { id uuid } } }', {}, other)
      .then((r) => r.body.data.organization.phoneNumbers);
    const contact = await textableContact(acme);
    for (const fromPhoneNumberId of [
      otherNumber.uuid,
      otherNumber.id,
      randomUUID(),
      'garbage',
      Buffer.from('Contact:x').toString('base64'),
    ]) {
      const result = await expectRefused(
        acme,
        { phoneNumber: contact.phoneNumber, message: 'hi', fromPhoneNumberId },
        'FROM_NUMBER_FORBIDDEN',
      );
      expect(result.__typename).toBe('FromNumberForbiddenError');
    }
  });

  it('INSUFFICIENT_CREDITS', async () => {
    const poor = await t.createOrg('Poor', { credits: 2, phoneNumber: '+19195550301' });
    const contact = await textableContact(poor);
    const result = await expectRefused(poor, { phoneNumber: contact.phoneNumber, message: 'a'.repeat(400) }, 'INSUFFICIENT_CREDITS');
    expect(result).toMatchObject({ __typename: 'InsufficientCreditsError', required: 3, balance: 2 });
    // An MMS at 3 credits is refused too; a 2-segment SMS fits exactly.
    await expectRefused(
      poor,
      { phoneNumber: contact.phoneNumber, message: 'x', mediaUrl: 'https://cdn.example.org/a.png' },
      'INSUFFICIENT_CREDITS',
    );
    const fits = await send(poor, { phoneNumber: contact.phoneNumber, message: 'a'.repeat(300) });
    expect(fits.creditsCharged).toBe(2);
    expect(await balance(poor)).toBe(0);
  });

  it.each([
    ['empty', { message: '' }],
    ['whitespace only', { message: '  \n\t ' }],
    ['over 1,600 characters', { message: 'a'.repeat(1601) }],
    ['route SMS with media', { message: 'hi', mediaUrl: 'https://cdn.example.org/a.png', forceRoute: 'SMS' }],
    ['a relative media URL', { message: 'hi', mediaUrl: '/a.png' }],
    ['a non-http media URL', { message: 'hi', mediaUrls: ['ftp://cdn.example.org/a.png'] }],
    ['11 media URLs', { message: 'hi', mediaUrls: Array.from({ length: 11 }, (_, i) => `https://cdn.example.org/${i}.png`) }],
  ])('INVALID_MESSAGE: %s', async (_name, input) => {
    const contact = await textableContact(acme);
    const result = await expectRefused(acme, { phoneNumber: contact.phoneNumber, ...input }, 'INVALID_MESSAGE');
    expect(result.__typename).toBe('InvalidMessageError');
  });

  it('an over-long idempotency key is a BAD_USER_INPUT error, and nothing is sent', async () => {
    const contact = await textableContact(acme);
    const count = await messageCount(acme);
    const res = await t.graphql(
      SEND,
      { input: { phoneNumber: contact.phoneNumber, message: 'hi', idempotencyKey: 'k'.repeat(256) } },
      acme,
    );
    expect(res.body.errors?.[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      errorCode: 'INVALID_PARAMETER',
      field: 'idempotencyKey',
    });
    expect(await messageCount(acme)).toBe(count);
  });

  it('wrong types from schema-less callers (REST bodies) are refused, not crashed on', async () => {
    const contact = await textableContact(acme);
    const count = await messageCount(acme);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ message: 5 }, 'INVALID_MESSAGE'],
      [{ message: 'hi', mediaUrls: 'https://cdn.example.org/a.png' }, 'INVALID_PARAMETER'],
      [{ message: 'hi', mediaUrls: [1] }, 'INVALID_PARAMETER'],
      [{ message: 'hi', mediaUrl: { url: 'x' } }, 'INVALID_PARAMETER'],
      [{ message: 'hi', forceRoute: 'FAX' }, 'INVALID_PARAMETER'],
      [{ message: 'hi', normalizeText: 'yes' }, 'INVALID_PARAMETER'],
      [{ message: 'hi', fromPhoneNumberId: 42 }, 'INVALID_PARAMETER'],
      [{ message: 'hi', idempotencyKey: 7 }, 'INVALID_PARAMETER'],
    ];
    for (const [input, code] of cases) {
      const outcome = await sendReply(t.deps, acme.organizationId, { phoneNumber: contact.phoneNumber, ...input } as never);
      expect(outcome.ok).toBe(false);
      if (!outcome.ok) expect(outcome.error.code).toBe(code);
    }
    expect(await messageCount(acme)).toBe(count);
  });

  it('1,600 characters exactly is allowed', async () => {
    const contact = await textableContact(acme);
    const result = await send(acme, { phoneNumber: contact.phoneNumber, message: 'a'.repeat(1600) });
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', segments: 11, creditsCharged: 11 });
  });
});

describe('tenant isolation', () => {
  it("never uses another organization's contact, number or credits", async () => {
    const rival = await t.createOrg('Rival', { credits: 50, phoneNumber: '+19195550401' });
    const theirs = await textableContact(rival);
    const rivalBalance = await balance(rival);
    const result = await send(acme, { phoneNumber: theirs.phoneNumber, message: 'hi' });
    expect(result.code).toBe('CONTACT_NOT_FOUND');
    expect(await balance(rival)).toBe(rivalBalance);
    expect(await messageCount(rival)).toBe(0);
  });

  it('idempotency keys are per organization', async () => {
    const rival = await t.createOrg('Rival 2', { credits: 50, phoneNumber: '+19195550402' });
    const mine = await textableContact(acme);
    const theirs = await textableContact(rival);
    const key = `shared-${randomUUID()}`;
    const a = await send(acme, { phoneNumber: mine.phoneNumber, message: 'mine', idempotencyKey: key });
    const b = await send(rival, { phoneNumber: theirs.phoneNumber, message: 'theirs', idempotencyKey: key });
    expect(a.message.body).toBe('mine');
    expect(b.message.body).toBe('theirs');
    expect(a.message.id).not.toBe(b.message.id);
  });
});

describe('concurrency', () => {
  it('50 concurrent sends with credits for 20: exactly 20 go out, the balance ends at 0', async () => {
    const org = await t.createOrg('Race', { credits: 20, phoneNumber: '+19195550501' });
    const people = await Promise.all(Array.from({ length: 5 }, () => textableContact(org)));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => send(org, { phoneNumber: people[i % 5]!.phoneNumber, message: `Message ${i}` })),
    );
    const sent = results.filter((r) => r.__typename === 'SendReplyPayload');
    const refused = results.filter((r) => r.__typename !== 'SendReplyPayload');
    expect(sent).toHaveLength(20);
    expect(refused).toHaveLength(30);
    expect(new Set(refused.map((r) => r.code))).toEqual(new Set(['INSUFFICIENT_CREDITS']));
    expect(await balance(org)).toBe(0);
    const rows = await t.db.select().from(messages).where(eq(messages.organizationId, org.organizationId));
    expect(rows).toHaveLength(20);
    expect(rows.reduce((sum, row) => sum + row.creditsCharged, 0)).toBe(20);
  });

  it('the same idempotency key 10 times concurrently: one message, one charge, one result', async () => {
    const org = await t.createOrg('Retry', { credits: 100, phoneNumber: '+19195550601' });
    const contact = await textableContact(org);
    const key = `reply-${randomUUID()}`;
    const input = { phoneNumber: contact.phoneNumber, message: 'a'.repeat(200), idempotencyKey: key };
    const results = await Promise.all(Array.from({ length: 10 }, () => send(org, input)));
    for (const result of results) expect(result.__typename).toBe('SendReplyPayload');
    expect(new Set(results.map((r) => r.message.id)).size).toBe(1);
    expect(new Set(results.map((r) => r.providerMessageId)).size).toBe(1);
    expect(results[0].providerMessageId).toMatch(/^SM/);
    expect(await messageCount(org)).toBe(1);
    expect(await balance(org)).toBe(98);
    // A later retry, even with a different body, returns the first result.
    const again = await send(org, { ...input, message: 'changed' });
    expect(again.message.id).toBe(results[0].message.id);
    expect(await balance(org)).toBe(98);
  });

  it('a key whose first attempt was refused for credits can be used again once credits exist', async () => {
    const org = await t.createOrg('Broke', { credits: 0, phoneNumber: '+19195550701' });
    const contact = await textableContact(org);
    const input = { phoneNumber: contact.phoneNumber, message: 'hi', idempotencyKey: 'k1' };
    expect((await send(org, input)).code).toBe('INSUFFICIENT_CREDITS');
    await t.db.update(organizations).set({ credits: 1 }).where(eq(organizations.id, org.organizationId));
    expect((await send(org, input)).__typename).toBe('SendReplyPayload');
    expect(await balance(org)).toBe(0);
  });
});

describe('short links', () => {
  it('redirects with 302, counts GET clicks (not HEAD), and 404s unknown codes', async () => {
    const contact = await textableContact(acme);
    const target = 'https://example.org/rsvp?event=42&utm_source=sms';
    const result = await send(acme, { phoneNumber: contact.phoneNumber, message: `RSVP here: ${target} thanks` });
    const [link] = result.message.links;
    expect(link).toMatchObject({ url: target, clicks: 0 });
    const code = link.shortUrl.split('/l/')[1];
    expect(code).toMatch(/^[A-Za-z0-9_-]{8}$/);

    for (let i = 0; i < 2; i += 1) {
      const res = await fetch(`${t.url}/l/${code}`, { redirect: 'manual' });
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe(target);
    }
    const head = await fetch(`${t.url}/l/${code}`, { method: 'HEAD', redirect: 'manual' });
    expect(head.status).toBe(302);

    const res = await t.graphql(
      `query($id: ID!) { node(id: $id) { ... on Message { links { url shortUrl clicks } } } }`,
      { id: result.message.id },
      acme,
    );
    expect(res.body.data.node.links).toEqual([{ url: target, shortUrl: link.shortUrl, clicks: 2 }]);

    for (const bad of ['AAAAAAAA', 'x', '..%2F..%2Fetc', `${code}x`]) {
      const missing = await fetch(`${t.url}/l/${bad}`, { redirect: 'manual' });
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ code: 'NOT_FOUND' });
    }
    const post = await fetch(`${t.url}/l/${code}`, { method: 'POST', redirect: 'manual' });
    expect(post.status).toBe(405);
  });

  it("uses the organization's short-link base URL", async () => {
    const org = await t.createOrg('Branded', { credits: 10, phoneNumber: '+19195550801' });
    await t.db.update(organizations).set({ shortLinkBaseUrl: 'https://go.brand.example' }).where(eq(organizations.id, org.organizationId));
    const contact = await textableContact(org);
    const result = await send(org, { phoneNumber: contact.phoneNumber, message: 'https://brand.example/offer' });
    expect(result.message.body).toMatch(/^https:\/\/go\.brand\.example\/l\/[A-Za-z0-9_-]{8}$/);
  });

  it('stores one link per distinct URL and keeps other text intact', async () => {
    const contact = await textableContact(acme);
    const result = await send(acme, {
      phoneNumber: contact.phoneNumber,
      message: 'A https://a.example/x B https://a.example/x C http://b.example/y.',
    });
    expect(result.message.links.map((l: { url: string }) => l.url)).toEqual(['https://a.example/x', 'http://b.example/y']);
    const [a, b] = result.message.links;
    expect(result.message.body).toBe(`A ${a.shortUrl} B ${a.shortUrl} C ${b.shortUrl}.`);
  });
});

describe('previewReply', () => {
  it('shows the text as it would go out, and changes nothing', async () => {
    const contact = await textableContact(acme);
    const credits = await balance(acme);
    const count = await messageCount(acme);
    const links = await t.db.select({ n: sql<number>`count(*)::int` }).from(shortLinks);
    const result = await preview(acme, { phoneNumber: contact.phoneNumber, message: '  “Hi” — see https://example.org/page…  ' });
    expect(result).toMatchObject({ encoding: 'GSM-7', segments: 1, route: 'SMS', credits: 1, error: null });
    expect(result.text).toMatch(new RegExp(`^"Hi" - see ${PUBLIC}/l/[A-Za-z0-9_-]{8}\\.\\.\\.$`));
    expect(await balance(acme)).toBe(credits);
    expect(await messageCount(acme)).toBe(count);
    expect((await t.db.select({ n: sql<number>`count(*)::int` }).from(shortLinks))[0]!.n).toBe(links[0]!.n);
  });

  it('reports the route AUTO resolves to', async () => {
    const contact = await textableContact(acme);
    const result = await preview(acme, { phoneNumber: contact.phoneNumber, message: 'look', mediaUrl: 'https://cdn.example.org/a.jpg' });
    expect(result).toMatchObject({ route: 'MMS', credits: 3, segments: 1 });
  });
});

describe('contacts', () => {
  const CREATE = `mutation($input: CreateContactInput!) { createContact(input: $input) { __typename
    ... on Error { code message }
    ... on CreateContactPayload { contact { id uuid phoneNumber firstName lastName isTextable isOptedIn } } } }`;
  const UPDATE = `mutation($input: UpdateContactInput!) { updateContact(input: $input) { __typename
    ... on Error { code message }
    ... on UpdateContactPayload { contact { id uuid firstName lastName isOptedIn } } } }`;

  it('creates a contact and settles textability with the simulated lookup rule (last digit 0: landline)', async () => {
    const mobile = await t.graphql(CREATE, { input: { phoneNumber: '(919) 555-8881', firstName: ' Ana ', lastName: 'Diaz' } }, acme);
    expect(mobile.body.data.createContact).toMatchObject({
      __typename: 'CreateContactPayload',
      contact: { phoneNumber: '+19195558881', firstName: 'Ana', lastName: 'Diaz', isTextable: true, isOptedIn: true },
    });
    const landline = await t.graphql(CREATE, { input: { phoneNumber: '919-555-8880' } }, acme);
    expect(landline.body.data.createContact.contact.isTextable).toBe(false);
    const send1 = await send(acme, { phoneNumber: '+19195558881', message: 'Welcome!' });
    expect(send1.__typename).toBe('SendReplyPayload');
    expect((await send(acme, { phoneNumber: '+19195558880', message: 'Welcome!' })).code).toBe('CONTACT_NON_TEXTABLE');
  });

  it('refuses a duplicate with ContactAlreadyExistsError and a bad number with INVALID_PHONE_NUMBER', async () => {
    await t.graphql(CREATE, { input: { phoneNumber: '+19195558882' } }, acme);
    const dup = await t.graphql(CREATE, { input: { phoneNumber: '919.555.8882' } }, acme);
    expect(dup.body.data.createContact).toMatchObject({ __typename: 'ContactAlreadyExistsError', code: 'CONTACT_ALREADY_EXISTS' });
    const bad = await t.graphql(CREATE, { input: { phoneNumber: '12' } }, acme);
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_PHONE_NUMBER' });
  });

  it('the same number can be a contact in two organizations', async () => {
    const other = await t.createOrg('Other contacts', { credits: 0 });
    const a = await t.graphql(CREATE, { input: { phoneNumber: '+19195558883' } }, acme);
    const b = await t.graphql(CREATE, { input: { phoneNumber: '+19195558883' } }, other);
    expect(a.body.data.createContact.contact.uuid).not.toBe(b.body.data.createContact.contact.uuid);
  });

  it('updates names and consent by id or phone, recording consent changes', async () => {
    const created = (await t.graphql(CREATE, { input: { phoneNumber: '+19195558884', firstName: 'Lee' } }, acme)).body.data.createContact
      .contact;
    const byId = await t.graphql(UPDATE, { input: { id: created.id, lastName: 'Park', isOptedIn: false } }, acme);
    expect(byId.body.data.updateContact).toMatchObject({ contact: { firstName: 'Lee', lastName: 'Park', isOptedIn: false } });
    expect((await send(acme, { phoneNumber: '+19195558884', message: 'hi' })).code).toBe('CONTACT_OPTED_OUT');
    const byPhone = await t.graphql(UPDATE, { input: { phoneNumber: '919-555-8884', firstName: null, isOptedIn: true } }, acme);
    expect(byPhone.body.data.updateContact).toMatchObject({ contact: { firstName: null, lastName: 'Park', isOptedIn: true } });
    const byUuid = await t.graphql(UPDATE, { input: { id: created.uuid, isOptedIn: true } }, acme);
    expect(byUuid.body.data.updateContact.contact.isOptedIn).toBe(true);
    const events = await t.db
      .select({ kind: consentEvents.kind, source: consentEvents.source })
      .from(consentEvents)
      .where(and(eq(consentEvents.organizationId, acme.organizationId), eq(consentEvents.contactId, created.uuid)))
      .orderBy(consentEvents.createdAt);
    expect(events).toEqual([
      { kind: 'opt_out', source: 'api' },
      { kind: 'opt_in', source: 'api' },
    ]);
  });

  it("answers ContactNotFoundError for unknown and other organizations' contacts", async () => {
    const other = await t.createOrg('Other update', { credits: 0 });
    const theirs = (await t.graphql(CREATE, { input: { phoneNumber: '+19195558885' } }, other)).body.data.createContact.contact;
    for (const input of [
      { id: theirs.id, firstName: 'x' },
      { id: randomUUID(), firstName: 'x' },
      { id: 'nope', firstName: 'x' },
      { phoneNumber: '+19195558885', firstName: 'x' },
    ]) {
      const res = await t.graphql(UPDATE, { input }, acme);
      expect(res.body.data.updateContact).toMatchObject({ __typename: 'ContactNotFoundError', code: 'CONTACT_NOT_FOUND' });
    }
    const [row] = await t.db.select().from(contacts).where(eq(contacts.id, theirs.uuid));
    expect(row!.firstName).toBeNull();
    const neither = await t.graphql(UPDATE, { input: { firstName: 'x' } }, acme);
    expect(neither.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('the demo inbox', () => {
  it('can send a reply to a demo contact and see it DELIVERED', async () => {
    const demo = await createDemoOrganization(t.db, { contacts: 6, messages: 20 });
    const org = { organizationId: demo.organizationId, apiToken: demo.apiToken };
    const inbox = await t.graphql('{ conversations(first: 1) { edges { node { phoneNumber } } } }', {}, org);
    const phoneNumber = inbox.body.data.conversations.edges[0].node.phoneNumber;
    const result = await send(org, { phoneNumber, message: 'On our way — see you soon!' });
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', message: { body: 'On our way - see you soon!' } });
    const status = await waitFor(
      async () =>
        (await t.graphql(`query($id: ID!) { node(id: $id) { ... on Message { status } } }`, { id: result.message.id }, org)).body.data.node
          .status,
      (value) => value === 'DELIVERED',
    );
    expect(status).toBe('DELIVERED');
  });
});
