import { and, count, eq, sum } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversations, messages, organizations } from '../src/db/tables.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { inboundForm, nextSid, postTwilio } from './helpers/realtime.js';

// Concurrency invariants under generated races: sends racing on one balance, retries racing on one
// idempotency key, Twilio retrying one webhook at once, status callbacks arriving all together and in
// any order. Money is never negative and always equals the sum of charges; one message per key or
// MessageSid; a status only moves forward.

let t: TestApp;
let orgSeq = 0;
const AUTH = 'concurrency-token-0000000000';
const PUBLIC = 'https://gateway.example.com';

beforeAll(async () => {
  // Simulated deliveries far in the future: statuses change only through the callbacks we race.
  t = await createTestApp({ RATE_LIMIT_PER_MINUTE: '0', SIMULATED_STATUS_DELAY_MS: '3600000', TWILIO_AUTH_TOKEN: AUTH, PUBLIC_BASE_URL: PUBLIC });
}, 60_000);
afterAll(() => t?.close());

/** A fresh organization per run, with its own sending number and one textable contact. */
async function freshOrg(credits: number) {
  orgSeq += 1;
  const number = `+1919555${String(1000 + orgSeq).padStart(4, '0')}`;
  const contact = `+1415555${String(1000 + orgSeq).padStart(4, '0')}`;
  const org = await t.createOrg(`Race ${orgSeq}`, { credits, phoneNumber: number });
  await t.createContact(org, { phoneNumber: contact, isTextable: true });
  return { org, number, contact };
}

const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on Error { code } ... on SendReplyPayload { creditsCharged providerMessageId message { uuid } } } }`;

async function sendVia(via: 'graphql' | 'rest', org: TestOrg, contact: string, message: string, key?: string) {
  if (via === 'graphql') {
    const res = await t.graphql(SEND, { input: { phoneNumber: contact, message, idempotencyKey: key } }, org);
    const result = res.body.data.sendReply;
    return result.__typename === 'SendReplyPayload'
      ? { ok: true as const, messageId: result.message.uuid as string, providerMessageId: result.providerMessageId as string }
      : { ok: false as const, code: result.code as string };
  }
  const res = await fetch(`${t.url}/api/conversations/${encodeURIComponent(contact)}/reply`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, ...(key ? { 'idempotency-key': key } : {}) },
    body: JSON.stringify({ message }),
  });
  const body = (await res.json()) as any;
  return body.success ? { ok: true as const, messageId: body.messageLog.id as string, providerMessageId: body.providerMessageId as string } : { ok: false as const, code: body.code as string };
}

async function ledger(org: TestOrg) {
  const [row] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId));
  const [charged] = await t.db
    .select({ total: sum(messages.creditsCharged), n: count() })
    .from(messages)
    .where(and(eq(messages.organizationId, org.organizationId), eq(messages.direction, 'outgoing')));
  return { balance: row!.credits, charged: Number(charged!.total ?? 0), messages: charged!.n };
}

describe('racing sends on one balance', () => {
  it('the balance never goes negative and always equals the starting credits less the sum of charges', async () => {
    // 20 characters: one segment; 200: two; 400: three.
    const send = fc.record({ length: fc.constantFrom(20, 200, 400), via: fc.constantFrom('graphql' as const, 'rest' as const) });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 15 }), fc.array(send, { minLength: 1, maxLength: 20 }), async (credits, sends) => {
        const { org, contact } = await freshOrg(credits);
        const results = await Promise.all(sends.map((s, i) => sendVia(s.via, org, contact, `${i} `.padEnd(s.length, 'x'))));
        const after = await ledger(org);
        expect(after.balance).toBeGreaterThanOrEqual(0);
        expect(after.balance + after.charged).toBe(credits);
        for (const result of results) if (!result.ok) expect(result.code).toBe('INSUFFICIENT_CREDITS');
        expect(results.filter((r) => r.ok)).toHaveLength(after.messages);
        // Nobody was refused while the balance could still have paid for their message.
        const cheapestRefused = Math.min(...sends.filter((_, i) => !results[i]!.ok).map((s) => Math.ceil(s.length / 153)));
        if (Number.isFinite(cheapestRefused)) expect(after.balance).toBeLessThan(cheapestRefused);
      }),
      { numRuns: 8 },
    );
  });
});

describe('racing retries of one idempotency key', () => {
  it('one message, one charge, one provider send; every caller gets the same answer', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom('graphql' as const, 'rest' as const), { minLength: 2, maxLength: 10 }), fc.stringMatching(/^[\x21-\x7e]{1,40}$/), async (vias, key) => {
        // Keys an HTTP header can carry unchanged (fetch trims header values), so GraphQL and REST send the same key.
        const { org, contact } = await freshOrg(vias.length + 5);
        // Unrelated sends without a key go out each time (the key is what makes a retry a retry).
        const unkeyed = await Promise.all(vias.map((via) => sendVia(via, org, contact, 'no key')));
        expect(unkeyed.every((r) => r.ok)).toBe(true);
        const before = await ledger(org);
        expect(before.messages).toBe(vias.length);
        const raced = await Promise.all(vias.map((via) => sendVia(via, org, contact, 'exactly once', key)));
        const after = await ledger(org);
        expect(raced.every((r) => r.ok)).toBe(true);
        expect(new Set(raced.map((r) => (r.ok ? r.messageId : null))).size).toBe(1);
        expect(new Set(raced.map((r) => (r.ok ? r.providerMessageId : null))).size).toBe(1);
        expect(after.messages - before.messages).toBe(1);
        expect(before.balance - after.balance).toBe(1);
        const [keyed] = await t.db.select({ n: count() }).from(messages).where(and(eq(messages.organizationId, org.organizationId), eq(messages.idempotencyKey, key)));
        expect(keyed!.n).toBe(1);
      }),
      { numRuns: 6 },
    );
  });
});

describe('racing webhook retries', () => {
  it('the same MessageSid delivered many times at once is stored once and counted unread once', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 12 }), fc.string({ maxLength: 60 }), async (copies, text) => {
        const { org, number } = await freshOrg(0);
        const sender = `+1646555${String(1000 + orgSeq).padStart(4, '0')}`;
        const form = inboundForm(number, sender, text.replace(/\u0000/g, ''));
        const answers = await Promise.all(
          Array.from({ length: copies }, () => postTwilio(t.url, '/webhooks/twilio/messages', form, { authToken: AUTH, publicBaseUrl: PUBLIC })),
        );
        expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
        const [stored] = await t.db.select({ n: count() }).from(messages).where(eq(messages.providerMessageId, form.MessageSid as string));
        expect(stored!.n).toBe(1);
        const [conversation] = await t.db
          .select({ unread: conversations.unreadCount })
          .from(conversations)
          .where(and(eq(conversations.organizationId, org.organizationId), eq(conversations.phoneNumber, sender)));
        expect(conversation!.unread).toBe(1);
      }),
      { numRuns: 8 },
    );
  });
});

describe('sends and inbound messages racing on the same contacts', () => {
  it('all land: credits equal the sum of charges, unread counts the inbound messages, inbound stamps strictly increase', async () => {
    const { org, number } = await freshOrg(100);
    const people = Array.from({ length: 5 }, (_, i) => `+1212555${String(7000 + orgSeq * 10 + i).padStart(4, '0')}`);
    for (const phone of people) await t.createContact(org, { phoneNumber: phone, isTextable: true });
    const sends = people.flatMap((phone) => Array.from({ length: 4 }, (_, i) => () => sendVia(i % 2 ? 'rest' : 'graphql', org, phone, `reply ${i}`)));
    const inbound = people.flatMap((phone) =>
      Array.from({ length: 4 }, (_, i) => () => postTwilio(t.url, '/webhooks/twilio/messages', inboundForm(number, phone, `text ${i}`), { authToken: AUTH, publicBaseUrl: PUBLIC })),
    );
    const [sent, received] = await Promise.all([Promise.all(sends.map((go) => go())), Promise.all(inbound.map((go) => go()))]);
    expect(sent.every((r) => r.ok)).toBe(true);
    expect(received.map((r) => r.status)).toEqual(received.map(() => 200));
    const after = await ledger(org);
    expect(after.messages).toBe(20);
    expect(after.balance + after.charged).toBe(100);
    for (const phone of people) {
      const [conversation] = await t.db
        .select({ unread: conversations.unreadCount })
        .from(conversations)
        .where(and(eq(conversations.organizationId, org.organizationId), eq(conversations.phoneNumber, phone)));
      expect(conversation!.unread).toBe(4);
    }
    const stamps = await t.db
      .select({ at: messages.createdAt })
      .from(messages)
      .where(and(eq(messages.organizationId, org.organizationId), eq(messages.direction, 'incoming')))
      .orderBy(messages.createdAt);
    expect(stamps).toHaveLength(20);
    for (let i = 1; i < stamps.length; i += 1) expect(stamps[i]!.at.getTime()).toBeGreaterThan(stamps[i - 1]!.at.getTime());
  });
});

describe('racing status callbacks', () => {
  const RANK: Record<string, number> = { queued: 1, sending: 2, sent: 3, delivered: 4, undelivered: 4, failed: 4, read: 5 };
  // The statuses one message can go through, each path in its forward order.
  const paths = [
    ['queued', 'sending', 'sent', 'delivered', 'read'],
    ['queued', 'sending', 'sent', 'undelivered'],
    ['queued', 'sending', 'failed'],
  ];

  it('whatever the arrival order and duplicates, the message ends at the furthest status it was sent', async () => {
    const scenario = fc
      .constantFrom(...paths)
      .chain((path) => fc.subarray(path.slice(1), { minLength: 1 }))
      .chain((statuses) => fc.tuple(fc.constant(statuses), fc.shuffledSubarray([...statuses, ...statuses], { minLength: statuses.length })));
    await fc.assert(
      fc.asyncProperty(scenario, async ([statuses, arrivals]) => {
        fc.pre(statuses.every((s) => arrivals.includes(s)));
        const { org, contact } = await freshOrg(0);
        const sid = nextSid('SM');
        const stored = await t.addMessage(org, { phoneNumber: contact, direction: 'outgoing', body: 'tracking', status: 'queued', provider: 'twilio', providerMessageId: sid } as never);
        expect(stored).not.toBeNull();
        const answers = await Promise.all(
          arrivals.map((status) =>
            postTwilio(t.url, '/webhooks/twilio/status', { MessageSid: sid, MessageStatus: status, AccountSid: 'AC0' }, { authToken: AUTH, publicBaseUrl: PUBLIC }),
          ),
        );
        expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
        const [row] = await t.db.select({ status: messages.status }).from(messages).where(and(eq(messages.organizationId, org.organizationId), eq(messages.providerMessageId, sid)));
        const furthest = statuses.reduce((best, s) => (RANK[s]! > RANK[best]! ? s : best), 'queued');
        expect(row!.status).toBe(furthest);
      }),
      { numRuns: 15 },
    );
  });
});
