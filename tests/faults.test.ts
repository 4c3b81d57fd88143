import { and, count, eq } from 'drizzle-orm';
import pino from 'pino';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { messages, messageStatusEvents, organizations } from '../src/db/tables.js';
import { assembleDeps, closeDeps, type Deps } from '../src/deps.js';
import { requestLogMixin } from '../src/http/request-id.js';
import { revokeApiToken } from '../src/services/api-tokens.js';
import { receiveInbound } from '../src/services/inbound.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { createContact } from '../src/services/contacts.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { startPrivatePostgres, type PrivatePostgres } from './helpers/private-postgres.js';
import { connectWs, inboundForm, postTwilio, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL, until } from './helpers/realtime.js';

// Faults: the database going away under load and coming back (a private PostgreSQL cluster stopped and
// started under two running gateway instances), and the SMS provider timing out or failing mid-send.

const NUMBER = '+19195550100';
const INBOX = `{ conversations(first: 20) { edges { node { phoneNumber contact { firstName } lastMessage { body } messages(first: 5) { edges { node { body } } } } } } }`;

type Instance = { url: string; app: App; deps: Deps; database: Database };

async function instance(url: string): Promise<Instance> {
  const database = await createDatabase({ kind: 'postgres', url, poolSize: 4 });
  await database.migrate();
  const config = loadConfig({
    NODE_ENV: 'production',
    LOG_LEVEL: 'silent',
    TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
    PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
    RATE_LIMIT_PER_MINUTE: '0',
  });
  const deps = assembleDeps(config, database, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent', mixin: requestLogMixin }));
  const app = buildApp(deps);
  return { url: await app.start(0, '127.0.0.1'), app, deps, database };
}

async function closeInstance(i: Instance) {
  await i.app.stop(1_000);
  await i.deps.textability.close();
  await i.deps.sms.close();
  await i.deps.events.close().catch(() => {});
  await i.database.close().catch(() => {});
}

const gql = async (url: string, org: TestOrg, query: string) => {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
};

describe('the database goes away mid-request and comes back', () => {
  let cluster: PrivatePostgres;
  let a: Instance;
  let b: Instance;
  let org: TestOrg;

  beforeAll(async () => {
    cluster = await startPrivatePostgres();
    a = await instance(cluster.url);
    b = await instance(cluster.url);
    org = await createOrganization(a.deps.db, { name: 'Resilient', credits: 10 });
    await addPhoneNumber(a.deps.db, org.organizationId, { phoneNumber: NUMBER, isDefault: true });
    for (let i = 0; i < 10; i += 1) await createContact(a.deps.db, org.organizationId, { phoneNumber: `+1212555${1000 + i}`, firstName: `C${i}`, isTextable: true });
    for (let i = 0; i < 10; i += 1) expect((await postTwilio(a.url, '/webhooks/twilio/messages', inboundForm(NUMBER, `+1212555${1000 + i}`, `hello ${i}`))).status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    for (const i of [a, b]) if (i) await closeInstance(i);
    await cluster?.destroy();
  });

  it('answers 503 (never 500, never a dropped connection) while it is away, reports it on /health, and recovers', async () => {
    expect((await fetch(`${a.url}/health`)).status).toBe(200);
    const cached = await gql(a.url, org, INBOX);
    expect(cached.body.data.conversations.edges).toHaveLength(10);

    // A burst of every kind of request, with the database stopped in the middle of it.
    const pending: Array<Promise<{ kind: string; status: number }>> = [];
    const retries: Array<Record<string, string | string[]>> = [];
    const fire = (i: number) => {
      const kind = ['graphql', 'rest', 'webhook', 'health'][i % 4]!;
      const call = async () => {
        if (kind === 'graphql') return (await gql(a.url, org, INBOX)).status;
        if (kind === 'rest') return (await fetch(`${a.url}/api/conversations`, { headers: { authorization: `Bearer ${org.apiToken}` } })).status;
        if (kind === 'health') return (await fetch(`${a.url}/health`)).status;
        const form = inboundForm(NUMBER, '+12125551000', `burst ${i}`);
        const { status } = await postTwilio(a.url, '/webhooks/twilio/messages', form);
        if (status !== 200) retries.push(form);
        return status;
      };
      pending.push(call().then((status) => ({ kind, status })));
    };
    for (let i = 0; i < 40; i += 1) fire(i);
    const stopping = cluster.stop('fast');
    for (let i = 40; i < 80; i += 1) {
      fire(i);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await stopping;
    const outcomes = await Promise.all(pending);
    expect(outcomes.filter((o) => o.status !== 200 && o.status !== 503)).toEqual([]);

    // While it is away: clear 503s with codes and Retry-After, and the process serves on.
    const asked = performance.now();
    const down = await gql(a.url, org, INBOX);
    expect(performance.now() - asked).toBeLessThan(2_000); // prompt, not after a long reconnect backoff
    expect(down.status).toBe(503);
    expect(down.body.errors[0]).toMatchObject({ message: expect.stringMatching(/database is unavailable/), extensions: { code: 'SERVICE_UNAVAILABLE' } });
    expect(down.headers.get('retry-after')).toBe('5');
    expect(JSON.stringify(down.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|postgres/i);
    const rest = await fetch(`${a.url}/api/conversations`, { headers: { authorization: `Bearer ${org.apiToken}` } });
    expect(rest.status).toBe(503);
    expect(await rest.json()).toMatchObject({ success: false, code: 'SERVICE_UNAVAILABLE' });
    const health = await fetch(`${a.url}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'unavailable' });
    const webhook = inboundForm(NUMBER, '+12125551001', 'sent while the database was away');
    expect((await postTwilio(a.url, '/webhooks/twilio/messages', webhook)).status).toBe(503); // Twilio retries 5xx
    retries.push(webhook);

    // A subscriber on the other instance, connected before the database returns.
    await cluster.start();
    await until(async () => (await fetch(`${a.url}/health`)).status === 200, 20_000, 'health to recover on a');
    await until(async () => (await fetch(`${b.url}/health`)).status === 200, 20_000, 'health to recover on b');
    expect((await gql(a.url, org, INBOX)).status).toBe(200);
    expect((await fetch(`${a.url}/api/conversations`, { headers: { authorization: `Bearer ${org.apiToken}` } })).status).toBe(200);

    // Twilio's retries of what was refused: each stored once, never twice.
    // Like Twilio, retry a 5xx: right after the restart a pooled connection may still be a dead one.
    const deliver = async (form: Record<string, string>) => {
      let status = 0;
      for (let attempt = 0; attempt < 5 && status !== 200; attempt += 1) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 250));
        status = (await postTwilio(a.url, '/webhooks/twilio/messages', form)).status;
        expect([200, 503]).toContain(status);
      }
      return status;
    };
    for (const form of retries) expect(await deliver(form as Record<string, string>)).toBe(200);
    for (const form of retries) expect((await postTwilio(a.url, '/webhooks/twilio/messages', form)).status).toBe(200);
    for (const form of retries) {
      const [row] = await a.deps.db.select({ n: count() }).from(messages).where(eq(messages.providerMessageId, form.MessageSid as string));
      expect(row!.n).toBe(1);
    }

    // Cross-instance events and token revocations (LISTEN on a reconnected connection) flow again.
    const ws = connectWs(b.url, org);
    try {
      const sub = subscribeWs(ws, `subscription { messageReceived { body } }`);
      await until(() => b.deps.events.subscriberCount('messageReceived', org.organizationId) > 0, 5_000, 'the subscription on b');
      await until(
        async () => {
          await postTwilio(a.url, '/webhooks/twilio/messages', inboundForm(NUMBER, '+12125551002', 'after recovery'));
          return sub.data.length > 0;
        },
        15_000,
        'an event from a to reach b',
      );
      expect(sub.data[0]).toMatchObject({ messageReceived: { body: 'after recovery' } });
    } finally {
      await ws.client.dispose();
    }
    expect((await gql(b.url, org, '{ organization { name } }')).status).toBe(200); // b caches the token
    await revokeApiToken(a.deps.db, org.apiToken);
    await until(async () => (await gql(b.url, org, '{ organization { name } }')).status === 401, 3_000, 'b to refuse the revoked token');
  }, 90_000);
});

describe('the SMS provider times out or fails during a send', () => {
  let fake: FakeTwilio;
  let t: TestApp;
  let org: TestOrg;
  const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on Error { code message } ... on ProviderError { providerErrorCode } ... on SendReplyPayload { providerMessageId } } }`;
  const sends = () => fake.requests.filter((r) => r.path.endsWith('/Messages.json')).length;
  const balance = async () => (await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId)))[0]!.credits;

  beforeAll(async () => {
    fake = await startFakeTwilio();
    t = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: 'https://gateway.example.test', SMS_PROVIDER_TIMEOUT_MS: '300' });
    org = await t.createOrg('Sender', { credits: 20, phoneNumber: NUMBER });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  it('a timeout keeps the reply queued and charged (in doubt), tells the caller, and a retry with the key sends nothing more', async () => {
    const contact = await t.createContact(org, { phoneNumber: '+14155550111', isTextable: true });
    fake.delaySends(1_200);
    const before = await balance();
    const input = { phoneNumber: contact.phoneNumber, message: 'are you there?', idempotencyKey: 'timeout-1' };
    const first = await t.graphql(SEND, { input }, org);
    expect(first.body.data.sendReply).toMatchObject({ __typename: 'SendInDoubtError', code: 'SEND_IN_DOUBT' });
    expect(await balance()).toBe(before - 1);
    const [row] = await t.db.select().from(messages).where(and(eq(messages.organizationId, org.organizationId), eq(messages.idempotencyKey, 'timeout-1')));
    expect(row).toMatchObject({ status: 'queued', creditsCharged: 1 });
    expect(row!.inDoubtAt).not.toBeNull();

    await until(() => fake.sent.length === 1, 5_000, 'the slow send to land at the provider');
    const again = await t.graphql(SEND, { input }, org);
    expect(again.body.data.sendReply).toMatchObject({ __typename: 'SendInDoubtError', code: 'SEND_IN_DOUBT' });
    const rest = await fetch(`${t.url}/api/conversations/${encodeURIComponent(contact.phoneNumber)}/reply`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'idempotency-key': 'timeout-1' },
      body: JSON.stringify({ message: 'are you there?' }),
    });
    expect(rest.status).toBe(504);
    expect(await rest.json()).toMatchObject({ success: false, code: 'SEND_IN_DOUBT', messageLog: { id: row!.id, status: 'queued' } });
    fake.delaySends(0);
    expect(sends()).toBe(1);
    expect(await balance()).toBe(before - 1);
  });

  it('a provider 5xx that lasts past the retries refunds and marks the message failed; the REST caller gets 502', async () => {
    const contact = await t.createContact(org, { phoneNumber: '+14155550112', isTextable: true });
    const before = await balance();
    const sent = sends();
    // Retried within SMS_PROVIDER_TIMEOUT_MS (300 ms here): more 500s than it can outlast.
    for (let i = 0; i < 50; i += 1) fake.failNextSend({ code: 20500, status: 500 });
    const res = await fetch(`${t.url}/api/conversations/${encodeURIComponent(contact.phoneNumber)}/reply`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'idempotency-key': 'five-hundred' },
      body: JSON.stringify({ message: 'hello' }),
    });
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ success: false, code: 'PROVIDER_ERROR' });
    expect(await balance()).toBe(before);
    expect(sends()).toBeGreaterThan(sent + 1);
    expect(fake.sent.filter((m) => m.to === contact.phoneNumber)).toHaveLength(0);
    const [row] = await t.db.select().from(messages).where(and(eq(messages.organizationId, org.organizationId), eq(messages.idempotencyKey, 'five-hundred')));
    expect(row).toMatchObject({ status: 'failed', errorCode: 20500, creditsCharged: 0 });
  });
});

describe('closing an instance whose database stops answering', () => {
  it('goes on once its grace is over, says which part held it, and closes the database under it', async () => {
    const cluster = await startPrivatePostgres();
    const holder = postgres(cluster.url, { max: 2, onnotice: () => {} });
    try {
      const database = await createDatabase({ kind: 'postgres', url: cluster.url, poolSize: 2 });
      await database.migrate();
      const config = loadConfig({ NODE_ENV: 'production', TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
      const warnings: string[] = [];
      const deps = assembleDeps(config, database, pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) }));
      const org = await createOrganization(deps.db, { name: 'Stuck' });
      await addPhoneNumber(deps.db, org.organizationId, { phoneNumber: NUMBER, isDefault: true });

      // Another session holds the messages table: the inbound batch write waits as on a database that no
      // longer answers, and the instance is closed meanwhile.
      const lock = await holder.reserve();
      await lock.unsafe('begin');
      await lock.unsafe('lock table messages in access exclusive mode');
      const write = receiveInbound(deps, { to: NUMBER, from: '+12125550999', body: 'held', provider: 'twilio', providerMessageId: 'SMheld0000000000000000000000000001' }).then(
        (outcome) => outcome.outcome,
        (error: Error & { code?: string }) => error.code ?? error.message,
      );
      await until(
        async () => (await holder`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock'`)[0]!.n > 0,
        10_000,
        'the batch write to wait on the lock',
      );
      await closeDeps(deps, { graceMs: 500 });
      const held = warnings.map((line) => JSON.parse(line) as { msg: string; step?: string }).filter((entry) => entry.msg === 'still closing; going on without it');
      expect(held.map((entry) => entry.step)).toContain('state');
      // Its connection ended with the database's close: the webhook would have answered an error (Twilio retries).
      expect(await write).not.toBe('stored');
      await lock.unsafe('rollback');
      lock.release();
    } finally {
      await holder.end();
      await cluster.destroy();
    }
  }, 60_000);
});
