import { and, count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { consentEvents, contacts, conversations, messages, messageStatusEvents } from '../src/db/tables.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { inboundForm, nextSid, postInbound, postTwilio, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL } from './helpers/realtime.js';

// Twilio's webhooks against the real app and database, signed with the twilio SDK's own signer.

let t: TestApp;
let acme: TestOrg;
let other: TestOrg;
const ACME_NUMBER = '+19195550100';
const OTHER_NUMBER = '+19195550500';
const MESSAGES = '/webhooks/twilio/messages';
const STATUS = '/webhooks/twilio/status';

beforeAll(async () => {
  t = await createTestApp({ TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
  acme = await t.createOrg('Acme', { phoneNumber: ACME_NUMBER });
  other = await t.createOrg('Other', { phoneNumber: OTHER_NUMBER });
}, 60_000);
afterAll(() => t?.close());

const messageCount = async () => (await t.db.select({ n: count() }).from(messages))[0]!.n;
const contactCount = async () => (await t.db.select({ n: count() }).from(contacts))[0]!.n;
const messageBySid = async (sid: string) => (await t.db.select().from(messages).where(eq(messages.providerMessageId, sid)))[0];
const conversationOf = async (org: TestOrg, phoneNumber: string) =>
  (
    await t.db
      .select()
      .from(conversations)
      .where(and(eq(conversations.organizationId, org.organizationId), eq(conversations.phoneNumber, phoneNumber)))
  )[0];
const contactOf = async (org: TestOrg, phoneNumber: string) =>
  (await t.db.select().from(contacts).where(and(eq(contacts.organizationId, org.organizationId), eq(contacts.phoneNumber, phoneNumber))))[0];

describe('inbound webhook: signature', () => {
  it('accepts a correctly signed message and answers empty TwiML after storing it', async () => {
    const form = inboundForm(ACME_NUMBER, '(212) 555-0003', 'Hello there, can you call me tomorrow?');
    const res = await postTwilio(t.url, MESSAGES, form);
    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^text\/xml/);
    expect(res.text).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');

    const stored = await messageBySid(form.MessageSid as string);
    expect(stored).toMatchObject({
      organizationId: acme.organizationId,
      direction: 'incoming',
      body: 'Hello there, can you call me tomorrow?',
      provider: 'twilio',
      status: null,
      category: 'question',
      requiresResponse: true,
      optOutDetected: false,
    });
    // The sender, in any format, becomes an E.164 contact that can be texted.
    const contact = await contactOf(acme, '+12125550003');
    expect(contact).toMatchObject({ isTextable: true, isOptedIn: true });
    const conversation = await conversationOf(acme, '+12125550003');
    expect(conversation).toMatchObject({ contactId: contact!.id, lastMessageId: stored!.id, lastDirection: 'incoming', unreadCount: 1 });
  });

  it('refuses a tampered body with 403 and stores nothing', async () => {
    const before = { messages: await messageCount(), contacts: await contactCount() };
    const form = inboundForm(ACME_NUMBER, '+13035550009', 'original text');
    const tampered = new URLSearchParams({ ...(form as Record<string, string>), Body: 'tampered text' }).toString();
    const res = await postTwilio(t.url, MESSAGES, form, { body: tampered });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.text)).toMatchObject({ success: false, code: 'INVALID_SIGNATURE' });
    // An added parameter breaks the signature too: every parameter is signed.
    const extra = `${new URLSearchParams(form as Record<string, string>).toString()}&MediaUrl0=https%3A%2F%2Fevil.example%2Fx.png`;
    expect((await postTwilio(t.url, MESSAGES, form, { body: extra })).status).toBe(403);
    expect(await messageCount()).toBe(before.messages);
    expect(await contactCount()).toBe(before.contacts);
  });

  it('refuses a signature made with another auth token, and a missing signature', async () => {
    const before = await messageCount();
    const wrong = await postTwilio(t.url, MESSAGES, inboundForm(ACME_NUMBER, '+13035550009', 'hi'), { authToken: 'not-the-token' });
    expect(wrong.status).toBe(403);
    const missing = await postTwilio(t.url, MESSAGES, inboundForm(ACME_NUMBER, '+13035550009', 'hi'), { signature: null });
    expect(missing.status).toBe(403);
    expect(JSON.parse(missing.text).code).toBe('INVALID_SIGNATURE');
    // Signed for another host (what a proxy without PUBLIC_BASE_URL would produce).
    const otherHost = await postTwilio(t.url, MESSAGES, inboundForm(ACME_NUMBER, '+13035550009', 'hi'), { publicBaseUrl: t.url });
    expect(otherHost.status).toBe(403);
    expect(await messageCount()).toBe(before);
  });

  it('verifies the URL with its query string', async () => {
    const path = `${MESSAGES}?source=console&region=us1`;
    const form = inboundForm(ACME_NUMBER, '+13035550009', 'with query string');
    const signed = await postTwilio(t.url, path, form);
    expect(signed.status).toBe(200);
    expect(await messageBySid(form.MessageSid as string)).toBeDefined();

    // The same form signed over the URL without its query string is not valid for this URL.
    const form2 = inboundForm(ACME_NUMBER, '+13035550009', 'query string not signed');
    const signature = (await import('twilio')).default.getExpectedTwilioSignature(TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL + MESSAGES, form2);
    const unsigned = await postTwilio(t.url, path, form2, { signature });
    expect(unsigned.status).toBe(403);
    expect(await messageBySid(form2.MessageSid as string)).toBeUndefined();
  });

  it('refuses to work without TWILIO_AUTH_TOKEN, saying why', async () => {
    const unconfigured = buildApp({ ...t.deps, config: { ...t.deps.config, twilioAuthToken: undefined } });
    const url = await unconfigured.start(0, '127.0.0.1');
    try {
      const before = await messageCount();
      for (const path of [MESSAGES, STATUS]) {
        const res = await postTwilio(url, path, inboundForm(ACME_NUMBER, '+13035550009', 'hi'));
        expect(res.status).toBe(503);
        const body = JSON.parse(res.text);
        expect(body).toMatchObject({ success: false, code: 'SERVICE_UNAVAILABLE' });
        expect(body.message).toContain('TWILIO_AUTH_TOKEN');
      }
      expect(await messageCount()).toBe(before);
    } finally {
      await unconfigured.stop(1_000);
    }
  });

  it('takes POST only', async () => {
    const res = await fetch(`${t.url}${MESSAGES}`);
    expect(res.status).toBe(405);
  });
});

describe('inbound webhook: routing and storage', () => {
  it('answers 404 for a number no organization owns, storing nothing', async () => {
    const before = { messages: await messageCount(), contacts: await contactCount() };
    const res = await postInbound(t.url, '+14155550004', '+13035550009', 'anyone there?');
    expect(res.status).toBe(404);
    expect(JSON.parse(res.text)).toMatchObject({ success: false, code: 'NOT_FOUND' });
    expect(await messageCount()).toBe(before.messages);
    expect(await contactCount()).toBe(before.contacts);
  });

  it('routes by To: the same sender texting two organizations lands in each one separately', async () => {
    const from = '+19195551234';
    expect((await postInbound(t.url, ACME_NUMBER, from, 'to acme')).status).toBe(200);
    expect((await postInbound(t.url, OTHER_NUMBER, from, 'to other')).status).toBe(200);
    expect((await conversationOf(acme, from))!.lastMessageBody).toBe('to acme');
    expect((await conversationOf(other, from))!.lastMessageBody).toBe('to other');
  });

  it('refuses an invalid From with 400 and stores nothing', async () => {
    const before = await messageCount();
    const res = await postInbound(t.url, ACME_NUMBER, 'not-a-number', 'hi');
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).code).toBe('INVALID_PHONE_NUMBER');
    const missingSid = await postTwilio(t.url, MESSAGES, { From: '+13035550009', To: ACME_NUMBER, Body: 'no sid' });
    expect(missingSid.status).toBe(400);
    expect(JSON.parse(missingSid.text)).toMatchObject({ code: 'INVALID_PARAMETER', parameter: 'MessageSid' });
    expect(await messageCount()).toBe(before);
  });

  it('stores every media URL of an MMS, in order', async () => {
    const form = inboundForm(ACME_NUMBER, '+13035550009', '', {
      NumMedia: '3',
      MediaUrl0: 'https://api.twilio.com/media/0',
      MediaContentType0: 'image/jpeg',
      MediaUrl1: 'https://api.twilio.com/media/1',
      MediaContentType1: 'image/png',
      MediaUrl2: 'https://api.twilio.com/media/2',
      MediaContentType2: 'video/mp4',
    });
    expect((await postTwilio(t.url, MESSAGES, form)).status).toBe(200);
    expect((await messageBySid(form.MessageSid as string))!.mediaUrls).toEqual([
      'https://api.twilio.com/media/0',
      'https://api.twilio.com/media/1',
      'https://api.twilio.com/media/2',
    ]);
  });

  it('un-archives the conversation and makes an unknown or landline-marked sender textable', async () => {
    const from = '+14155550004';
    await t.createContact(acme, { phoneNumber: from, firstName: 'Lee', isTextable: false });
    await postInbound(t.url, ACME_NUMBER, from, 'first');
    await t.db.update(conversations).set({ isArchived: true }).where(eq(conversations.phoneNumber, from));
    await postInbound(t.url, ACME_NUMBER, from, 'second');
    expect(await conversationOf(acme, from)).toMatchObject({ isArchived: false, unreadCount: 2, lastMessageBody: 'second' });
    expect(await contactOf(acme, from)).toMatchObject({ isTextable: true, firstName: 'Lee' });
  });

  it('stores one message for a MessageSid posted 5 times at once, and counts it unread once', async () => {
    const from = '+12125550003';
    const unreadBefore = (await conversationOf(acme, from))!.unreadCount;
    const form = inboundForm(ACME_NUMBER, from, 'retried by Twilio');
    const responses = await Promise.all(Array.from({ length: 5 }, () => postTwilio(t.url, MESSAGES, form)));
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const rows = await t.db.select().from(messages).where(eq(messages.providerMessageId, form.MessageSid as string));
    expect(rows).toHaveLength(1);
    expect((await conversationOf(acme, from))!.unreadCount).toBe(unreadBefore + 1);
    // A later retry still changes nothing.
    expect((await postTwilio(t.url, MESSAGES, form)).status).toBe(200);
    expect((await conversationOf(acme, from))!.unreadCount).toBe(unreadBefore + 1);
  });
});

describe('inbound webhook: a flood from one sender', () => {
  it('stores every message and flags those over the per-minute threshold (Message.isFlood)', async () => {
    const from = '+17185550142';
    const forms = Array.from({ length: 70 }, (_, i) => inboundForm(ACME_NUMBER, from, `flood ${i}`));
    for (let i = 0; i < forms.length; i += 10) {
      const answers = await Promise.all(forms.slice(i, i + 10).map((form) => postTwilio(t.url, MESSAGES, form)));
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    }
    const rows = await t.db
      .select({ flood: messages.flaggedAsFlood })
      .from(messages)
      .innerJoin(conversations, and(eq(conversations.organizationId, messages.organizationId), eq(conversations.id, messages.conversationId)))
      .where(and(eq(messages.organizationId, acme.organizationId), eq(conversations.phoneNumber, from)));
    expect(rows).toHaveLength(70);
    // INBOUND_FLOOD_PER_MINUTE (60) pass unflagged; the other 10 are stored, flagged.
    expect(rows.filter((row) => row.flood)).toHaveLength(10);

    const res = await t.graphql(`query($p: String!) { conversation(phoneNumber: $p) { messages(first: 100) { edges { node { body isFlood } } } } }`, { p: from }, acme);
    const nodes = res.body.data.conversation.messages.edges.map((edge: any) => edge.node);
    expect(nodes).toHaveLength(70);
    expect(nodes.filter((node: any) => node.isFlood)).toHaveLength(10);
    // A sender within the threshold is never flagged.
    const calm = await postInbound(t.url, ACME_NUMBER, '+17185550143', 'just once');
    expect(calm.status).toBe(200);
    const quiet = await t.graphql(`{ conversation(phoneNumber: "+17185550143") { messages(first: 5) { edges { node { isFlood } } } } }`, {}, acme);
    expect(quiet.body.data.conversation.messages.edges.map((edge: any) => edge.node.isFlood)).toEqual([false]);
  });
});

describe('keywords and consent', () => {
  const OPT_OUT = ['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'REVOKE', 'OPTOUT'];
  const OPT_IN = ['START', 'YES', 'UNSTOP'];
  const query = `query ($phone: String!) {
    conversation(phoneNumber: $phone) {
      contact { isOptedIn consentEvents { kind keyword source createdAt message { body optOutDetected category } } }
      messages(first: 1) { edges { node { body category optOutDetected requiresResponse } } }
    }
  }`;
  const state = async (phone: string) => (await t.graphql(query, { phone }, acme)).body.data.conversation;

  it('opts out on every opt-out keyword and back in on every opt-in keyword, keeping the history', async () => {
    const phone = '+13035550009';
    let expectedEvents = 0;
    for (const [i, keyword] of OPT_OUT.entries()) {
      // Case-insensitive and trimmed, as Twilio matches them.
      const body = i % 2 === 0 ? `  ${keyword.toLowerCase()}\n` : keyword;
      expect((await postInbound(t.url, ACME_NUMBER, phone, body)).status).toBe(200);
      expectedEvents += 1;
      const s = await state(phone);
      expect(s.contact.isOptedIn, keyword).toBe(false);
      expect(s.messages.edges[0].node).toMatchObject({ category: 'opt_out', optOutDetected: true, requiresResponse: false });
      expect(s.contact.consentEvents).toHaveLength(expectedEvents);
      expect(s.contact.consentEvents.at(-1)).toMatchObject({ kind: 'OPT_OUT', keyword, source: 'keyword', message: { body, optOutDetected: true } });

      const optIn = OPT_IN[i % OPT_IN.length]!;
      expect((await postInbound(t.url, ACME_NUMBER, phone, optIn.toLowerCase())).status).toBe(200);
      expectedEvents += 1;
      const back = await state(phone);
      expect(back.contact.isOptedIn, optIn).toBe(true);
      expect(back.messages.edges[0].node).toMatchObject({ category: 'opt_in', optOutDetected: false, requiresResponse: false });
      expect(back.contact.consentEvents.at(-1)).toMatchObject({ kind: 'OPT_IN', keyword: optIn, source: 'keyword' });
    }
    // Every opt-in keyword was used at least once above.
    const used = new Set((await state(phone)).contact.consentEvents.map((e: { keyword: string }) => e.keyword));
    for (const keyword of [...OPT_OUT, ...OPT_IN]) expect(used).toContain(keyword);
    // Oldest first.
    const times = (await state(phone)).contact.consentEvents.map((e: { createdAt: string }) => e.createdAt);
    expect([...times].sort()).toEqual(times);
  });

  it('categorizes HELP and INFO as help without changing consent', async () => {
    const phone = '+19195550002';
    for (const keyword of ['HELP', ' info ']) {
      await postInbound(t.url, ACME_NUMBER, phone, keyword);
      const s = await state(phone);
      expect(s.messages.edges[0].node).toMatchObject({ category: 'help', optOutDetected: false, requiresResponse: true });
      expect(s.contact).toMatchObject({ isOptedIn: true, consentEvents: [] });
    }
  });

  it('does not treat a sentence containing a keyword as one', async () => {
    const phone = '+19195550002';
    for (const body of ['stop please', 'please STOP texting me', 'yes I will be there']) {
      await postInbound(t.url, ACME_NUMBER, phone, body);
      const s = await state(phone);
      expect(s.contact.isOptedIn, body).toBe(true);
      expect(s.messages.edges[0].node.optOutDetected, body).toBe(false);
      expect(['general', 'question'], body).toContain(s.messages.edges[0].node.category);
    }
    expect((await state(phone)).contact.consentEvents).toEqual([]);
  });

  it('analyzes sentiment and whether a reply is needed', async () => {
    const phone = '+19195550002';
    const cases = [
      { body: 'ok thanks', sentiment: 'POSITIVE', requiresResponse: false, category: 'general' },
      { body: 'This is terrible, I am very angry and disappointed', sentiment: 'NEGATIVE', requiresResponse: true, category: 'general' },
      { body: 'What time do you open on Saturday?', sentiment: 'NEUTRAL', requiresResponse: true, category: 'question' },
    ];
    for (const c of cases) {
      await postInbound(t.url, ACME_NUMBER, phone, c.body);
      const res = await t.graphql(
        `query ($phone: String!) { conversation(phoneNumber: $phone) { messages(first: 1) { edges { node { body sentiment sentimentScore category requiresResponse } } } } }`,
        { phone },
        acme,
      );
      const node = res.body.data.conversation.messages.edges[0].node;
      expect(node, c.body).toMatchObject({ body: c.body, sentiment: c.sentiment, requiresResponse: c.requiresResponse, category: c.category });
      expect(node.sentimentScore).toBeGreaterThanOrEqual(0);
      expect(node.sentimentScore).toBeLessThanOrEqual(1);
      if (c.sentiment === 'POSITIVE') expect(node.sentimentScore).toBeGreaterThan(0.5);
      if (c.sentiment === 'NEGATIVE') expect(node.sentimentScore).toBeLessThan(0.5);
    }
  });
});

describe('status callbacks', () => {
  async function outgoing(phoneNumber: string) {
    const sid = nextSid();
    const stored = await t.addMessage(acme, { phoneNumber, direction: 'outgoing', body: 'Your order shipped', status: 'queued', provider: 'twilio', providerMessageId: sid });
    return { sid, id: stored!.message.id };
  }
  const status = (MessageSid: string, MessageStatus: string, extra: Record<string, string> = {}) =>
    postTwilio(t.url, STATUS, { MessageSid, MessageStatus, AccountSid: 'AC00000000000000000000000000000000', ...extra });
  const history = async (messageId: string) =>
    (await t.db.select().from(messageStatusEvents).where(eq(messageStatusEvents.messageId, messageId))).map((e) => e.status);

  it('moves forward only: delivered then a late sent stays delivered, with both in the history', async () => {
    const { sid, id } = await outgoing('+12125550003');
    expect((await status(sid, 'sent')).status).toBe(200);
    expect((await messageBySid(sid))!.status).toBe('sent');
    expect((await status(sid, 'delivered')).status).toBe(200);
    expect((await status(sid, 'sent')).status).toBe(200);
    expect((await status(sid, 'sending')).status).toBe(200);
    expect((await messageBySid(sid))!.status).toBe('delivered');
    expect((await history(id)).sort()).toEqual(['delivered', 'sending', 'sent', 'sent']);
  });

  it('stores the error code of a failed message', async () => {
    const { sid } = await outgoing('+12125550003');
    await status(sid, 'undelivered', { ErrorCode: '30003' });
    expect(await messageBySid(sid)).toMatchObject({ status: 'undelivered', errorCode: 30003 });
  });

  it('opts the contact out on 21610 and records why', async () => {
    const phone = '+14155550004';
    const { sid, id } = await outgoing(phone);
    await status(sid, 'failed', { ErrorCode: '21610' });
    expect(await contactOf(acme, phone)).toMatchObject({ isOptedIn: false });
    const events = await t.db.select().from(consentEvents).where(eq(consentEvents.messageId, id));
    expect(events).toMatchObject([{ kind: 'opt_out', source: 'provider_error' }]);
  });

  it('acknowledges an unknown message or status with 200 and changes nothing', async () => {
    const before = (await t.db.select({ n: count() }).from(messageStatusEvents))[0]!.n;
    expect((await status(nextSid(), 'delivered')).status).toBe(200);
    const { sid } = await outgoing('+12125550003');
    expect((await status(sid, 'teleported')).status).toBe(200);
    expect((await messageBySid(sid))!.status).toBe('queued');
    expect((await t.db.select({ n: count() }).from(messageStatusEvents))[0]!.n).toBe(before);
  });

  it('verifies the signature of status callbacks too', async () => {
    const { sid } = await outgoing('+12125550003');
    const res = await postTwilio(t.url, STATUS, { MessageSid: sid, MessageStatus: 'delivered' }, { authToken: 'wrong' });
    expect(res.status).toBe(403);
    expect((await messageBySid(sid))!.status).toBe('queued');
  });
});
