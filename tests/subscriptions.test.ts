import pino from 'pino';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { createDatabase } from '../src/db/client.js';
import { assembleDeps } from '../src/deps.js';
import { issueApiToken, revokeApiToken } from '../src/services/api-tokens.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { postgresUrl } from './helpers/database.js';
import {
  connectWs,
  nextSid,
  postInbound,
  postTwilio,
  subscribeSse,
  subscribeWs,
  TEST_AUTH_TOKEN,
  TEST_PUBLIC_BASE_URL,
  until,
  type WsConnection,
} from './helpers/realtime.js';

// Subscriptions over real transports: the graphql-ws client on a real WebSocket, and SSE over fetch.
// Messages come in through the signed Twilio webhook, as in production.

let t: TestApp;
let acme: TestOrg;
let other: TestOrg;
const ACME_NUMBER = '+19195550100';
const OTHER_NUMBER = '+19195550500';
const connections: WsConnection[] = [];

beforeAll(async () => {
  t = await createTestApp({ TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
  acme = await t.createOrg('Acme', { phoneNumber: ACME_NUMBER });
  other = await t.createOrg('Other', { phoneNumber: OTHER_NUMBER });
}, 60_000);
afterAll(async () => {
  await Promise.all(connections.map((c) => c.client.dispose()));
  await t?.close();
});

function ws(params: TestOrg | Record<string, unknown>, url = t.url) {
  const connection = connectWs(url, params);
  connections.push(connection);
  return connection;
}

const MESSAGE_RECEIVED = `subscription ($phone: String, $after: String) {
  messageReceived(phoneNumber: $phone, after: $after) {
    id uuid body direction cursor sentiment category createdAt
    conversation { phoneNumber unreadCount contact { isOptedIn } }
  }
}`;

async function inbound(from: string, body: string, to = ACME_NUMBER) {
  const res = await postInbound(t.url, to, from, body);
  expect(res.status).toBe(200);
}

type Topic = 'messageReceived' | 'conversationUpdated' | 'messageStatusChanged';

/**
 * Subscribes over graphql-ws and waits until the server holds the live subscription (its listener count
 * on the topic grew), so events published next are certainly for it.
 */
async function live(connection: WsConnection, topic: Topic, org: TestOrg, query: string, variables: Record<string, unknown> = {}, deps = t.deps) {
  const before = deps.events.subscriberCount(topic, org.organizationId);
  const sub = subscribeWs(connection, query, variables);
  await until(() => sub.errors.length > 0 || deps.events.subscriberCount(topic, org.organizationId) > before, 10_000, `${topic} subscriber`);
  return sub;
}

/** Unsubscribes and waits until the server let go of the subscription, so counts stay exact for the next test. */
async function end(sub: { unsubscribe(): void }, topic: Topic, org: TestOrg) {
  const before = t.deps.events.subscriberCount(topic, org.organizationId);
  sub.unsubscribe();
  await until(() => t.deps.events.subscriberCount(topic, org.organizationId) < before, 5_000, `${topic} unsubscribed`);
}

describe('graphql-ws', () => {
  it('delivers inbound messages live, with current nested data', async () => {
    const connection = ws(acme);
    const sub = await live(connection, 'messageReceived', acme, MESSAGE_RECEIVED);
    await inbound('+12125550003', 'Is the store open today?');
    // Nested data is read at delivery: wait for the first event before the STOP changes it.
    const [first] = await sub.waitFor(1);
    await inbound('+12125550003', 'STOP');
    const [, second] = await sub.waitFor(2);
    expect(first.messageReceived).toMatchObject({
      body: 'Is the store open today?',
      direction: 'INCOMING',
      category: 'question',
      conversation: { phoneNumber: '+12125550003', unreadCount: 1, contact: { isOptedIn: true } },
    });
    // Loaded when delivered, not from an earlier event's cache: the contact has opted out since.
    expect(second.messageReceived).toMatchObject({ body: 'STOP', conversation: { unreadCount: 2, contact: { isOptedIn: false } } });
    await end(sub, 'messageReceived', acme);
    expect(t.deps.events.subscriberCount('messageReceived', acme.organizationId)).toBe(0);
  });

  it('delivers conversation changes: new messages and read/star mutations', async () => {
    const sub = await live(ws(acme), 'conversationUpdated', acme, `subscription { conversationUpdated { phoneNumber unreadCount isStarred lastMessage { body } } }`);
    await inbound('+13035550009', 'hello');
    const [first] = await sub.waitFor(1);
    expect(first.conversationUpdated).toMatchObject({ phoneNumber: '+13035550009', unreadCount: 1, lastMessage: { body: 'hello' } });
    await t.graphql(`mutation { markConversationRead(phoneNumber: "+13035550009") { unreadCount } }`, {}, acme);
    await t.graphql(`mutation { setConversationStarred(phoneNumber: "+13035550009", starred: true) { isStarred } }`, {}, acme);
    const [, read, starred] = await sub.waitFor(3);
    expect(read.conversationUpdated).toMatchObject({ unreadCount: 0 });
    expect(starred.conversationUpdated).toMatchObject({ isStarred: true });
    await end(sub, 'conversationUpdated', acme);
  });

  it('delivers delivery status changes, optionally for one conversation', async () => {
    const connection = ws(acme);
    const all = await live(connection, 'messageStatusChanged', acme, `subscription { messageStatusChanged { uuid status errorCode conversation { phoneNumber } } }`);
    const one = await live(connection, 'messageStatusChanged', acme, `subscription { messageStatusChanged(phoneNumber: "(919) 555-0002") { uuid status } }`);
    const send = async (phoneNumber: string) => {
      const sid = nextSid();
      const stored = await t.addMessage(acme, { phoneNumber, direction: 'outgoing', body: 'On our way', status: 'queued', provider: 'twilio', providerMessageId: sid });
      return { sid, id: stored!.message.id };
    };
    const a = await send('+14155550004');
    const b = await send('+19195550002');
    const callback = (sid: string, status: string, extra: Record<string, string> = {}) =>
      postTwilio(t.url, '/webhooks/twilio/status', { MessageSid: sid, MessageStatus: status, ...extra });
    await callback(a.sid, 'delivered');
    await callback(b.sid, 'failed', { ErrorCode: '30006' });
    await callback(a.sid, 'sent'); // late and ignored: no event
    const events = await all.waitFor(2);
    expect(events.map((e) => e.messageStatusChanged)).toEqual([
      { uuid: a.id, status: 'DELIVERED', errorCode: null, conversation: { phoneNumber: '+14155550004' } },
      { uuid: b.id, status: 'FAILED', errorCode: 30006, conversation: { phoneNumber: '+19195550002' } },
    ]);
    expect((await one.waitFor(1))[0].messageStatusChanged).toEqual({ uuid: b.id, status: 'FAILED' });
    // A later event proves the ignored one was never sent.
    const c = await send('+19195550002');
    await callback(c.sid, 'sent');
    await one.waitFor(2);
    expect(one.data.map((e) => e.messageStatusChanged.uuid)).toEqual([b.id, c.id]);
    await all.waitFor(3);
    expect(all.data.map((e) => e.messageStatusChanged.uuid)).toEqual([a.id, b.id, c.id]);
    await end(all, 'messageStatusChanged', acme);
    await end(one, 'messageStatusChanged', acme);
  });

  it('narrows messageReceived to one conversation, even one that does not exist yet', async () => {
    const sub = await live(ws(acme), 'messageReceived', acme, MESSAGE_RECEIVED, { phone: '212-555-0004' });
    await inbound('+13035550009', 'not this one');
    await inbound('+12125550004', 'this one');
    await inbound('+13035550009', 'not this one either');
    await inbound('+12125550004', 'and this one');
    const received = await sub.waitFor(2);
    expect(received.map((r) => r.messageReceived.body)).toEqual(['this one', 'and this one']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(sub.data).toHaveLength(2);
    await end(sub, 'messageReceived', acme);
  });

  it('never delivers another organization’s events', async () => {
    const acmeSub = await live(ws(acme), 'messageReceived', acme, MESSAGE_RECEIVED);
    const otherMessages = await live(ws(other), 'messageReceived', other, MESSAGE_RECEIVED);
    const otherConversations = await live(ws(other), 'conversationUpdated', other, `subscription { conversationUpdated { phoneNumber lastMessage { body } } }`);
    await inbound('+19195551234', 'for acme only', ACME_NUMBER);
    await acmeSub.waitFor(1);
    await inbound('+19195551234', 'for other', OTHER_NUMBER);
    // Other's first (and only) events are its own message, though acme's was published before it.
    expect((await otherMessages.waitFor(1))[0].messageReceived.body).toBe('for other');
    expect((await otherConversations.waitFor(1))[0].conversationUpdated.lastMessage.body).toBe('for other');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(otherMessages.data).toHaveLength(1);
    expect(otherConversations.data).toHaveLength(1);
    expect(acmeSub.data.map((r) => r.messageReceived.body)).toEqual(['for acme only']);
  });

  it('closes with 4401 for a bad token and 4403 for a foreign organization, before any data', async () => {
    const cases = [
      { params: { authorization: 'Bearer cgw_nope', organizationId: acme.organizationId }, code: 4401 },
      { params: { organizationId: acme.organizationId }, code: 4401 },
      { params: {}, code: 4401 },
      { params: { authorization: `Bearer ${acme.apiToken}`, organizationId: other.organizationId }, code: 4403 },
    ];
    for (const c of cases) {
      const connection = ws(c.params);
      const sub = subscribeWs(connection, MESSAGE_RECEIVED);
      await until(() => connection.closes.length > 0, 5_000, 'socket close');
      expect(connection.closes[0]!.code, JSON.stringify(c.params)).toBe(c.code);
      expect(connection.messages).toEqual([]); // no connection_ack, no next
      expect(sub.data).toEqual([]);
    }
  });

  it('refuses a malformed or foreign cursor with BAD_USER_INPUT', async () => {
    await inbound('+12125550003', 'cursor source');
    const res = await t.graphql(`{ conversation(phoneNumber: "+12125550003") { messages(first: 1) { edges { cursor } } } }`, {}, acme);
    const acmeCursor = res.body.data.conversation.messages.edges[0].cursor;
    await inbound('+12125550003', 'other cursor source', OTHER_NUMBER);
    const otherRes = await t.graphql(`{ conversation(phoneNumber: "+12125550003") { messages(first: 1) { edges { cursor } } } }`, {}, other);
    const otherCursor = otherRes.body.data.conversation.messages.edges[0].cursor;

    for (const [after, phone] of [['garbage!', null], [otherCursor, null], [acmeCursor, '+13035550009']] as const) {
      const sub = subscribeWs(ws(acme), MESSAGE_RECEIVED, { after, phone });
      const error = await sub.waitForError();
      expect(error.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_CURSOR' });
    }
    // The same foreign cursor is fine for its own organization.
    const ok = await live(ws(other), 'messageReceived', other, MESSAGE_RECEIVED, { after: otherCursor });
    await inbound('+12125550003', 'after the cursor', OTHER_NUMBER);
    expect((await ok.waitFor(1))[0].messageReceived.body).toBe('after the cursor');
  });
});

describe('SSE', () => {
  it('delivers messageReceived over text/event-stream with the HTTP headers', async () => {
    const sseBefore = t.deps.events.subscriberCount('messageReceived', acme.organizationId);
    const sub = await subscribeSse(t.url, acme, MESSAGE_RECEIVED, { phone: '+14155550004' });
    try {
      expect(sub.status).toBe(200);
      expect(sub.contentType).toMatch(/^text\/event-stream/);
      await until(() => t.deps.events.subscriberCount('messageReceived', acme.organizationId) > sseBefore, 10_000, 'SSE subscriber');
      await inbound('+14155550004', 'over SSE');
      const [first] = await sub.waitFor(1);
      expect(first.messageReceived).toMatchObject({ body: 'over SSE', conversation: { phoneNumber: '+14155550004' } });
    } finally {
      await sub.close();
    }
    // The client going away ends the server-side subscription too.
    await until(() => t.deps.events.subscriberCount('messageReceived', acme.organizationId) === sseBefore, 5_000, 'SSE subscription released');
  });

  it('refuses SSE without credentials', async () => {
    const sub = await subscribeSse(t.url, { apiToken: 'nope', organizationId: acme.organizationId }, MESSAGE_RECEIVED);
    await sub.close();
    expect(sub.status).toBe(401);
  });
});

describe('gap-free resume', () => {
  it('replays after a cursor across a burst of 100 messages, then continues live: no loss, no duplicates', async () => {
    const sender = '+13035550010';
    await inbound(sender, 'before the burst');
    const res = await t.graphql(`{ conversation(phoneNumber: "${sender}") { messages(first: 1) { edges { cursor } } } }`, {}, acme);
    const cursor = res.body.data.conversation.messages.edges[0].cursor;

    // 100 messages from 5 senders, 10 in flight at a time; the subscriber joins in the middle.
    const bodies = Array.from({ length: 100 }, (_, i) => `burst ${i}`);
    const senders = ['+13035550010', '+13035550011', '+13035550012', '+13035550013', '+13035550014'];
    let next = 0;
    const worker = async () => {
      while (next < bodies.length) {
        const i = next++;
        await inbound(senders[i % senders.length]!, bodies[i]!);
      }
    };
    const burst = Promise.all(Array.from({ length: 10 }, worker));
    await until(() => next >= 30, 30_000, 'burst under way');
    const sub = subscribeWs(ws(acme), MESSAGE_RECEIVED, { after: cursor });
    await burst;
    await inbound(sender, 'after the burst');

    const received = (await sub.waitFor(101, 30_000)).map((r) => r.messageReceived);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(sub.data).toHaveLength(101);
    expect(new Set(received.map((m) => m.id)).size).toBe(101);
    expect(received.slice(0, 100).map((m) => m.body).sort()).toEqual([...bodies].sort());
    expect(received[100]!.body).toBe('after the burst');
    // Oldest first: the order of the messages connection, reversed.
    const times = received.map((m) => m.createdAt);
    expect([...times].sort()).toEqual(times);
    // Strictly increasing: inbound messages of an organization commit in time order (what makes resuming safe).
    expect(new Set(times).size).toBe(times.length);
  }, 60_000);

  it('resumes from the last message received after a disconnect, during a burst', async () => {
    const sender = '+13035550020';
    await inbound(sender, 'start');
    const start = (await t.graphql(`{ conversation(phoneNumber: "${sender}") { messages(first: 1) { edges { cursor } } } }`, {}, acme)).body.data
      .conversation.messages.edges[0].cursor;

    const bodies = Array.from({ length: 100 }, (_, i) => `resume ${i}`);
    let next = 0;
    const worker = async () => {
      while (next < bodies.length) {
        const i = next++;
        await inbound(`+1303555${String(30 + (i % 4)).padStart(4, '0')}`, bodies[i]!);
      }
    };
    const first = ws(acme);
    const firstSub = subscribeWs(first, MESSAGE_RECEIVED, { after: start });
    const burst = Promise.all(Array.from({ length: 8 }, worker));
    await firstSub.waitFor(20, 30_000);
    await first.client.dispose(); // the dashboard drops off mid-burst
    const seen = firstSub.data.map((r) => r.messageReceived);
    const resumeFrom = seen.at(-1)!.cursor;

    const second = subscribeWs(ws(acme), MESSAGE_RECEIVED, { after: resumeFrom });
    await burst;
    const rest = 100 - seen.length;
    const resumed = (await second.waitFor(rest, 30_000)).map((r) => r.messageReceived);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(second.data).toHaveLength(rest);
    const all = [...seen, ...resumed];
    expect(new Set(all.map((m) => m.id)).size).toBe(100);
    expect(all.map((m) => m.body).sort()).toEqual([...bodies].sort());
  }, 60_000);
});

describe('reconnecting clients', () => {
  it('resume from the last cursor by themselves when the server goes away and comes back', async () => {
    // A gateway instance that will restart on the same port.
    const first = buildApp(t.deps);
    const url = await first.start(0, '127.0.0.1');
    const port = Number(new URL(url).port);
    const sender = '+13035550040';
    await inbound(sender, 'seen before subscribing');
    const cursor = (await t.graphql(`{ conversation(phoneNumber: "${sender}") { messages(first: 1) { edges { cursor } } } }`, {}, acme)).body.data
      .conversation.messages.edges[0].cursor;

    // The README's pattern: graphql-ws re-sends the same subscribe payload when it reconnects, so
    // keeping the last cursor in its variables makes every retry resume exactly where it stopped.
    const variables: Record<string, unknown> = { phone: sender, after: cursor };
    const retrying = connectWs(url, acme, { retryAttempts: 20, retryWaitMs: 100 });
    connections.push(retrying);
    const before = t.deps.events.subscriberCount('messageReceived', acme.organizationId);
    const sub = subscribeWs(retrying, MESSAGE_RECEIVED, variables, (data: any) => (variables.after = data.messageReceived.cursor));
    await until(() => t.deps.events.subscriberCount('messageReceived', acme.organizationId) > before, 10_000, 'subscriber');
    await inbound(sender, 'one');
    await inbound(sender, 'two');
    await sub.waitFor(2);

    await first.stop(1_000); // clients see 1001 and start retrying
    await until(() => retrying.closes.some((c) => c.code === 1001), 5_000, '1001');
    await inbound(sender, 'three (while down)'); // stored by another instance meanwhile
    await inbound(sender, 'four (while down)');
    const second = buildApp(t.deps);
    await second.start(port, '127.0.0.1');
    try {
      await inbound(sender, 'five (after restart)');
      await sub.waitFor(5, 20_000);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(sub.data.map((r) => r.messageReceived.body)).toEqual(['one', 'two', 'three (while down)', 'four (while down)', 'five (after restart)']);
    } finally {
      await retrying.client.dispose();
      await second.stop(1_000);
    }
  }, 60_000);
});

describe('published after commit only', () => {
  it('never publishes a message whose transaction rolled back', async () => {
    // A real failure inside the inbound transaction, after the message row was written.
    await t.db.execute(sql.raw(`
      create or replace function fail_on_boom() returns trigger language plpgsql as $$
      begin
        if new.body = 'boom' then raise exception 'forced failure after insert'; end if;
        return new;
      end $$`));
    await t.db.execute(sql.raw(`create trigger messages_fail_on_boom after insert on messages for each row execute function fail_on_boom()`));
    try {
      const sub = await live(ws(acme), 'messageReceived', acme, MESSAGE_RECEIVED, { phone: '+19195550003' });
      const conversations = await live(ws(acme), 'conversationUpdated', acme, `subscription { conversationUpdated { phoneNumber lastMessage { body } } }`);
      const failed = await postInbound(t.url, ACME_NUMBER, '+19195550003', 'boom');
      expect(failed.status).toBe(500); // Twilio will retry
      const retriedSid = nextSid();
      expect((await postInbound(t.url, ACME_NUMBER, '+19195550003', 'fine', { MessageSid: retriedSid })).status).toBe(200);
      expect((await sub.waitFor(1))[0].messageReceived.body).toBe('fine');
      expect((await conversations.waitFor(1))[0].conversationUpdated.lastMessage.body).toBe('fine');
      // The duplicate path rolls back as well: a retry of a stored message publishes nothing.
      expect((await postInbound(t.url, ACME_NUMBER, '+19195550003', 'fine', { MessageSid: retriedSid })).status).toBe(200);
      await inbound('+19195550003', 'last');
      await sub.waitFor(2);
      expect(sub.data.map((r) => r.messageReceived.body)).toEqual(['fine', 'last']);
      expect(conversations.data.map((r) => r.conversationUpdated.lastMessage.body)).toEqual(['fine', 'last']);
    } finally {
      await t.db.execute(sql.raw(`drop trigger messages_fail_on_boom on messages`));
      await t.db.execute(sql.raw(`drop function fail_on_boom()`));
    }
  });
});

describe('instances', () => {
  it(
    postgresUrl
      ? 'delivers a message ingested by instance A to a subscriber on instance B (LISTEN/NOTIFY)'
      : 'delivers a message ingested through one server to a subscriber on another server in the process',
    async () => {
      // On PostgreSQL, B is a separate gateway: its own connection pool and event bus on the same database.
      // On PGlite (one process owns the store), B is a second server sharing the in-process bus.
      const database = postgresUrl ? await createDatabase({ kind: 'postgres', url: (t.database as { url?: string }).url!, poolSize: 2 }) : null;
      const depsB = database ? assembleDeps(t.deps.config, database, pino({ level: 'silent' })) : t.deps;
      if (postgresUrl) expect(depsB.events).not.toBe(t.deps.events);
      const appB = buildApp(depsB);
      const urlB = await appB.start(0, '127.0.0.1');
      try {
        const onB = await live(ws(acme, urlB), 'messageReceived', acme, MESSAGE_RECEIVED, {}, depsB);
        const conversationsOnB = await live(ws(acme, urlB), 'conversationUpdated', acme, `subscription { conversationUpdated { phoneNumber unreadCount } }`, {}, depsB);
        const from = '+19195550009';
        await inbound(from, 'ingested by A'); // t.url is instance A
        const [received] = await onB.waitFor(1);
        expect(received.messageReceived).toMatchObject({ body: 'ingested by A', conversation: { phoneNumber: from, unreadCount: 1 } });
        expect((await conversationsOnB.waitFor(1))[0].conversationUpdated).toEqual({ phoneNumber: from, unreadCount: 1 });
        // And back: a read on B reaches A.
        const onA = await live(ws(acme), 'conversationUpdated', acme, `subscription { conversationUpdated { phoneNumber unreadCount } }`);
        const read = await fetch(`${urlB}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': acme.organizationId },
          body: JSON.stringify({ query: `mutation { markConversationRead(phoneNumber: "${from}") { unreadCount } }` }),
        });
        expect(read.status).toBe(200);
        expect((await onA.waitFor(1))[0].conversationUpdated).toEqual({ phoneNumber: from, unreadCount: 0 });
        // B's own subscriber sees the read too. Rows are read when an event is delivered, so waiting here keeps
        // the next message from landing first (B's read of the row may queue behind its pool's other work).
        expect((await conversationsOnB.waitFor(2))[1].conversationUpdated).toEqual({ phoneNumber: from, unreadCount: 0 });
        // Exactly once each way: events from another instance are delivered, never sent on again.
        await inbound(from, 'second from A');
        await onB.waitFor(2);
        await conversationsOnB.waitFor(3);
        await onA.waitFor(2);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(onB.data.map((r) => r.messageReceived.body)).toEqual(['ingested by A', 'second from A']);
        expect(conversationsOnB.data.map((r) => r.conversationUpdated.unreadCount)).toEqual([1, 0, 1]);
        expect(onA.data.map((r) => r.conversationUpdated.unreadCount)).toEqual([0, 1]);
      } finally {
        await appB.stop(1_000);
        if (database) {
          await depsB.events.close();
          await database.close();
        }
      }
    },
    30_000,
  );
});

describe('shared fan-out', () => {
  it('reads and executes each event once for all subscribers of the same operation, and each gets it', async () => {
    const org = await t.createOrg('Crowd', { phoneNumber: '+19195550800' });
    const from = '+12125550808';
    const event = async (body: string, subs: Array<ReturnType<typeof subscribeWs<any>>>) => {
      const stop = t.database.statementLog.record();
      await inbound(from, body, '+19195550800');
      await Promise.all(subs.map((sub) => until(() => sub.data.some((d) => d.messageReceived.body === body), 10_000, body)));
      return stop();
    };
    const first = await live(ws(org), 'messageReceived', org, MESSAGE_RECEIVED);
    await event('warm-up', [first]); // creates the conversation: later events take the same statements
    const alone = await event('one subscriber', [first]);

    const sockets = [ws(org), ws(org), ws(org)];
    const crowd = [first];
    for (let i = 0; i < 30; i += 1) crowd.push(await live(sockets[i % 3]!, 'messageReceived', org, MESSAGE_RECEIVED));
    const together = await event('thirty-one subscribers', crowd);

    const feedReads = (statements: string[]) => statements.filter((q) => /direction" = 'incoming'/.test(q) && /order by/i.test(q));
    expect(feedReads(together)).toHaveLength(1);
    expect(together).toHaveLength(alone.length);
    for (const sub of crowd) {
      expect(sub.data.at(-1).messageReceived).toMatchObject({ body: 'thirty-one subscribers', conversation: { phoneNumber: from, unreadCount: 3 } });
      expect(sub.data.filter((d) => d.messageReceived.body === 'thirty-one subscribers')).toHaveLength(1);
    }
    for (const sub of crowd) await end(sub, 'messageReceived', org);
  });
});

describe('token revocation', () => {
  it('closes WebSockets with 4401 (which graphql-ws clients do not retry) and ends event streams of a revoked token', async () => {
    const org = await t.createOrg('Revoked', { phoneNumber: '+19195550700' });
    const second = await issueApiToken(t.db, org.organizationId, 'second');
    // Willing to retry: a 4401 must stop it all the same.
    const doomed = connectWs(t.url, org, { retryAttempts: 5, retryWaitMs: 50 });
    connections.push(doomed);
    const sub = await live(doomed, 'messageReceived', org, MESSAGE_RECEIVED);
    const kept = await live(ws({ ...org, apiToken: second.apiToken }), 'messageReceived', org, MESSAGE_RECEIVED);
    const before = t.deps.events.subscriberCount('messageReceived', org.organizationId);
    const sse = await subscribeSse(t.url, org, MESSAGE_RECEIVED);
    await until(() => t.deps.events.subscriberCount('messageReceived', org.organizationId) > before, 10_000, 'SSE subscriber');

    expect(await revokeApiToken(t.db, org.apiToken)).toMatchObject({ tokenId: expect.any(String) });
    await until(() => doomed.closes.length > 0, 5_000, 'the socket to close');
    expect(doomed.closes[0]).toEqual({ code: 4401, reason: 'Unauthorized: the API token was revoked' });
    await until(() => sse.completed, 5_000, 'the event stream to end');
    await sse.close();
    expect(await sub.waitForError()).toMatchObject({ code: 4401 });

    // The organization's other token keeps its subscription; the revoked one got nothing more, and never reconnected.
    await inbound('+12125550707', 'after the revocation', '+19195550700');
    expect((await kept.waitFor(1))[0].messageReceived.body).toBe('after the revocation');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sub.data).toEqual([]);
    expect(sse.data).toEqual([]);
    expect(doomed.closes).toHaveLength(1);
    expect(doomed.messages.filter((type) => type === 'connection_ack')).toHaveLength(1);
  });
});

describe('shutdown', () => {
  it('closes WebSockets with 1001 and ends event streams, without hanging', async () => {
    const app = buildApp(t.deps);
    const url = await app.start(0, '127.0.0.1');
    const connection = ws(acme, url);
    const before = t.deps.events.subscriberCount('messageReceived', acme.organizationId);
    const sub = await live(connection, 'messageReceived', acme, MESSAGE_RECEIVED);
    const sse = await subscribeSse(url, acme, MESSAGE_RECEIVED);
    await until(() => t.deps.events.subscriberCount('messageReceived', acme.organizationId) >= before + 2, 10_000, 'both subscribers');
    const startedAt = Date.now();
    await app.stop(5_000);
    expect(Date.now() - startedAt).toBeLessThan(2_000);
    await until(() => connection.closes.length > 0, 5_000, 'socket close');
    expect(connection.closes[0]!.code).toBe(1001);
    await until(() => sse.completed, 5_000, 'SSE end');
    await sse.close();
    expect(sub.data).toEqual([]);
  });
});
