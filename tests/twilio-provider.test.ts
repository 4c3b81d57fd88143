import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { consentEvents, contacts, conversations, messages, messageStatusEvents, organizations } from '../src/db/tables.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';

// The Twilio provider: the real `twilio` SDK against a local server speaking Twilio's Messages and
// Lookup APIs (form bodies, Basic auth, Twilio's JSON and error format), selected by configuration.

const PUBLIC = 'https://gateway.example.test';
let fake: FakeTwilio;
let t: TestApp;
let org: TestOrg;
let seq = 0;

const nextPhone = () => {
  do seq += 1;
  while (seq % 10 === 0);
  return `+1415555${3000 + seq}`;
};

const SEND = `mutation Send($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on Error { code message }
    ... on ProviderError { providerErrorCode }
    ... on ContactOptedOutError { providerErrorCode }
    ... on ContactNonTextableError { providerErrorCode }
    ... on SendReplyPayload { provider providerMessageId creditsCharged sent: message { uuid body status mediaUrls } }
  }
}`;

async function send(input: Record<string, unknown>, as: TestOrg = org) {
  const res = await t.graphql(SEND, { input }, as);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.sendReply;
}

async function balance(of: TestOrg = org) {
  const [row] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, of.organizationId));
  return row!.credits;
}

async function contactRow(id: string) {
  const [row] = await t.db
    .select()
    .from(contacts)
    .where(and(eq(contacts.organizationId, org.organizationId), eq(contacts.id, id)));
  return row!;
}

const textable = () => t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });

beforeAll(async () => {
  fake = await startFakeTwilio();
  t = await createTestApp({
    ...fake.env(),
    PUBLIC_BASE_URL: PUBLIC,
    MMS_CREDIT_PRICE: '5',
    SMS_PROVIDER_TIMEOUT_MS: '400',
    LOOKUP_RETRY_MS: '50',
    STATUS_CALLBACK_WAIT_MS: '3000',
  });
  org = await t.createOrg('Twilio org', { credits: 1000, phoneNumber: '+14155550100' });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});
beforeEach(() => fake.reset());

describe('sending through Twilio', () => {
  it('posts the message with Basic auth, from, to, body and the status callback URL', async () => {
    const contact = await textable();
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'Hello from the gateway' });
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', provider: 'twilio', creditsCharged: 1 });
    expect(fake.sent).toHaveLength(1);
    const [sent] = fake.sent;
    expect(sent).toMatchObject({
      to: contact.phoneNumber,
      from: '+14155550100',
      body: 'Hello from the gateway',
      mediaUrls: [],
      statusCallback: `${PUBLIC}/webhooks/twilio/status`,
      sendAsMms: false,
    });
    expect(result.providerMessageId).toBe(sent!.sid);
    expect(result.sent.status).toBe('QUEUED');
    const request = fake.requests.at(-1)!;
    expect(request).toMatchObject({ method: 'POST', path: `/2010-04-01/Accounts/${fake.accountSid}/Messages.json`, authorized: true });
    const [row] = await t.db.select().from(messages).where(eq(messages.id, result.sent.uuid));
    expect(row).toMatchObject({ provider: 'twilio', providerMessageId: sent!.sid, status: 'queued' });
  });

  it('sends MMS media as repeated MediaUrl parameters at the configured MMS price', async () => {
    const contact = await textable();
    const before = await balance();
    const mediaUrls = ['https://cdn.example.org/a.png', 'https://cdn.example.org/b.jpg'];
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'Two pictures', mediaUrls });
    expect(result.creditsCharged).toBe(5);
    expect(await balance()).toBe(before - 5);
    expect(fake.sent[0]!.mediaUrls).toEqual(mediaUrls);
    expect(fake.sent[0]!.params.MediaUrl).toEqual(mediaUrls);
  });

  it('asks for MMS delivery when route MMS is forced without media', async () => {
    const contact = await textable();
    await send({ phoneNumber: contact.phoneNumber, message: 'As MMS', forceRoute: 'MMS' });
    expect(fake.sent[0]!.sendAsMms).toBe(true);
  });
});

describe('status callbacks', () => {
  it('a callback that arrives before Twilio has answered the send is applied once the SID is stored', async () => {
    const contact = await textable();
    fake.callBackBeforeAnswering('delivered', `${t.url}/webhooks/twilio/status`);
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'Racing my own callback' });
    const [sent] = fake.sent;
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', providerMessageId: sent!.sid, sent: { status: 'QUEUED' } });
    // The callback reached the gateway while the send still waited for Twilio's answer, and was held.
    expect(fake.earlyCallbacks).toHaveLength(1);
    expect((await fake.earlyCallbacks[0]!).status).toBe(200);
    const [stored] = await t.db.select().from(messages).where(eq(messages.providerMessageId, sent!.sid));
    expect(stored).toMatchObject({ status: 'delivered' });
    const history = await t.db.select().from(messageStatusEvents).where(eq(messageStatusEvents.messageId, stored!.id));
    expect(history.map((event) => event.status).sort()).toEqual(['delivered', 'queued']);
  });
});

describe('Twilio errors: mapped, recorded, refunded', () => {
  async function failWith(code: number) {
    const contact = await textable();
    fake.failSendsTo(contact.phoneNumber, { code });
    const before = await balance();
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'a'.repeat(200) });
    expect(await balance()).toBe(before);
    const [conversation] = await t.db
      .select()
      .from(conversations)
      .where(and(eq(conversations.organizationId, org.organizationId), eq(conversations.phoneNumber, contact.phoneNumber)));
    const [latest] = await t.db.select().from(messages).where(eq(messages.conversationId, conversation!.id));
    expect(latest).toMatchObject({ status: 'failed', errorCode: code, creditsCharged: 0 });
    const history = await t.db
      .select({ status: messageStatusEvents.status })
      .from(messageStatusEvents)
      .where(eq(messageStatusEvents.messageId, latest!.id));
    expect(history.map((h) => h.status).sort()).toEqual(['failed', 'queued']);
    return { contact, result };
  }

  it('21610: the contact is opted out, CONTACT_OPTED_OUT, and later sends never reach Twilio', async () => {
    const { contact, result } = await failWith(21610);
    expect(result).toMatchObject({ __typename: 'ContactOptedOutError', code: 'CONTACT_OPTED_OUT', providerErrorCode: 21610 });
    expect((await contactRow(contact.id)).isOptedIn).toBe(false);
    const consent = await t.db.select().from(consentEvents).where(eq(consentEvents.contactId, contact.id));
    expect(consent).toMatchObject([{ kind: 'opt_out', source: 'provider_error' }]);
    const attempts = fake.requests.length;
    expect((await send({ phoneNumber: contact.phoneNumber, message: 'again' })).code).toBe('CONTACT_OPTED_OUT');
    expect(fake.requests.length).toBe(attempts);
  });

  it.each([21211, 21614])('%i: the contact is marked non-textable, CONTACT_NON_TEXTABLE', async (code) => {
    const { contact, result } = await failWith(code);
    expect(result).toMatchObject({ __typename: 'ContactNonTextableError', code: 'CONTACT_NON_TEXTABLE', providerErrorCode: code });
    expect((await contactRow(contact.id)).isTextable).toBe(false);
  });

  it.each([30003, 30006, 21408])('%i: PROVIDER_ERROR naming the Twilio code, contact unchanged', async (code) => {
    const { contact, result } = await failWith(code);
    expect(result).toMatchObject({ __typename: 'ProviderError', code: 'PROVIDER_ERROR', providerErrorCode: code });
    expect(result.message).toContain(String(code));
    expect(await contactRow(contact.id)).toMatchObject({ isOptedIn: true, isTextable: true });
  });

  it('a timeout is SEND_IN_DOUBT: not refunded until the provider says', async () => {
    const contact = await textable();
    fake.delaySends(1_500);
    const before = await balance();
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'slow' });
    expect(result).toMatchObject({ __typename: 'SendInDoubtError', code: 'SEND_IN_DOUBT' });
    expect(await balance()).toBe(before - 1);
  });

  it('an idempotent retry after a refusal returns the same refusal and calls Twilio once', async () => {
    const contact = await textable();
    fake.failSendsTo(contact.phoneNumber, { code: 30003 });
    const input = { phoneNumber: contact.phoneNumber, message: 'once', idempotencyKey: 'retry-after-failure' };
    const first = await send(input);
    const second = await send(input);
    expect(second).toEqual(first);
    expect(fake.requests.filter((r) => r.path.endsWith('/Messages.json'))).toHaveLength(1);
  });
});

describe('provider failures with wrong credentials or an unreachable API', () => {
  it('refunds when Twilio refuses the credentials (20003) and when nothing answers', async () => {
    const wrong = await createTestApp({ ...fake.env(), TWILIO_AUTH_TOKEN: 'not-the-token', PUBLIC_BASE_URL: PUBLIC });
    const down = await createTestApp({ ...fake.env(), TWILIO_API_BASE_URL: 'http://127.0.0.1:9', PUBLIC_BASE_URL: PUBLIC });
    try {
      for (const app of [wrong, down]) {
        const o = await app.createOrg('Broken', { credits: 5, phoneNumber: app === wrong ? '+14155550701' : '+14155550702' });
        const c = await app.createContact(o, { phoneNumber: nextPhone(), isTextable: true });
        const res = await app.graphql(SEND, { input: { phoneNumber: c.phoneNumber, message: 'hi' } }, o);
        expect(res.body.data.sendReply).toMatchObject({ __typename: 'ProviderError', code: 'PROVIDER_ERROR' });
        const [row] = await app.db
          .select({ credits: organizations.credits })
          .from(organizations)
          .where(eq(organizations.id, o.organizationId));
        expect(row!.credits).toBe(5);
      }
      expect(fake.requests.some((r) => !r.authorized)).toBe(true);
      expect(wrong.deps.sms.name).toBe('twilio');
    } finally {
      await wrong.close();
      await down.close();
    }
  });
});

describe('textability lookup (Lookup v2 line_type_intelligence)', () => {
  const CREATE = `mutation($input: CreateContactInput!) { createContact(input: $input) { ... on CreateContactPayload { contact { uuid isTextable } } } }`;

  it.each([
    ['mobile', true],
    ['landline', false],
    ['fixedVoip', false],
    ['nonFixedVoip', false],
    ['tollFree', false],
  ])('%s -> isTextable %s', async (lineType, textableValue) => {
    const phoneNumber = nextPhone();
    fake.setLineType(phoneNumber, lineType);
    const res = await t.graphql(CREATE, { input: { phoneNumber } }, org);
    expect(res.body.data.createContact.contact.isTextable).toBe(textableValue);
    const lookup = fake.requests.find((r) => r.path === `/v2/PhoneNumbers/${phoneNumber}`);
    expect(lookup).toMatchObject({ method: 'GET', authorized: true });
    expect(new URLSearchParams(lookup!.query).get('Fields')).toBe('line_type_intelligence');
  });

  it('a failed lookup leaves the contact pending, and the retry settles it', async () => {
    const phoneNumber = nextPhone();
    fake.failLookups(2);
    const res = await t.graphql(CREATE, { input: { phoneNumber } }, org);
    const { uuid } = res.body.data.createContact.contact;
    // Retries after 50 and 100 ms; the createContact call waits at most 2 s for a settled answer.
    const deadline = Date.now() + 5_000;
    let row = await contactRow(uuid);
    while (row.isTextable === null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      row = await contactRow(uuid);
    }
    expect(row.isTextable).toBe(true);
    // Two 500s, then the answer: retried by the Twilio client (5xx, within SMS_PROVIDER_TIMEOUT_MS) and, past
    // that, by the lookup's own retry, so at least three lookups, however the time fell.
    expect(fake.lookups.filter((p) => p === phoneNumber).length).toBeGreaterThanOrEqual(3);
  });

  it('an unknown line type keeps the contact pending (replies refused) until a verdict', async () => {
    const phoneNumber = nextPhone();
    fake.setLineType(phoneNumber, null);
    const res = await t.graphql(CREATE, { input: { phoneNumber } }, org);
    expect(res.body.data.createContact.contact.isTextable).toBeNull();
    expect((await send({ phoneNumber, message: 'hi' })).code).toBe('CONTACT_TEXTABILITY_PENDING');
    fake.setLineType(phoneNumber, 'mobile');
    const deadline = Date.now() + 5_000;
    let row = await contactRow(res.body.data.createContact.contact.uuid);
    while (row.isTextable === null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      row = await contactRow(row.id);
    }
    expect(row.isTextable).toBe(true);
    expect((await send({ phoneNumber, message: 'hi' })).__typename).toBe('SendReplyPayload');
  });
});
