import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// The messages connection: newest first, keyset cursors, both directions, page limits, and the
// number of SQL statements an inbox page costs.

let t: TestApp;
let org: TestOrg;
const phone = '+19195551234';
const base = Date.parse('2026-05-01T09:00:00.000Z');
/** Bodies newest first, as the API must return them. */
let expected: string[] = [];

const PAGE = `query Page($phone: String!, $first: Int, $after: String, $last: Int, $before: String) {
  conversation(phoneNumber: $phone) {
    messages(first: $first, after: $after, last: $last, before: $before) {
      edges { cursor node { id body direction createdAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}`;

async function page(vars: Record<string, unknown>) {
  const res = await t.graphql(PAGE, { phone, ...vars }, org);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.conversation.messages;
}

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('Pager');
  await t.createContact(org, { phoneNumber: phone, firstName: 'Pat', isTextable: true });
  // 23 messages; groups of three share a timestamp, so the id must break ties.
  const rows: Array<{ body: string; at: number }> = [];
  for (let i = 0; i < 23; i += 1) rows.push({ body: `m${String(i).padStart(2, '0')}`, at: base + Math.floor(i / 3) * 1000 });
  for (const row of rows) {
    await t.addMessage(org, { phoneNumber: phone, direction: row.body.endsWith('1') ? 'outgoing' : 'incoming', body: row.body, createdAt: new Date(row.at) });
  }
  const all = await page({ first: 200 });
  expected = all.edges.map((e: any) => e.node.body);
});
afterAll(() => t.close());

describe('messages connection', () => {
  it('returns every message newest first, ties broken consistently', async () => {
    expect(expected).toHaveLength(23);
    expect(new Set(expected).size).toBe(23);
    const all = await page({ first: 200 });
    const times = all.edges.map((e: any) => Date.parse(e.node.createdAt));
    for (let i = 1; i < times.length; i += 1) expect(times[i]).toBeLessThanOrEqual(times[i - 1]);
    expect(['m21', 'm22']).toContain(expected[0]); // the newest timestamp holds m21 and m22
    expect(expected.at(-1)).toMatch(/^m0[012]$/);
    expect(all.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });
  });

  it('defaults to 50 per page', async () => {
    const res = await page({});
    expect(res.edges).toHaveLength(23);
  });

  it('walks to older messages with first/after across equal timestamps, no duplicate and no gap', async () => {
    for (const size of [1, 2, 3, 4, 5, 7]) {
      const seen: string[] = [];
      let after: string | null = null;
      for (let guard = 0; guard < 50; guard += 1) {
        const res = await page({ first: size, after });
        seen.push(...res.edges.map((e: any) => e.node.body));
        expect(res.pageInfo.hasPreviousPage).toBe(after !== null);
        if (!res.pageInfo.hasNextPage) break;
        expect(res.edges).toHaveLength(size);
        after = res.pageInfo.endCursor;
      }
      expect(seen).toEqual(expected);
    }
  });

  it('walks back to newer messages with last/before', async () => {
    const oldest = await page({ last: 4 });
    expect(oldest.edges.map((e: any) => e.node.body)).toEqual(expected.slice(-4));
    expect(oldest.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });

    const collected: string[][] = [oldest.edges.map((e: any) => e.node.body)];
    let before = oldest.pageInfo.startCursor;
    for (let guard = 0; guard < 50; guard += 1) {
      const res = await page({ last: 4, before });
      collected.unshift(res.edges.map((e: any) => e.node.body));
      expect(res.pageInfo.hasNextPage).toBe(true);
      if (!res.pageInfo.hasPreviousPage) break;
      before = res.pageInfo.startCursor;
    }
    expect(collected.flat()).toEqual(expected);
  });

  it('pages the same way forwards and backwards from a middle cursor', async () => {
    const middle = await page({ first: 10 });
    const cursor = middle.edges[9].cursor;
    const older = await page({ first: 5, after: cursor });
    expect(older.edges.map((e: any) => e.node.body)).toEqual(expected.slice(10, 15));
    const newer = await page({ last: 5, before: cursor });
    expect(newer.edges.map((e: any) => e.node.body)).toEqual(expected.slice(4, 9));
  });

  it('refuses first/last above 200, negative sizes and both at once with BAD_USER_INPUT', async () => {
    for (const vars of [{ first: 201 }, { last: 201 }, { first: -1 }, { first: 2, last: 2 }]) {
      const res = await t.graphql(PAGE, { phone, ...vars }, org);
      expect(res.status).toBe(200);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    const res = await t.graphql(PAGE, { phone, first: 201 }, org);
    expect(res.body.errors?.[0]?.message).toContain('200');
  });

  it('refuses malformed and foreign cursors with BAD_USER_INPUT, never a 500', async () => {
    const other = await t.createOrg('Other');
    await t.addMessage(other, { phoneNumber: phone, direction: 'incoming', body: 'theirs', createdAt: new Date(base) });
    const theirs = await t.graphql(PAGE, { phone, first: 1 }, other);
    const foreignCursor = theirs.body.data.conversation.messages.pageInfo.endCursor;
    const ownConversationCursor = (await page({ first: 1 })).pageInfo.endCursor;
    const forged = [
      'x',
      '%%%',
      Buffer.from('msg:not-a-uuid:1:2').toString('base64url'),
      Buffer.from(`conv:${org.organizationId}:1:00000000-0000-0000-0000-000000000000`).toString('base64url'),
      `${ownConversationCursor}A`,
      'A'.repeat(5000),
      foreignCursor,
    ];
    for (const cursor of forged) {
      for (const vars of [{ after: cursor }, { last: 2, before: cursor }]) {
        const res = await t.graphql(PAGE, { phone, ...vars }, org);
        expect(res.status).toBe(200);
        expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_CURSOR' });
      }
    }
  });
});

describe('statement count', () => {
  const INBOX = `query Inbox($first: Int) {
    conversations(first: $first) {
      edges { node { id phoneNumber unreadCount contact { firstName lastName } lastMessage { body }
        messages(first: 5) { edges { node { id body } } pageInfo { hasNextPage } } } }
    }
  }`;

  it('an inbox page with contact, lastMessage, unreadCount and messages(first: 5) costs the same few statements for 5 or 40 conversations', async () => {
    const busy = await t.createOrg('Busy');
    for (let i = 0; i < 40; i += 1) {
      const number = `+1212555${String(1000 + i)}`;
      await t.createContact(busy, { phoneNumber: number, firstName: `C${i}`, lastName: 'Tester', isTextable: true });
      for (let j = 0; j < 7; j += 1) {
        await t.addMessage(busy, { phoneNumber: number, direction: j % 2 ? 'outgoing' : 'incoming', body: `c${i}-${j}`, createdAt: new Date(base + i * 60_000 + j * 1000) });
      }
    }
    await t.graphql('{ organization { id } }', {}, busy); // warm the token cache

    const counts: number[] = [];
    for (const first of [5, 40]) {
      const stop = t.database.statementLog.record();
      const res = await t.graphql(INBOX, { first }, busy);
      const statements = stop();
      expect(res.body.errors).toBeUndefined();
      const edges = res.body.data.conversations.edges;
      expect(edges).toHaveLength(first);
      for (const edge of edges) {
        expect(edge.node.messages.edges).toHaveLength(5);
        expect(edge.node.messages.pageInfo.hasNextPage).toBe(true);
        expect(edge.node.lastMessage.body).toBe(edge.node.messages.edges[0].node.body);
        expect(edge.node.contact.lastName).toBe('Tester');
      }
      counts.push(statements.length);
    }
    expect(counts[0]).toBeLessThanOrEqual(4);
    expect(counts[1]).toBe(counts[0]);
  });
});
