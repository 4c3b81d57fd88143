import { count, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages, organizations } from '../src/db/tables.js';
import { createContact } from '../src/services/contacts.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import type { TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { Collector, connectWs, inboundForm, postTwilio, subscribeWs, until, type Form } from './helpers/realtime.js';
import { createServerStore, freePort, startServerProcess, type ServerStore } from './helpers/server-process.js';

// The real server process under signals: SIGKILL in the middle of a burst of inbound webhooks loses
// nothing that was acknowledged and stores every retry once; SIGTERM under load lets every in-flight
// request finish and closes WebSockets with 1001. Runs on PostgreSQL or on an embedded PGlite directory.

const NUMBER = '+19195550100';
const PUBLIC = 'https://gateway.example.test';

async function seed(store: ServerStore, contacts: string[] = []): Promise<TestOrg> {
  const database = await store.open();
  try {
    await database.migrate();
    const org = await createOrganization(database.db, { name: 'Signals', credits: 1_000 });
    await addPhoneNumber(database.db, org.organizationId, { phoneNumber: NUMBER, isDefault: true });
    for (const phoneNumber of contacts) await createContact(database.db, org.organizationId, { phoneNumber, isTextable: true });
    return org;
  } finally {
    await database.close();
  }
}

describe('SIGKILL during a burst of inbound webhooks', () => {
  let store: ServerStore;
  beforeAll(async () => {
    store = await createServerStore();
  });
  afterAll(() => store?.destroy());

  it('every webhook answered 200 is stored; the rest, retried, are stored once', async () => {
    const org = await seed(store);
    const env = { ...store.env, TWILIO_AUTH_TOKEN: 'kill-test-token', PUBLIC_BASE_URL: PUBLIC, RATE_LIMIT_PER_MINUTE: '0' };
    const port = await freePort();
    const server = await startServerProcess(env, port);
    const forms: Form[] = Array.from({ length: 150 }, (_, i) => inboundForm(NUMBER, `+1212555${String(1000 + (i % 40))}`, `burst message ${i}`));
    const acknowledged = new Set<string>();
    const post = (form: Form) => postTwilio(server.url, '/webhooks/twilio/messages', form, { authToken: 'kill-test-token', publicBaseUrl: PUBLIC });

    // 16 at a time, as Twilio's concurrent deliveries would; the process is killed once 40 are in.
    let next = 0;
    const killed = new Promise<void>((resolve) => {
      const worker = async () => {
        while (next < forms.length) {
          const form = forms[next++]!;
          try {
            const res = await post(form);
            if (res.status === 200) acknowledged.add(form.MessageSid as string);
          } catch {
            // connection reset by the kill: not acknowledged, Twilio retries
          }
          if (acknowledged.size >= 40 && !server.child.killed) {
            server.child.kill('SIGKILL');
            resolve();
          }
        }
      };
      void Promise.all(Array.from({ length: 16 }, worker)).then(() => resolve());
    });
    await killed;
    expect((await server.exited).signal).toBe('SIGKILL');
    expect(acknowledged.size).toBeGreaterThanOrEqual(40);
    expect(acknowledged.size).toBeLessThan(forms.length);

    // Restarted on the same store, Twilio retries whatever was not acknowledged (and, for good measure,
    // re-delivers some that were, as it does when a 200 is lost on the way).
    const restarted = await startServerProcess(env, port);
    try {
      const retried = forms.filter((form) => !acknowledged.has(form.MessageSid as string) || Number((form.Body as string).split(' ')[2]) % 7 === 0);
      for (let i = 0; i < retried.length; i += 16) {
        const answers = await Promise.all(retried.slice(i, i + 16).map(post));
        expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      }
    } finally {
      restarted.child.kill('SIGTERM');
      await restarted.exited;
    }

    const database = await store.open();
    try {
      const sids = forms.map((form) => form.MessageSid as string);
      const rows = await database.db
        .select({ sid: messages.providerMessageId, n: count() })
        .from(messages)
        .where(inArray(messages.providerMessageId, sids))
        .groupBy(messages.providerMessageId);
      const stored = new Map(rows.map((row) => [row.sid, row.n]));
      expect([...acknowledged].filter((sid) => !stored.has(sid))).toEqual([]); // nothing acknowledged was lost
      expect(rows.filter((row) => row.n !== 1)).toEqual([]); // nothing stored twice
      expect(stored.size).toBe(forms.length);
      const [all] = await database.db.select({ n: count() }).from(messages).where(eq(messages.organizationId, org.organizationId));
      expect(all!.n).toBe(forms.length);
    } finally {
      await database.close();
    }
  }, 120_000);
});

describe('SIGTERM under load', () => {
  let store: ServerStore;
  let fake: FakeTwilio;
  beforeAll(async () => {
    store = await createServerStore();
    fake = await startFakeTwilio();
  });
  afterAll(async () => {
    await fake?.close();
    await store?.destroy();
  });

  it('finishes every in-flight request, closes WebSockets with 1001, and exits 0', async () => {
    const recipients = Array.from({ length: 12 }, (_, i) => `+1415555${String(2000 + i)}`);
    const org = await seed(store, recipients);
    fake.delaySends(700); // every send is still at the provider when the signal arrives
    const server = await startServerProcess({ ...store.env, ...fake.env(), PUBLIC_BASE_URL: PUBLIC, RATE_LIMIT_PER_MINUTE: '0' });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}` };
    const inbound = (body: string) =>
      postTwilio(server.url, '/webhooks/twilio/messages', inboundForm(NUMBER, '+12125559000', body), { authToken: fake.env().TWILIO_AUTH_TOKEN, publicBaseUrl: PUBLIC });

    // Subscribers of every kind: conversationUpdated, messageReceived sharing one execution, and one resumed
    // with after: (it reads on its own) from the cursor of a message stored before.
    const INBOUND = 'subscription($after: String) { messageReceived(after: $after) { cursor body } }';
    const first = connectWs(server.url, org);
    const before = subscribeWs(first, INBOUND);
    await until(() => first.messages.includes('connection_ack'), 10_000, 'the first socket');
    expect((await inbound('before the signal')).status).toBe(200);
    const cursor = (await before.waitFor(1, 15_000))[0].messageReceived.cursor as string;
    const sockets = [first, ...Array.from({ length: 5 }, () => connectWs(server.url, org))];
    const subscriptions: Collector[] = [
      before,
      ...sockets.slice(1, 3).map((socket) => subscribeWs(socket, 'subscription { conversationUpdated { phoneNumber } }')),
      ...sockets.slice(3, 5).map((socket) => subscribeWs(socket, INBOUND)),
      subscribeWs(sockets[5]!, INBOUND, { after: cursor }),
    ];
    await until(() => sockets.every((socket) => socket.messages.includes('connection_ack')), 10_000, 'every socket');
    await new Promise((resolve) => setTimeout(resolve, 300)); // subscribed

    const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on SendReplyPayload { creditsCharged message { body } } ... on Error { code } } }`;
    const sends = recipients.map((phoneNumber, i) =>
      fetch(`${server.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: SEND, variables: { input: { phoneNumber, message: `in flight ${i}` } } }) }).then(
        async (res) => ({ status: res.status, body: (await res.json()) as any }),
      ),
    );
    // Every send is mid-request: its credits reserved, its message stored as queued, the provider holding it.
    await until(() => fake.requests.filter((r) => r.path.endsWith('/Messages.json')).length === recipients.length, 20_000, 'all sends at the provider');
    // Inbound webhooks on their way too: each one the server answers 200 must be stored (Twilio retries the rest).
    const webhooks = Array.from({ length: 12 }, (_, i) =>
      inbound(`in flight inbound ${i}`).then(
        (answer) => ({ body: `in flight inbound ${i}`, status: answer.status, error: null as string | null }),
        (error: Error & { cause?: { code?: string } }) => ({ body: `in flight inbound ${i}`, status: 0, error: error.cause?.code ?? error.message }),
      ),
    );
    // Reads started as the signal arrives: those the server accepted must complete in full; a connection
    // still in the listen backlog may be refused (it never started), but no response may be cut short.
    const reads = Array.from({ length: 12 }, () =>
      fetch(`${server.url}/api/conversations`, { headers }).then(
        async (res) => ({ status: res.status, body: (await res.json()) as any }),
        (error: Error & { cause?: { code?: string } }) => ({ status: 0, body: null, error: error.cause?.code ?? error.message }),
      ),
    );
    server.child.kill('SIGTERM');

    const sent = await Promise.all(sends);
    for (const [i, answer] of sent.entries()) {
      expect(answer.status).toBe(200);
      expect(answer.body.data.sendReply).toEqual({ __typename: 'SendReplyPayload', creditsCharged: 1, message: { body: `in flight ${i}` } });
    }
    for (const answer of await Promise.all(reads)) {
      if (answer.status === 0) expect((answer as { error?: string }).error).toMatch(/ECONNREFUSED|ECONNRESET/);
      else {
        expect(answer.status).toBe(200);
        expect(answer.body).toHaveLength(recipients.length + 1); // and the inbound one
      }
    }
    const hooks = await Promise.all(webhooks);
    for (const hook of hooks) if (hook.status === 0) expect(hook.error).toMatch(/ECONNREFUSED|ECONNRESET/);
    const accepted = hooks.filter((hook) => hook.status !== 0);
    expect(accepted.map((hook) => hook.status)).toEqual(accepted.map(() => 200));
    const exit = await server.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    for (const socket of sockets) expect(socket.closes.map((close) => close.code)).toEqual([1001]);
    for (const subscription of subscriptions) expect(subscription.errors.length + (subscription.completed ? 1 : 0)).toBeGreaterThan(0);
    expect(fake.sent).toHaveLength(recipients.length);

    const database = await store.open();
    try {
      const [row] = await database.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId));
      expect(row!.credits).toBe(1_000 - recipients.length);
      const stored = await database.db.select().from(messages).where(eq(messages.organizationId, org.organizationId));
      const sent = stored.filter((m) => m.direction === 'outgoing');
      expect(sent).toHaveLength(recipients.length);
      expect(sent.every((m) => m.providerMessageId !== null)).toBe(true);
      // Every inbound webhook answered 200 stored once, beside the one from before the signal.
      const received = stored.filter((m) => m.direction === 'incoming').map((m) => m.body);
      expect(received.filter((body) => received.indexOf(body) !== received.lastIndexOf(body))).toEqual([]);
      for (const hook of accepted) expect(received).toContain(hook.body);
      expect(received).toContain('before the signal');
    } finally {
      await database.close();
    }
  }, 120_000);
});
