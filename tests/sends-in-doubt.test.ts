import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { messages, messageStatusEvents, organizations } from '../src/db/tables.js';
import { TwilioProvider } from '../src/providers/twilio/twilio-provider.js';
import { createContact } from '../src/services/contacts.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { settleSendsInDoubt } from '../src/services/replies/index.js';
import { createTestApp } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { until } from './helpers/realtime.js';
import { createServerStore, freePort, startServerProcess, type ServerProcess, type ServerStore } from './helpers/server-process.js';

// Replies whose process died while Twilio had them (the real `twilio` SDK against the fake Twilio, the real
// server process, SIGKILL): after a restart, a send Twilio created gets its SID, one it never got fails
// and is refunded. Runs on PostgreSQL or on an embedded PGlite directory.

const NUMBER = '+19195550100';
const KEPT = '+14155550101';
const LOST = '+14155550102';
const PUBLIC = 'https://gateway.example.test';

let fake: FakeTwilio;
beforeAll(async () => {
  fake = await startFakeTwilio();
});
afterAll(() => fake?.close());

describe('TwilioProvider.findSend (the Messages list, through the SDK)', () => {
  const provider = () => new TwilioProvider({ accountSid: fake.accountSid, authToken: fake.authToken, apiBaseUrl: fake.url, timeoutMs: 2_000 });

  it('finds a send Twilio created by recipient, sender, body and time, through pages; not_sent only once it has read them all', async () => {
    fake.reset();
    const sent = await provider().send({
      organizationId: 'org',
      messageId: 'msg',
      to: KEPT,
      from: NUMBER,
      body: 'Your table is ready',
      mediaUrls: [],
      sendAsMms: false,
      statusCallbackUrl: `${PUBLIC}/webhooks/twilio/status`,
    });
    expect(sent.ok).toBe(true);
    const sid = fake.sent[0]!.sid;
    const now = new Date();
    expect(await provider().findSend({ to: KEPT, from: NUMBER, body: 'Your table is ready', createdAt: now }, 15_000)).toEqual({
      kind: 'sent',
      providerMessageId: sid,
      status: 'queued',
    });
    // Another body, another recipient, or a send made long after that message: Twilio has none of them.
    expect(await provider().findSend({ to: KEPT, from: NUMBER, body: 'Another text', createdAt: now }, 15_000)).toEqual({ kind: 'not_sent' });
    expect(await provider().findSend({ to: LOST, from: NUMBER, body: 'Your table is ready', createdAt: now }, 15_000)).toEqual({ kind: 'not_sent' });
    const later = new Date(now.getTime() + 10 * 60_000);
    expect(await provider().findSend({ to: KEPT, from: NUMBER, body: 'Your table is ready', createdAt: later }, 15_000)).toEqual({ kind: 'not_sent' });
    const listed = fake.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/Messages.json'));
    expect(listed[0]!.query).toContain(`To=${encodeURIComponent(KEPT)}`);
    expect(listed[0]!.query).toContain(`From=${encodeURIComponent(NUMBER)}`);

    // Found on a later page, behind newer messages to the same number.
    const more = async (count: number) => {
      for (let i = 0; i < count; i += 1) {
        await provider().send({ organizationId: 'org', messageId: `m${i}`, to: KEPT, from: NUMBER, body: `filler ${i}`, mediaUrls: [], sendAsMms: false, statusCallbackUrl: `${PUBLIC}/s` });
      }
    };
    await more(60);
    expect(await provider().findSend({ to: KEPT, from: NUMBER, body: 'Your table is ready', createdAt: now }, 15_000)).toMatchObject({ kind: 'sent', providerMessageId: sid });
    // Past five pages a missing send cannot be told from one further back: unknown, never not_sent.
    await more(200);
    expect(await provider().findSend({ to: KEPT, from: NUMBER, body: 'Your table is ready', createdAt: now }, 15_000)).toMatchObject({ kind: 'unknown' });
  });

  it('says unknown when Twilio cannot be asked', async () => {
    const down = new TwilioProvider({ accountSid: fake.accountSid, authToken: fake.authToken, apiBaseUrl: 'http://127.0.0.1:9', timeoutMs: 500 });
    const record = await down.findSend({ to: KEPT, from: NUMBER, body: 'x', createdAt: new Date() }, 15_000);
    expect(record.kind).toBe('unknown');
  });
});

describe('SENDS_IN_DOUBT_AFTER_MS', () => {
  it('must be longer than the provider timeout: a live call is never in doubt', () => {
    expect(loadConfig({}).sendsInDoubtAfterMs).toBe(300_000);
    expect(() => loadConfig({ SMS_PROVIDER_TIMEOUT_MS: '20000', SENDS_IN_DOUBT_AFTER_MS: '20000' })).toThrow(/SENDS_IN_DOUBT_AFTER_MS .* must be longer than SMS_PROVIDER_TIMEOUT_MS/);
    expect(loadConfig({ SMS_PROVIDER_TIMEOUT_MS: '20000', SENDS_IN_DOUBT_AFTER_MS: '20001' }).sendsInDoubtAfterMs).toBe(20_001);
  });
});

describe('the sweep (simulated provider)', () => {
  it('refunds a send in doubt exactly once, however many sweeps race for it, and leaves live sends alone', async () => {
    const t = await createTestApp({ SENDS_IN_DOUBT_AFTER_MS: '60000' });
    try {
      const org = await t.createOrg('Sweeps', { credits: 10, phoneNumber: NUMBER });
      await t.createContact(org, { phoneNumber: KEPT, isTextable: true });
      await t.createContact(org, { phoneNumber: LOST, isTextable: true });
      const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { ... on SendReplyPayload { sent: message { uuid } } } }`;
      const sendTo = async (phoneNumber: string) =>
        (await t.graphql(SEND, { input: { phoneNumber, message: 'Are you still coming?' } }, org)).body.data.sendReply.sent.uuid as string;
      const stale = await sendTo(KEPT);
      const recent = await sendTo(LOST);
      // The state a process killed during the provider call leaves: charged, queued, no provider id (and,
      // for the stale one, older than SENDS_IN_DOUBT_AFTER_MS).
      const unanswer = (id: string, createdAt: Date) =>
        t.db
          .update(messages)
          .set({ providerMessageId: null, status: 'queued', createdAt })
          .where(and(eq(messages.organizationId, org.organizationId), eq(messages.id, id)));
      await unanswer(stale, new Date(Date.now() - 10 * 60_000));
      await unanswer(recent, new Date());
      const credits = async () => (await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId)))[0]!.credits;
      expect(await credits()).toBe(8);

      const sweeps = await Promise.all([settleSendsInDoubt(t.deps), settleSendsInDoubt(t.deps), settleSendsInDoubt(t.deps)]);
      expect(sweeps.reduce((sum, sweep) => sum + sweep.failed, 0)).toBe(1);
      expect(await credits()).toBe(9);
      const row = async (id: string) => (await t.db.select().from(messages).where(eq(messages.id, id)))[0]!;
      expect(await row(stale)).toMatchObject({ status: 'failed', creditsCharged: 0, providerMessageId: null });
      const failedEvents = await t.db.select().from(messageStatusEvents).where(and(eq(messageStatusEvents.messageId, stale), eq(messageStatusEvents.status, 'failed')));
      expect(failedEvents).toHaveLength(1);
      // The recent one may still get its provider's answer: untouched.
      expect(await row(recent)).toMatchObject({ status: 'queued', creditsCharged: 1 });
      expect(await settleSendsInDoubt(t.deps)).toEqual({ sent: 0, failed: 0, unknown: 0 });
    } finally {
      await t.close();
    }
  });
});

describe('SIGKILL while Twilio has two replies', () => {
  let store: ServerStore;
  let server: ServerProcess | null = null;
  beforeAll(async () => {
    store = await createServerStore();
  });
  afterAll(async () => {
    server?.child.kill('SIGKILL');
    await store?.destroy();
  });

  it('after a restart, the one Twilio created gets its SID and keeps its credit; the one it never got fails and is refunded', async () => {
    fake.reset();
    const database = await store.open();
    let org: { organizationId: string; apiToken: string };
    try {
      await database.migrate();
      org = await createOrganization(database.db, { name: 'In doubt', credits: 10 });
      await addPhoneNumber(database.db, org.organizationId, { phoneNumber: NUMBER, isDefault: true });
      for (const phoneNumber of [KEPT, LOST]) await createContact(database.db, org.organizationId, { phoneNumber, isTextable: true });
    } finally {
      await database.close();
    }
    // The provider call may take 1 s; after 2 s a send without its answer is in doubt (swept every 0.4 s).
    const env = { ...store.env, ...fake.env(), PUBLIC_BASE_URL: PUBLIC, SMS_PROVIDER_TIMEOUT_MS: '1000', SENDS_IN_DOUBT_AFTER_MS: '2000' };
    const graphql = async (query: string, variables: Record<string, unknown> = {}) => {
      const response = await fetch(`${server!.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId },
        body: JSON.stringify({ query, variables }),
      });
      return (await response.json()) as { data?: any; errors?: unknown[] };
    };
    const port = await freePort();
    server = await startServerProcess(env, port);

    // Twilio creates the first message and the second is lost on the way; neither answer ever comes back.
    fake.hangSendsTo(KEPT, { kept: true });
    fake.hangSendsTo(LOST, { kept: false });
    const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename } }`;
    const calls = [KEPT, LOST].map((phoneNumber) => graphql(SEND, { input: { phoneNumber, message: `Hello ${phoneNumber}` } }).catch(() => null));
    await until(() => fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/Messages.json')).length === 2, 10_000, 'both sends at Twilio');
    server.child.kill('SIGKILL');
    await server.exited;
    await Promise.all(calls);
    expect(fake.sent.map((m) => m.to)).toEqual([KEPT]);

    server = await startServerProcess(env, port);
    const THREAD = `query($phone: String!) { conversation(phoneNumber: $phone) { messages(first: 1) { edges { node { status providerMessageId creditsCharged } } } } }`;
    const last = async (phone: string) => (await graphql(THREAD, { phone })).data?.conversation?.messages.edges[0]?.node;
    await until(async () => (await last(KEPT))?.providerMessageId && (await last(LOST))?.status === 'FAILED', 20_000, 'both sends settled');

    expect(await last(KEPT)).toEqual({ status: 'QUEUED', providerMessageId: fake.sent[0]!.sid, creditsCharged: 1 });
    expect(await last(LOST)).toEqual({ status: 'FAILED', providerMessageId: null, creditsCharged: 0 });
    // Charged once for the message Twilio has, refunded for the one it never got.
    expect((await graphql('{ organization { credits } }')).data.organization.credits).toBe(9);
    expect(server.output()).toMatch(/send in doubt: the provider never got it/);
  }, 60_000);
});
