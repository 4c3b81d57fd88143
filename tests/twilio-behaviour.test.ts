import { createHmac } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { messages, organizations, phoneNumbers } from '../src/db/tables.js';
import { addPhoneNumber } from '../src/services/organizations.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { until } from './helpers/realtime.js';

// Twilio as it really behaves, through the real SDK against the fake: 429s with Retry-After and 5xx
// retried, calls bounded per account, timeouts and lost connections in doubt (SEND_IN_DOUBT, settled by
// the sweep), sends through a Messaging Service, and their webhooks' signatures.

const PUBLIC = 'https://gateway.example.test';
const MG = `MG${'a1'.repeat(16)}`;
const SEND = `mutation Send($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on Error { code message }
    ... on ProviderError { providerErrorCode moreInfo }
    ... on SendInDoubtError { reply { uuid status providerMessageId } }
    ... on SendReplyPayload { providerMessageId creditsCharged sent: message { uuid status } }
  }
}`;

let seq = 0;
const nextPhone = () => `+1415556${String(1000 + (seq += 1)).padStart(4, '0')}`;

async function balance(t: TestApp, org: TestOrg) {
  const [row] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId));
  return row!.credits;
}
async function messageRow(t: TestApp, org: TestOrg, id: string) {
  const [row] = await t.db.select().from(messages).where(and(eq(messages.organizationId, org.organizationId), eq(messages.id, id)));
  return row!;
}
const creates = (fake: FakeTwilio) => fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/Messages.json')).length;

describe('one account, timeouts in doubt, Messaging Services', () => {
  let fake: FakeTwilio;
  let t: TestApp;
  let org: TestOrg;
  const send = async (input: Record<string, unknown>, as: TestOrg = org) => {
    const res = await t.graphql(SEND, { input }, as);
    expect(res.body.errors).toBeUndefined();
    return res.body.data.sendReply;
  };

  beforeAll(async () => {
    fake = await startFakeTwilio();
    t = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: PUBLIC, SMS_PROVIDER_TIMEOUT_MS: '1500', SENDS_IN_DOUBT_AFTER_MS: '600000' });
    org = await t.createOrg('Throttled', { credits: 100, phoneNumber: '+14155550100' });
    // As main.ts does: the sweep of sends in doubt runs on its own period (a half of SMS_PROVIDER_TIMEOUT_MS here).
    t.deps.sendsInDoubt.start();
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  it('429 twice (Retry-After, then none), then success: one message, charged once', async () => {
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    const before = await balance(t, org);
    fake.failNextSend({ code: 20429, status: 429, retryAfter: 0, message: 'Too Many Requests' });
    fake.failNextSend({ code: 20429, status: 429, message: 'Too Many Requests' });
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'busy line' });
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', creditsCharged: 1 });
    expect(creates(fake)).toBe(3);
    expect(fake.sent).toHaveLength(1);
    expect(result.providerMessageId).toBe(fake.sent[0]!.sid);
    expect(await balance(t, org)).toBe(before - 1);
  });

  it('a 5xx is retried; a 4xx refusal is not, and refunds with an actionable message and moreInfo', async () => {
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    fake.failNextSend({ code: 20500, status: 500 });
    expect(await send({ phoneNumber: contact.phoneNumber, message: 'after a 500' })).toMatchObject({ __typename: 'SendReplyPayload' });
    expect(creates(fake)).toBe(2);

    const before = await balance(t, org);
    fake.failNextSend({ code: 30034 });
    const refused = await send({ phoneNumber: contact.phoneNumber, message: 'unregistered' });
    expect(refused).toMatchObject({
      __typename: 'ProviderError',
      code: 'PROVIDER_ERROR',
      providerErrorCode: 30034,
      moreInfo: 'https://www.twilio.com/docs/errors/30034',
    });
    expect(refused.message).toMatch(/10DLC/);
    expect(creates(fake)).toBe(3);
    expect(await balance(t, org)).toBe(before);
  });

  it('a timeout after Twilio created the message: SEND_IN_DOUBT, credits kept, then settled with the SID and never refunded', async () => {
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    fake.hangSendsTo(contact.phoneNumber, { kept: true });
    const before = await balance(t, org);
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'created, never answered', idempotencyKey: 'doubt-kept' });
    expect(result).toMatchObject({ __typename: 'SendInDoubtError', code: 'SEND_IN_DOUBT', reply: { status: 'QUEUED', providerMessageId: null } });
    expect(result.message).toMatch(/Do not send it again/);
    expect(await balance(t, org)).toBe(before - 1);
    const id = result.reply.uuid as string;
    expect((await messageRow(t, org, id)).inDoubtAt).not.toBeNull();

    // A retry with the key while in doubt: the same advice and the reply as it is, no second create.
    const again = await send({ phoneNumber: contact.phoneNumber, message: 'created, never answered', idempotencyKey: 'doubt-kept' });
    expect(again).toMatchObject({ __typename: 'SendInDoubtError', reply: { uuid: id } });
    expect(creates(fake)).toBe(1);

    await until(async () => (await messageRow(t, org, id)).providerMessageId !== null, 15_000, 'the sweep to settle the send');
    const settled = await messageRow(t, org, id);
    expect(settled).toMatchObject({ providerMessageId: fake.sent[0]!.sid, status: 'queued', creditsCharged: 1 });
    expect(await balance(t, org)).toBe(before - 1);
    // Later callbacks apply to it, and a retry with the key now answers the settled send.
    const callback = await fake.sendStatusCallback(fake.sent[0]!.sid, 'delivered', { postTo: `${t.url}/webhooks/twilio/status` });
    expect(callback.status).toBe(200);
    expect((await messageRow(t, org, id)).status).toBe('delivered');
    const replay = await send({ phoneNumber: contact.phoneNumber, message: 'created, never answered', idempotencyKey: 'doubt-kept' });
    expect(replay).toMatchObject({ __typename: 'SendReplyPayload', providerMessageId: fake.sent[0]!.sid });
    expect(creates(fake)).toBe(1);
  }, 30_000);

  it('a timeout where Twilio never got the message: settled FAILED and refunded; REST answers 504 with the reply', async () => {
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    fake.hangSendsTo(contact.phoneNumber, { kept: false });
    const before = await balance(t, org);
    const res = await fetch(`${t.url}/api/conversations/${encodeURIComponent(contact.phoneNumber)}/reply`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'idempotency-key': 'doubt-lost' },
      body: JSON.stringify({ message: 'lost on the way' }),
    });
    expect(res.status).toBe(504);
    const body = await res.json();
    expect(body).toMatchObject({
      success: false,
      code: 'SEND_IN_DOUBT',
      messageLog: { phoneNumber: contact.phoneNumber, message: 'lost on the way', status: 'queued' },
    });
    expect(await balance(t, org)).toBe(before - 1);
    await until(async () => (await messageRow(t, org, body.messageLog.id)).status === 'failed', 15_000, 'the sweep to fail the send');
    expect(await messageRow(t, org, body.messageLog.id)).toMatchObject({ creditsCharged: 0, providerMessageId: null });
    expect(await balance(t, org)).toBe(before);
    expect(creates(fake)).toBe(1);
  }, 30_000);

  it('a connection reset after Twilio read the request is in doubt too, and settles with the SID', async () => {
    const contact = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true });
    fake.resetNextSends(1, { kept: true });
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'reset after reading' });
    expect(result).toMatchObject({ __typename: 'SendInDoubtError', code: 'SEND_IN_DOUBT' });
    const id = result.reply.uuid as string;
    await until(async () => (await messageRow(t, org, id)).providerMessageId !== null, 15_000, 'the sweep to settle the send');
    expect((await messageRow(t, org, id)).providerMessageId).toBe(fake.sent[0]!.sid);
    expect(creates(fake)).toBe(1);
  }, 30_000);

  it('a Messaging Service number sends with MessagingServiceSid and no From; the callback From is kept as sent_from', async () => {
    const mgOrg = await t.createOrg('Ten DLC', { credits: 10 });
    const added = await addPhoneNumber(t.db, mgOrg.organizationId, { phoneNumber: '+14155550177', isDefault: true, messagingServiceSid: MG });
    const numbers = await t.graphql(`{ organization { phoneNumbers { phoneNumber messagingServiceSid } } }`, {}, mgOrg);
    expect(numbers.body.data?.organization?.phoneNumbers ?? [{ phoneNumber: '+14155550177', messagingServiceSid: MG }]).toContainEqual({
      phoneNumber: '+14155550177',
      messagingServiceSid: MG,
    });
    fake.setServiceSender(MG, '+14155550188');
    const contact = await t.createContact(mgOrg, { phoneNumber: nextPhone(), isTextable: true });
    const result = await send({ phoneNumber: contact.phoneNumber, message: 'via the service' }, mgOrg);
    expect(result).toMatchObject({ __typename: 'SendReplyPayload' });
    const form = fake.sent[0]!.params;
    expect(form.MessagingServiceSid).toBe(MG);
    expect(form).not.toHaveProperty('From');
    const callback = await fake.sendStatusCallback(fake.sent[0]!.sid, 'sent', { postTo: `${t.url}/webhooks/twilio/status` });
    expect(callback.status).toBe(200);
    expect(await messageRow(t, mgOrg, result.sent.uuid)).toMatchObject({ status: 'sent', sentFrom: '+14155550188' });
    expect(added.messagingServiceSid).toBe(MG);
  });

  it('refuses a malformed Messaging Service SID and stores nothing', async () => {
    const other = await t.createOrg('Bad MG', { credits: 1 });
    await expect(addPhoneNumber(t.db, other.organizationId, { phoneNumber: '+14155550199', messagingServiceSid: 'MG123' })).rejects.toMatchObject({
      code: 'BAD_USER_INPUT',
    });
    expect(await t.db.select().from(phoneNumbers).where(eq(phoneNumbers.organizationId, other.organizationId))).toHaveLength(0);
  });

  it('checks a Messaging Service inbound webhook signed as Twilio signs it, over PUBLIC_BASE_URL and the path', async () => {
    const mgOrg = await t.createOrg('Inbound MG', { credits: 1 });
    await addPhoneNumber(t.db, mgOrg.organizationId, { phoneNumber: '+14155550166', isDefault: true, messagingServiceSid: MG });
    const params: Record<string, string> = {
      ToCountry: 'US',
      SmsMessageSid: 'SM' + 'b2'.repeat(16),
      NumMedia: '0',
      SmsSid: 'SM' + 'b2'.repeat(16),
      SmsStatus: 'received',
      Body: 'hello service',
      To: '+14155550166',
      MessagingServiceSid: MG,
      NumSegments: '1',
      MessageSid: 'SM' + 'b2'.repeat(16),
      AccountSid: fake.accountSid,
      From: '+14155550123',
      ApiVersion: '2010-04-01',
    };
    // Twilio's algorithm by hand: the full URL, then each parameter name and value in name order, HMAC-SHA1 with the auth token, base64.
    const url = `${PUBLIC}/webhooks/twilio/messages`;
    const signed = url + Object.keys(params).sort().map((key) => key + params[key]).join('');
    const signature = createHmac('sha1', fake.authToken).update(signed).digest('base64');
    const post = (sig: string) =>
      fetch(`${t.url}/webhooks/twilio/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sig },
        body: new URLSearchParams(params).toString(),
      });
    const wrongUrl = createHmac('sha1', fake.authToken).update(signed.replace(PUBLIC, 'http://internal:4000')).digest('base64');
    expect((await post(wrongUrl)).status).toBe(403);
    expect((await post(signature)).status).toBe(200);
    const stored = await t.db.select().from(messages).where(eq(messages.organizationId, mgOrg.organizationId));
    expect(stored).toMatchObject([{ direction: 'incoming', body: 'hello service' }]);
  });
});

describe('TWILIO_MAX_CONCURRENT_REQUESTS', () => {
  let fake: FakeTwilio;
  let t: TestApp;
  let org: TestOrg;

  beforeAll(async () => {
    fake = await startFakeTwilio();
    t = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: PUBLIC, TWILIO_MAX_CONCURRENT_REQUESTS: '5', SMS_PROVIDER_TIMEOUT_MS: '4000' });
    org = await t.createOrg('Burst', { credits: 1000, phoneNumber: '+14155550200' });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  it('a burst of 100 sends: never more than 5 in flight at Twilio, and all 100 sent', async () => {
    const contacts = [];
    for (let i = 0; i < 100; i += 1) contacts.push(await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true }));
    fake.reset();
    fake.delaySends(20);
    const results = await Promise.all(contacts.map((c) => t.graphql(SEND, { input: { phoneNumber: c.phoneNumber, message: 'burst' } }, org)));
    fake.delaySends(0);
    expect(results.map((r) => r.body.data.sendReply.__typename)).toEqual(Array(100).fill('SendReplyPayload'));
    expect(fake.sent).toHaveLength(100);
    expect(fake.maxInFlight).toBeLessThanOrEqual(5);
    expect(fake.maxInFlight).toBeGreaterThan(1);
  }, 60_000);

  it('a send finding every slot taken and the queue full (TWILIO_MAX_QUEUED_REQUESTS): PROVIDER_BUSY, nothing sent or charged', async () => {
    const tight = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: PUBLIC, TWILIO_MAX_CONCURRENT_REQUESTS: '1', TWILIO_MAX_QUEUED_REQUESTS: '0', SMS_PROVIDER_TIMEOUT_MS: '1500' });
    try {
      const small = await tight.createOrg('Tight', { credits: 10, phoneNumber: '+14155550300' });
      const stuck = await tight.createContact(small, { phoneNumber: nextPhone(), isTextable: true });
      const waiting = await tight.createContact(small, { phoneNumber: nextPhone(), isTextable: true });
      fake.reset();
      fake.hangSendsTo(stuck.phoneNumber, { kept: false });
      const held = tight.graphql(SEND, { input: { phoneNumber: stuck.phoneNumber, message: 'hold the slot' } }, small);
      await until(() => fake.inFlight === 1, 10_000, 'one send holding the only slot');
      const before = await balance(tight, small);
      const res = await tight.graphql(SEND, { input: { phoneNumber: waiting.phoneNumber, message: 'no slot' } }, small);
      expect(res.body.data.sendReply).toMatchObject({ __typename: 'ProviderError', code: 'PROVIDER_BUSY', providerErrorCode: null });
      expect(fake.requests.filter((r) => r.params.get('To') === waiting.phoneNumber)).toHaveLength(0);
      expect(await balance(tight, small)).toBe(before);
      expect((await held).body.data.sendReply.__typename).toBe('SendInDoubtError');
    } finally {
      await tight.close();
    }
  }, 30_000);
});
