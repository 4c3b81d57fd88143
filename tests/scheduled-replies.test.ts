import { and, eq, sql } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { jobs, messages, organizations } from '../src/db/tables.js';
import { assembleDeps, closeDeps, type Deps } from '../src/deps.js';
import { scheduleReply } from '../src/services/replies/index.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { postgresUrl } from './helpers/database.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { connectWs, subscribeWs, until } from './helpers/realtime.js';

// Scheduled replies (SendReplyInput.sendAt) over HTTP, sent through the real `twilio` SDK against the fake
// Twilio, by the job runner each instance runs. Due times are moved with rescheduleReply (the public API)
// rather than waited for; "every instance was down" is made by moving the stored due time into the past.

const NUMBER = '+19195550100';
const PUBLIC = 'https://sched.example.test';
let fake: FakeTwilio;
let t: TestApp;
let org: TestOrg;
let seq = 0;
const phone = () => `+1415555${String(3000 + ++seq)}`;

const SEND = `mutation($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on Error { code message }
    ... on SendReplyPayload { creditsCharged providerMessageId segments reply: message { id uuid status body sendAt createdAt creditsCharged } }
  }
}`;
const MESSAGE = `query($id: ID!) { node(id: $id) { ... on Message { id status body sendAt failureCode errorCode creditsCharged providerMessageId createdAt } } }`;
const RESCHEDULE = `mutation($id: ID!, $sendAt: DateTime!, $message: String) { rescheduleReply(id: $id, sendAt: $sendAt, message: $message) { id status body sendAt segments } }`;
const CANCEL = `mutation($id: ID!) { cancelScheduledReply(id: $id) { id status } }`;

const inSeconds = (s: number) => new Date(Date.now() + s * 1000).toISOString();

async function contact(credits?: number) {
  const number = phone();
  await t.createContact(org, { phoneNumber: number, firstName: 'Ada', isTextable: true });
  if (credits !== undefined) await t.db.update(organizations).set({ credits }).where(eq(organizations.id, org.organizationId));
  return number;
}

async function schedule(number: string, sendAt: string, extra: Record<string, unknown> = {}) {
  const res = await t.graphql(SEND, { input: { phoneNumber: number, message: `Hello ${number}`, sendAt, ...extra } }, org);
  expect(res.body.errors).toBeUndefined();
  const result = res.body.data.sendReply;
  return result.__typename === 'SendReplyPayload' ? { ...result, message: result.reply } : result;
}

const message = async (id: string) => (await t.graphql(MESSAGE, { id }, org)).body.data.node;
const credits = async () =>
  (await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId)))[0]!.credits;
const sentTo = (number: string) => fake.sent.filter((m) => m.to === number);

/** Makes a scheduled reply due now (rescheduleReply to this moment) and waits until the runner settled it. */
async function dueNow(id: string) {
  const res = await t.graphql(RESCHEDULE, { id, sendAt: new Date().toISOString() }, org);
  expect(res.body.errors).toBeUndefined();
  await until(
    async () => {
      const now = await message(id);
      return now.status === 'FAILED' || now.providerMessageId !== null;
    },
    10_000,
    'the reply sent or failed',
  );
  return message(id);
}

beforeAll(async () => {
  fake = await startFakeTwilio();
  t = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: PUBLIC, JOB_POLL_MS: '50', SCHEDULED_REPLY_MAX_LATENESS_MS: '600000' });
  org = await t.createOrg('Scheduling', { credits: 100, phoneNumber: NUMBER });
  t.deps.jobs.start();
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});
beforeEach(() => fake.reset());

describe('scheduling', () => {
  it('stores a reply more than 5 s ahead as SCHEDULED, charging nothing and sending nothing', async () => {
    const number = await contact();
    const before = await credits();
    const sendAt = inSeconds(3600);
    const result = await schedule(number, sendAt, { idempotencyKey: `k-${number}` });
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', creditsCharged: 0, providerMessageId: null, segments: 1 });
    expect(result.message).toMatchObject({ status: 'SCHEDULED', body: `Hello ${number}`, sendAt, createdAt: sendAt, creditsCharged: 0 });
    expect(await credits()).toBe(before);
    expect(sentTo(number)).toEqual([]);

    // Listed on its conversation; not in the REST messages route; the thread's last message is unchanged.
    const listed = await t.graphql(
      `query($p: String!) { conversation(phoneNumber: $p) { lastMessage { id } scheduledReplies { id status } } }`,
      { p: number },
      org,
    );
    expect(listed.body.data.conversation).toEqual({ lastMessage: null, scheduledReplies: [{ id: result.message.id, status: 'SCHEDULED' }] });
    const rest = await fetch(`${t.url}/api/conversations/${encodeURIComponent(number)}/messages`, {
      headers: { authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId },
    });
    expect((await rest.json()).messages).toEqual([]);

    // The same idempotency key answers with the scheduled message, and schedules nothing more.
    const again = await schedule(number, sendAt, { idempotencyKey: `k-${number}` });
    expect(again.message.id).toBe(result.message.id);
    expect(await t.db.select().from(jobs).where(eq(jobs.key, `scheduled_reply:${result.message.uuid}`))).toHaveLength(1);
  });

  it('refuses a time in the past or more than 90 days ahead with BAD_USER_INPUT, storing nothing', async () => {
    const number = await contact();
    for (const sendAt of [inSeconds(-60), inSeconds(91 * 24 * 3600)]) {
      const res = await t.graphql(SEND, { input: { phoneNumber: number, message: 'x', sendAt } }, org);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    const stored = await t.db.select().from(messages).where(eq(messages.organizationId, org.organizationId));
    expect(stored.filter((m) => m.body === 'x')).toEqual([]);
  });

  it('sends at once when sendAt is within 5 s', async () => {
    const number = await contact();
    const result = await schedule(number, inSeconds(2));
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', creditsCharged: 1 });
    expect(result.providerMessageId).toMatch(/^SM/);
    expect(sentTo(number)).toHaveLength(1);
  });

  it('refuses what a send would refuse (an opted-out contact) when scheduling', async () => {
    const number = phone();
    await t.createContact(org, { phoneNumber: number, isTextable: true, isOptedIn: false });
    const result = await schedule(number, inSeconds(600));
    expect(result).toMatchObject({ __typename: 'ContactOptedOutError', code: 'CONTACT_OPTED_OUT' });
  });
});

describe('going out', () => {
  it('goes out through the normal send path when due, charged then, exactly once', async () => {
    const number = await contact();
    const scheduled = await schedule(number, inSeconds(600));
    const before = await credits();
    const sent = await dueNow(scheduled.message.id);
    expect(sent).toMatchObject({ creditsCharged: 1, failureCode: null });
    expect(sent.providerMessageId).toBe(sentTo(number)[0]!.sid);
    expect(sentTo(number)).toHaveLength(1);
    expect(await credits()).toBe(before - 1);
    // It is the thread's last message now.
    const thread = await t.graphql(`query($p: String!) { conversation(phoneNumber: $p) { lastMessage { id } scheduledReplies { id } } }`, { p: number }, org);
    expect(thread.body.data.conversation).toEqual({ lastMessage: { id: scheduled.message.id }, scheduledReplies: [] });
    // Its job is gone; nothing more goes out.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sentTo(number)).toHaveLength(1);
    expect(await t.db.select().from(jobs).where(eq(jobs.key, `scheduled_reply:${scheduled.message.uuid}`))).toEqual([]);
  });

  it('fails a due reply the credits do not cover: FAILED with INSUFFICIENT_CREDITS, nothing charged, the key still answers with it', async () => {
    const number = await contact(0);
    const scheduled = await schedule(number, inSeconds(600), { idempotencyKey: `poor-${number}` });
    expect(scheduled.__typename).toBe('SendReplyPayload');
    const failed = await dueNow(scheduled.message.id);
    expect(failed).toMatchObject({ status: 'FAILED', failureCode: 'INSUFFICIENT_CREDITS', creditsCharged: 0, providerMessageId: null });
    expect(await credits()).toBe(0);
    expect(sentTo(number)).toEqual([]);
    const replay = await schedule(number, inSeconds(600), { idempotencyKey: `poor-${number}` });
    expect(replay).toMatchObject({ __typename: 'SendReplyPayload', message: { id: scheduled.message.id, status: 'FAILED' } });
    await t.db.update(organizations).set({ credits: 100 }).where(eq(organizations.id, org.organizationId));
  });

  it('fails a due reply to a contact who opted out meanwhile, and tells messageStatusChanged over graphql-ws', async () => {
    const number = await contact();
    const scheduled = await schedule(number, inSeconds(600));
    const ws = connectWs(t.url, org);
    const statuses = subscribeWs(ws, `subscription($p: String) { messageStatusChanged(phoneNumber: $p) { id status failureCode } }`, { p: number });
    try {
      // Subscribed before the change: the socket is acknowledged, and the subscribe message went right after.
      await until(() => ws.messages.includes('connection_ack'), 10_000, 'connection_ack');
      await new Promise((resolve) => setTimeout(resolve, 100));
      await t.db.execute(sql`update contacts set is_opted_in = false where phone_number = ${number}`);
      const failed = await dueNow(scheduled.message.id);
      expect(failed).toMatchObject({ status: 'FAILED', failureCode: 'CONTACT_OPTED_OUT', creditsCharged: 0 });
      expect(sentTo(number)).toEqual([]);
      const [event] = await statuses.waitFor(1);
      expect(event).toEqual({ messageStatusChanged: { id: scheduled.message.id, status: 'FAILED', failureCode: 'CONTACT_OPTED_OUT' } });
    } finally {
      statuses.unsubscribe();
      await ws.client.dispose();
    }
  });

  it('fails a reply that fell due while every instance was down longer than SCHEDULED_REPLY_MAX_LATENESS_MS, unsent', async () => {
    const number = await contact();
    const scheduled = await schedule(number, inSeconds(600));
    // Every instance down for 2 hours: the job and its reply were due then.
    const past = new Date(Date.now() - 2 * 3600_000);
    await t.db.update(messages).set({ sendAt: past, createdAt: past }).where(eq(messages.id, scheduled.message.uuid));
    await t.db.update(jobs).set({ runAt: past }).where(eq(jobs.key, `scheduled_reply:${scheduled.message.uuid}`));
    await until(async () => (await message(scheduled.message.id)).status === 'FAILED', 10_000, 'expired');
    expect(await message(scheduled.message.id)).toMatchObject({ failureCode: 'SCHEDULE_EXPIRED', creditsCharged: 0 });
    expect(sentTo(number)).toEqual([]);
  });

  it('a provider refusal at send time fails and refunds it, keeping the provider code', async () => {
    const number = await contact();
    const scheduled = await schedule(number, inSeconds(600));
    const before = await credits();
    fake.failSendsTo(number, { code: 21408, status: 400 });
    const failed = await dueNow(scheduled.message.id);
    expect(failed).toMatchObject({ status: 'FAILED', failureCode: 'PROVIDER_ERROR', errorCode: 21408, creditsCharged: 0 });
    expect(await credits()).toBe(before);
  });
});

describe('managing scheduled replies', () => {
  it('reschedules (time and text, recounting segments) and cancels; a reply no longer SCHEDULED is NOT_SCHEDULED', async () => {
    const number = await contact();
    const scheduled = await schedule(number, inSeconds(600));
    const later = inSeconds(7200);
    const long = 'x'.repeat(200);
    const moved = await t.graphql(RESCHEDULE, { id: scheduled.message.id, sendAt: later, message: long }, org);
    expect(moved.body.data.rescheduleReply).toMatchObject({ status: 'SCHEDULED', sendAt: later, body: long, segments: 2 });
    expect((await t.db.select().from(jobs).where(eq(jobs.key, `scheduled_reply:${scheduled.message.uuid}`)))[0]!.runAt.toISOString()).toBe(later);

    const canceled = await t.graphql(CANCEL, { id: scheduled.message.id }, org);
    expect(canceled.body.data.cancelScheduledReply).toEqual({ id: scheduled.message.id, status: 'CANCELED' });
    expect(await t.db.select().from(jobs).where(eq(jobs.key, `scheduled_reply:${scheduled.message.uuid}`))).toEqual([]);
    for (const [query, variables] of [
      [CANCEL, { id: scheduled.message.id }],
      [RESCHEDULE, { id: scheduled.message.id, sendAt: later }],
    ] as const) {
      const res = await t.graphql(query, variables, org);
      expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'NOT_SCHEDULED' });
    }
    // A past time is refused; an unknown id or another organization's reply is not found.
    const other = await t.createOrg('Other', { credits: 10, phoneNumber: '+19195550199' });
    const fresh = await schedule(number, inSeconds(600));
    expect((await t.graphql(RESCHEDULE, { id: fresh.message.id, sendAt: inSeconds(-600) }, org)).body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect((await t.graphql(CANCEL, { id: fresh.message.id }, other)).body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect((await t.graphql(CANCEL, { id: 'nope' }, org)).body.errors?.[0]?.extensions?.code).toMatch(/NOT_FOUND|BAD_USER_INPUT/);
    expect(sentTo(number)).toEqual([]);
  });

  it('cancel racing the send: each reply is either sent or canceled, never both', async () => {
    const numbers = await Promise.all(Array.from({ length: 12 }, () => contact()));
    const scheduled = await Promise.all(numbers.map((number) => schedule(number, inSeconds(600))));
    const before = await credits();
    // All due now, and canceled at the same moment.
    await Promise.all(scheduled.map((s) => t.graphql(RESCHEDULE, { id: s.message.id, sendAt: new Date().toISOString() }, org)));
    const cancels = await Promise.all(scheduled.map((s) => t.graphql(CANCEL, { id: s.message.id }, org)));
    await until(async () => {
      const states = await Promise.all(scheduled.map((s) => message(s.message.id)));
      return states.every((m) => m.status === 'CANCELED' || m.providerMessageId !== null);
    }, 15_000, 'every reply sent or canceled');
    let sentCount = 0;
    for (const [i, s] of scheduled.entries()) {
      const final = await message(s.message.id);
      const canceled = cancels[i]!.body.data?.cancelScheduledReply?.status === 'CANCELED';
      expect(final.status === 'CANCELED').toBe(canceled);
      expect(sentTo(numbers[i]!)).toHaveLength(canceled ? 0 : 1);
      if (!canceled) sentCount += 1;
      else expect(cancels[i]!.body.errors).toBeUndefined();
      if (!canceled && cancels[i]!.body.errors) expect(cancels[i]!.body.errors![0]!.extensions).toMatchObject({ errorCode: 'NOT_SCHEDULED' });
    }
    expect(await credits()).toBe(before - sentCount);
  });
});

describe('several instances', () => {
  it('two instances with their own runners send each due reply exactly once', async () => {
    // On PostgreSQL the second instance has its own connections; on PGlite (one process only) it shares the store.
    const second: Database = postgresUrl
      ? await createDatabase({ kind: 'postgres', url: (t.database as Database & { url?: string }).url!, poolSize: 5 })
      : t.database;
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...fake.env(), PUBLIC_BASE_URL: PUBLIC, JOB_POLL_MS: '20', JOB_CONCURRENCY: '7' });
    const other: Deps = assembleDeps(config, second, pino({ level: 'silent' }));
    try {
      const numbers = await Promise.all(Array.from({ length: 40 }, () => contact()));
      const ids: string[] = [];
      for (const number of numbers) {
        const outcome = await scheduleReply(t.deps, org.organizationId, { phoneNumber: number, message: `Twice? ${number}` }, new Date(Date.now() + 3_000));
        if (!outcome.ok) throw outcome.error;
        ids.push(outcome.message.id);
      }
      other.jobs.start();
      await until(() => numbers.every((number) => sentTo(number).length > 0), 20_000, 'all sent');
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const number of numbers) expect(sentTo(number)).toHaveLength(1);
      // Both instances took part.
      expect(t.deps.jobs.ran + other.jobs.ran).toBeGreaterThanOrEqual(40);
      expect(other.jobs.ran).toBeGreaterThan(0);
      expect(t.deps.jobs.ran).toBeGreaterThan(0);
      const rows = await t.db.select().from(messages).where(and(eq(messages.organizationId, org.organizationId), sql`${messages.body} like 'Twice?%'`));
      expect(rows).toHaveLength(40);
      expect(rows.every((row) => row.creditsCharged === 1 && row.providerMessageId !== null)).toBe(true);
    } finally {
      await closeDeps(other, { database: Boolean(postgresUrl) });
    }
  }, 60_000);
});
