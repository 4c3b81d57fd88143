import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { assembleDeps, closeDeps } from '../src/deps.js';
import { wakeSnoozedConversations } from '../src/services/conversation-status.js';
import { createTestApp, type TestApp, type TestMember, type TestOrg } from './helpers/app.js';
import { postgresUrl } from './helpers/database.js';
import { connectWs, postInbound, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL, until } from './helpers/realtime.js';

// Working a thread: status, snooze (and its end, once, across instances), assignment, waiting time,
// the filters, orders and counts built on them, and who sent a reply. Over real HTTP, WebSocket and
// Twilio-signed webhooks.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL, SIMULATED_STATUS_DELAY_MS: '0' });
}, 60_000);
afterAll(() => t?.close());

const as = (who: TestOrg) => ({ headers: { authorization: `Bearer ${who.apiToken}`, 'x-organization-id': who.organizationId } });
const STATUS = `mutation($phone: String!, $status: ConversationStatus!, $until: DateTime) {
  setConversationStatus(phoneNumber: $phone, status: $status, snoozedUntil: $until) { status snoozedUntil resolvedAt } }`;
const ASSIGN = `mutation($phone: String!, $userId: ID) { assignConversation(phoneNumber: $phone, userId: $userId) { assignee { uuid email } } }`;
const STATE = `query($phone: String!) { conversation(phoneNumber: $phone) { status snoozedUntil resolvedAt waitingSince assignee { uuid } } }`;

let numberSeq = 0;
async function workspace(name: string) {
  numberSeq += 1;
  const org = await t.createOrg(name, { credits: 100, phoneNumber: `+1919556${String(1000 + numberSeq).slice(-4)}` });
  const to = `+1919556${String(1000 + numberSeq).slice(-4)}`;
  const owner = await t.addMember(org, { email: `owner.${numberSeq}@status.example.com`, name: 'Owner', role: 'owner' });
  const agent = await t.addMember(org, { email: `agent.${numberSeq}@status.example.com`, name: 'Agent', role: 'agent' });
  return { org, to, owner, agent };
}

async function inbound(to: string, from: string, body = 'hi') {
  const res = await postInbound(t.url, to, from, body);
  expect(res.status).toBe(200);
}

async function state(who: TestOrg, phone: string) {
  const res = await t.graphql(STATE, { phone }, as(who));
  expect(res.body.errors).toBeUndefined();
  return res.body.data.conversation;
}

describe('status', () => {
  it('starts OPEN; RESOLVED stamps resolvedAt; a snooze needs a future snoozedUntil; bad input changes nothing', async () => {
    const { to, agent } = await workspace('Status');
    await inbound(to, '+12125550101');
    expect(await state(agent, '+12125550101')).toMatchObject({ status: 'OPEN', snoozedUntil: null, resolvedAt: null });

    const resolved = await t.graphql(STATUS, { phone: '+12125550101', status: 'RESOLVED' }, as(agent));
    expect(resolved.body.data.setConversationStatus).toMatchObject({ status: 'RESOLVED', resolvedAt: expect.any(String) });

    for (const until of [null, new Date(Date.now() - 1000).toISOString(), new Date(Date.now() + 400 * 86_400_000).toISOString()]) {
      const refused = await t.graphql(STATUS, { phone: '+12125550101', status: 'SNOOZED', until }, as(agent));
      expect(refused.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    const stray = await t.graphql(STATUS, { phone: '+12125550101', status: 'OPEN', until: new Date(Date.now() + 60_000).toISOString() }, as(agent));
    expect(stray.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect((await state(agent, '+12125550101')).status).toBe('RESOLVED');

    const missing = await t.graphql(STATUS, { phone: '+12125550199', status: 'PENDING' }, as(agent));
    expect(missing.body.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', errorCode: 'CONVERSATION_NOT_FOUND' });

    const snoozeUntil = new Date(Date.now() + 3_600_000).toISOString();
    const snoozed = await t.graphql(STATUS, { phone: '+12125550101', status: 'SNOOZED', until: snoozeUntil }, as(agent));
    expect(snoozed.body.data.setConversationStatus).toEqual({ status: 'SNOOZED', snoozedUntil: snoozeUntil, resolvedAt: null });
    const pending = await t.graphql(STATUS, { phone: '+12125550101', status: 'PENDING' }, as(agent));
    expect(pending.body.data.setConversationStatus).toEqual({ status: 'PENDING', snoozedUntil: null, resolvedAt: null });
  });

  it('an inbound message reopens a RESOLVED or SNOOZED conversation; a reply leaves the status as it is', async () => {
    const { to, agent } = await workspace('Reopen');
    await inbound(to, '+12125550111');
    await t.graphql(STATUS, { phone: '+12125550111', status: 'RESOLVED' }, as(agent));
    await inbound(to, '+12125550111', 'one more thing');
    expect(await state(agent, '+12125550111')).toMatchObject({ status: 'OPEN', resolvedAt: null });

    await t.graphql(STATUS, { phone: '+12125550111', status: 'SNOOZED', until: new Date(Date.now() + 3_600_000).toISOString() }, as(agent));
    await inbound(to, '+12125550111', 'hello?');
    expect(await state(agent, '+12125550111')).toMatchObject({ status: 'OPEN', snoozedUntil: null });

    await t.graphql(STATUS, { phone: '+12125550111', status: 'PENDING' }, as(agent));
    await inbound(to, '+12125550111', 'still pending is fine');
    expect((await state(agent, '+12125550111')).status).toBe('PENDING');

    await t.graphql(STATUS, { phone: '+12125550111', status: 'RESOLVED' }, as(agent));
    const reply = await t.graphql(
      `mutation { sendReply(input: { phoneNumber: "+12125550111", message: "Closing the loop" }) { __typename } }`,
      {},
      as(agent),
    );
    expect(reply.body.data.sendReply.__typename).toBe('SendReplyPayload');
    expect((await state(agent, '+12125550111')).status).toBe('RESOLVED');
  });

  it('a snooze ends within 5 s of snoozedUntil with one conversationUpdated event', async () => {
    const { to, agent, org } = await workspace('Snooze');
    await inbound(to, '+12125550121');
    const socket = connectWs(t.url, agent);
    const events = subscribeWs(socket, `subscription { conversationUpdated { phoneNumber status } }`);
    await until(() => t.deps.events.subscriberCount('conversationUpdated', org.organizationId) > 0, 10_000, 'subscriber');
    const until_ = new Date(Date.now() + 1_500).toISOString();
    await t.graphql(STATUS, { phone: '+12125550121', status: 'SNOOZED', until: until_ }, as(agent));
    t.deps.snoozes.start();
    await events.waitFor(2, 8_000); // the snooze, then its end
    expect(events.data.map((e) => e.conversationUpdated.status)).toEqual(['SNOOZED', 'OPEN']);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(until_));
    expect(Date.now() - Date.parse(until_)).toBeLessThan(5_000);
    // No second end: later sweeps find nothing.
    expect(await wakeSnoozedConversations(t.deps)).toBe(0);
    expect(events.data).toHaveLength(2);
    events.unsubscribe();
    await socket.client.dispose();
    // The next tests sweep by hand.
    await t.deps.snoozes.close();
  });
});

describe('snoozes across instances', () => {
  it('two instances sweeping the same store end each snooze exactly once, including ones due while none ran', async () => {
    const { to, agent, org } = await workspace('Two instances');
    const phones = Array.from({ length: 30 }, (_, i) => `+1212555${String(2000 + i)}`);
    for (const phone of phones) await inbound(to, phone);
    // Each snooze ends 1.5 s after it is set (a single due time could pass while a loaded machine sets the 30).
    let lastDue = 0;
    for (const phone of phones) {
      lastDue = Date.now() + 1_500;
      const snoozed = await t.graphql(STATUS, { phone, status: 'SNOOZED', until: new Date(lastDue).toISOString() }, as(agent));
      expect(snoozed.body.data?.setConversationStatus?.status).toBe('SNOOZED');
    }
    // A second instance on the same store: its own connections on PostgreSQL, the same embedded database on PGlite.
    const second: Database = postgresUrl ? await createDatabase({ kind: 'postgres', url: (t.database as { url?: string }).url!, poolSize: 4 }) : t.database;
    const other = assembleDeps(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', SNOOZE_SWEEP_MS: '100' }), second, pino({ level: 'silent' }));
    await Promise.all([t.deps.events.ready, other.events.ready]);
    // On PostgreSQL the other instance's events cross over NOTIFY to this one; PGlite's bus is per instance.
    const heard: string[] = [];
    const listening = [t.deps, ...(postgresUrl ? [] : [other])].map((deps) =>
      deps.events.listen('conversationUpdated', org.organizationId, ({ conversationId }) => heard.push(conversationId)),
    );
    const woken: number[] = [];
    // Both sweep at once, many times, from before the snoozes are due until after.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, lastDue - Date.now() + 20)));
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        woken.push(await wakeSnoozedConversations(t.deps));
        woken.push(await wakeSnoozedConversations(other));
      }),
    );
    expect(woken.reduce((a, b) => a + b, 0)).toBe(phones.length);
    const counts = await t.graphql(`{ conversationCounts { open snoozed } }`, {}, as(agent));
    expect(counts.body.data.conversationCounts).toMatchObject({ snoozed: 0, open: phones.length });
    // Each conversation is told once.
    await until(() => new Set(heard).size >= phones.length, 10_000, 'an event per conversation');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(heard.length).toBe(phones.length);
    for (const stop of listening) stop();
    await closeDeps(other, { database: Boolean(postgresUrl) });
  });
});

describe('assignment and waiting time', () => {
  it('assigns to members only (MEMBER_NOT_FOUND otherwise), unassigns with null, and tells subscribers', async () => {
    const { to, owner, agent, org } = await workspace('Assign');
    const outsider = await t.addMember(await t.createOrg('Outside'), { email: `outsider.${numberSeq}@status.example.com`, role: 'agent' });
    await inbound(to, '+12125550131');
    const socket = connectWs(t.url, owner);
    const events = subscribeWs(socket, `subscription { conversationUpdated { assignee { uuid } } }`);
    await until(() => t.deps.events.subscriberCount('conversationUpdated', org.organizationId) > 0, 10_000, 'subscriber');

    const assigned = await t.graphql(ASSIGN, { phone: '+12125550131', userId: owner.userId }, as(agent));
    expect(assigned.body.data.assignConversation.assignee.uuid).toBe(owner.userId);
    for (const userId of [outsider.userId, 'nobody', '00000000-0000-4000-8000-000000000000']) {
      const refused = await t.graphql(ASSIGN, { phone: '+12125550131', userId }, as(agent));
      expect(refused.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'MEMBER_NOT_FOUND' });
    }
    expect((await state(agent, '+12125550131')).assignee.uuid).toBe(owner.userId);
    const unassigned = await t.graphql(ASSIGN, { phone: '+12125550131', userId: null }, as(agent));
    expect(unassigned.body.data.assignConversation.assignee).toBeNull();
    await events.waitFor(2);
    expect(events.data.map((e) => e.conversationUpdated.assignee?.uuid ?? null)).toEqual([owner.userId, null]);
    events.unsubscribe();
    await socket.client.dispose();
  });

  it('waitingSince is the oldest inbound message since our last reply', async () => {
    const { to, agent } = await workspace('Waiting');
    await inbound(to, '+12125550141', 'first');
    const first = (await state(agent, '+12125550141')).waitingSince;
    expect(first).toEqual(expect.any(String));
    await inbound(to, '+12125550141', 'second');
    expect((await state(agent, '+12125550141')).waitingSince).toBe(first);
    await t.graphql(`mutation { sendReply(input: { phoneNumber: "+12125550141", message: "On it" }) { __typename } }`, {}, as(agent));
    expect((await state(agent, '+12125550141')).waitingSince).toBeNull();
    await inbound(to, '+12125550141', 'thanks');
    const again = (await state(agent, '+12125550141')).waitingSince;
    expect(Date.parse(again)).toBeGreaterThan(Date.parse(first));
  });

  it('Message.sentBy names the member who replied, over GraphQL and REST; null for an integration token', async () => {
    const { to, agent, org } = await workspace('Sent by');
    await inbound(to, '+12125550151');
    await t.graphql(`mutation { sendReply(input: { phoneNumber: "+12125550151", message: "from graphql" }) { __typename } }`, {}, as(agent));
    const rest = await fetch(`${t.url}/api/conversations/+12125550151/reply`, {
      method: 'POST',
      headers: { ...as(agent).headers, 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'from rest' }),
    });
    expect(rest.status).toBe(200);
    await t.graphql(`mutation { sendReply(input: { phoneNumber: "+12125550151", message: "from integration" }) { __typename } }`, {}, org);
    const thread = await t.graphql(
      `{ conversation(phoneNumber: "+12125550151") { messages(first: 10) { edges { node { body direction sentBy { uuid } } } } } }`,
      {},
      as(agent),
    );
    const byBody = Object.fromEntries(thread.body.data.conversation.messages.edges.map((e: any) => [e.node.body, e.node.sentBy?.uuid ?? null]));
    expect(byBody).toEqual({ 'from graphql': agent.userId, 'from rest': agent.userId, 'from integration': null, hi: null });
  });
});

describe('filters, orders and counts', () => {
  let team: { org: TestOrg; to: string; owner: TestMember; agent: TestMember };
  const phones = ['+12125550161', '+12125550162', '+12125550163', '+12125550164', '+12125550165', '+12125550166'];
  beforeAll(async () => {
    team = await workspace('Inbox');
    // Oldest first: 161 waits longest; 163 and 166 are answered; 164 resolved; 165 snoozed.
    for (const phone of phones) await inbound(team.to, phone, `hello from ${phone}`);
    for (const phone of ['+12125550163', '+12125550166']) {
      await t.graphql(`mutation($p: String!) { sendReply(input: { phoneNumber: $p, message: "answered" }) { __typename } }`, { p: phone }, team.org);
    }
    await t.graphql(STATUS, { phone: '+12125550164', status: 'RESOLVED' }, as(team.agent));
    await t.graphql(STATUS, { phone: '+12125550165', status: 'SNOOZED', until: new Date(Date.now() + 3_600_000).toISOString() }, as(team.agent));
    await t.graphql(ASSIGN, { phone: '+12125550161', userId: team.agent.userId }, as(team.owner));
    await t.graphql(ASSIGN, { phone: '+12125550163', userId: team.agent.userId }, as(team.owner));
    await t.graphql(ASSIGN, { phone: '+12125550162', userId: team.owner.userId }, as(team.owner));
  }, 60_000);

  const LIST = `query($filter: ConversationFilter, $orderBy: ConversationOrder, $first: Int, $after: String) {
    conversations(first: $first, after: $after, filter: $filter, orderBy: $orderBy) { edges { cursor node { phoneNumber waitingSince } } pageInfo { hasNextPage endCursor } } }`;
  const list = async (who: TestOrg, variables: Record<string, unknown>) => {
    const res = await t.graphql(LIST, { first: 50, ...variables }, as(who));
    expect(res.body.errors).toBeUndefined();
    return res.body.data.conversations.edges.map((e: any) => e.node.phoneNumber);
  };

  it('filters by status, assignee, unassigned and mine (mine is nothing for an integration token)', async () => {
    const { agent, owner, org } = team;
    expect(await list(agent, { filter: { status: ['RESOLVED'] } })).toEqual(['+12125550164']);
    expect((await list(agent, { filter: { status: ['OPEN', 'SNOOZED'] } })).sort()).toEqual(
      ['+12125550161', '+12125550162', '+12125550163', '+12125550165', '+12125550166'],
    );
    expect((await list(agent, { filter: { mine: true } })).sort()).toEqual(['+12125550161', '+12125550163']);
    expect(await list(owner, { filter: { mine: true } })).toEqual(['+12125550162']);
    expect(await list(agent, { filter: { assignedTo: owner.userId } })).toEqual(['+12125550162']);
    expect((await list(agent, { filter: { unassigned: true } })).sort()).toEqual(['+12125550164', '+12125550165', '+12125550166']);
    expect(await list(agent, { filter: { mine: true, status: ['OPEN'], unresponded: true } })).toEqual(['+12125550161']);
    const integration = await t.graphql(LIST, { first: 50, filter: { mine: true } }, org);
    expect(integration.body.data.conversations.edges).toEqual([]);
    expect(await list(agent, { filter: { assignedTo: 'not-an-id' } })).toEqual([]);
  });

  it('WAITING_LONGEST: waiting conversations oldest wait first, then the rest by last activity, walked by cursor without a gap or a repeat', async () => {
    const { agent } = team;
    const all = await list(agent, { orderBy: 'WAITING_LONGEST' });
    // 161, 162, 164, 165 are waiting (the resolved and snoozed ones too: nobody answered them) in arrival order;
    // then 166 and 163, answered, latest activity first.
    expect(all).toEqual(['+12125550161', '+12125550162', '+12125550164', '+12125550165', '+12125550166', '+12125550163']);
    for (const size of [1, 2, 3, 4]) {
      const walked: string[] = [];
      let after: string | null = null;
      for (;;) {
        const res: any = await t.graphql(LIST, { first: size, after, orderBy: 'WAITING_LONGEST' }, as(agent));
        expect(res.body.errors).toBeUndefined();
        walked.push(...res.body.data.conversations.edges.map((e: any) => e.node.phoneNumber));
        if (!res.body.data.conversations.pageInfo.hasNextPage) break;
        after = res.body.data.conversations.pageInfo.endCursor;
      }
      expect(walked).toEqual(all);
    }
    // A cursor of the other order is refused, not reinterpreted.
    const lastActivity = await t.graphql(LIST, { first: 1 }, as(agent));
    const wrong = await t.graphql(LIST, { first: 1, after: lastActivity.body.data.conversations.pageInfo.endCursor, orderBy: 'WAITING_LONGEST' }, as(agent));
    expect(wrong.body.errors?.[0]?.extensions?.errorCode, JSON.stringify(wrong.body)).toBe('INVALID_CURSOR');
    // With a filter: the waiting part is filtered too.
    expect(await list(agent, { orderBy: 'WAITING_LONGEST', filter: { status: ['OPEN'] } })).toEqual(['+12125550161', '+12125550162', '+12125550166', '+12125550163']);
  });

  it('the team inbox pages (mine and open; waiting longest) cost at most 3 SQL statements with contacts, assignees and messages', async () => {
    const PAGE = `query($filter: ConversationFilter, $orderBy: ConversationOrder) {
      conversations(first: 3, filter: $filter, orderBy: $orderBy) { edges { cursor node { phoneNumber status waitingSince
        assignee { name } contact { firstName } lastMessage { body } messages(first: 5) { edges { node { body } } } } } } }`;
    for (const variables of [{ filter: { mine: true, status: ['OPEN'] } }, { orderBy: 'WAITING_LONGEST' }, { orderBy: 'WAITING_LONGEST', filter: { status: ['OPEN'] } }]) {
      const stop = t.database.statementLog.record();
      const res = await t.graphql(PAGE, variables, as(team.agent));
      const statements = stop().filter((statement) => !/api_tokens|memberships" where "memberships"."user_id"/.test(statement));
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.conversations.edges.length).toBeGreaterThan(0);
      expect(statements.length, statements.join('\n')).toBeLessThanOrEqual(3);
    }
  });

  it('counts each state of the filtered conversations in one SQL statement, matching the lists', async () => {
    const { agent } = team;
    const COUNTS = `query($filter: ConversationFilter) { conversationCounts(filter: $filter) { all open pending snoozed resolved unread unassigned mine waiting } }`;
    const stop = t.database.statementLog.record();
    const res = await t.graphql(COUNTS, {}, as(agent));
    const statements = stop().filter((statement) => !/api_tokens|memberships/.test(statement));
    expect(statements).toHaveLength(1);
    expect(res.body.data.conversationCounts).toEqual({ all: 6, open: 4, pending: 0, snoozed: 1, resolved: 1, unread: 6, unassigned: 3, mine: 2, waiting: 4 });
    for (const filter of [{ status: ['OPEN'] }, { mine: true }, { unassigned: true }, { search: '555016' }]) {
      const counts = (await t.graphql(COUNTS, { filter }, as(agent))).body.data.conversationCounts;
      expect(counts.all).toBe((await list(agent, { filter })).length);
      expect(counts.open).toBe((await list(agent, { filter: { ...filter, status: ['OPEN'] } })).length);
      expect(counts.mine).toBe((await list(agent, { filter: { ...filter, mine: true } })).length);
    }
  });
});
