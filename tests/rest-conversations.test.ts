import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { restClient } from './helpers/rest.js';

// GET /api/conversations against the published reference: shape, filters, ordering, parameter errors,
// tenant isolation and the one-statement listing.

let t: TestApp;
let rest: Awaited<ReturnType<typeof restClient>>;
let acme: TestOrg;
let rival: TestOrg;
const minute = 60_000;
const base = Date.parse('2026-03-01T12:00:00.000Z');

/** The JSON example under "List conversations" in the published reference. */
function publishedExample(): Record<string, unknown> {
  const spec = readFileSync(new URL('./fixtures/rest-conversations.md', import.meta.url), 'utf8');
  const section = spec.slice(spec.indexOf('## List conversations'), spec.indexOf('## Get conversation messages'));
  const json = /```json[^\n]*\n([\s\S]*?)```/.exec(section)![1]!;
  return JSON.parse(json)[0];
}

const typeOf = (value: unknown) => (value === null ? 'null' : typeof value);

beforeAll(async () => {
  t = await createTestApp();
  rest = await restClient(t);
  acme = await t.createOrg('Acme', { timezone: 'America/Chicago' });
  rival = await t.createOrg('Rival');

  // Acme: Jane (unread inbound, newest), Bob (answered, starred), Zoe (archived), an unknown number.
  await t.createContact(acme, { phoneNumber: '+19195551234', firstName: 'Jane', lastName: 'Smith', isTextable: true });
  await t.createContact(acme, { phoneNumber: '+19195550002', firstName: 'Bob', lastName: 'Stone', isTextable: true });
  await t.createContact(acme, { phoneNumber: '+12125550003', firstName: 'Zoe', lastName: 'Quinn', isTextable: true });
  await t.addMessage(acme, { phoneNumber: '+19195550002', direction: 'incoming', body: 'Question?', createdAt: new Date(base) });
  await t.addMessage(acme, {
    phoneNumber: '+19195550002',
    direction: 'outgoing',
    body: 'Answer',
    status: 'delivered',
    createdAt: new Date(base + minute),
  });
  await t.addMessage(acme, {
    phoneNumber: '+12125550003',
    direction: 'incoming',
    body: 'Old news',
    createdAt: new Date(base + 2 * minute),
  });
  await t.addMessage(acme, {
    phoneNumber: '+14155550004',
    direction: 'incoming',
    body: 'Who is this?',
    createdAt: new Date(base + 3 * minute),
  });
  await t.addMessage(acme, {
    phoneNumber: '+19195551234',
    direction: 'outgoing',
    body: 'Hi Jane',
    status: 'sent',
    createdAt: new Date(base + 4 * minute),
  });
  await t.addMessage(acme, {
    phoneNumber: '+19195551234',
    direction: 'incoming',
    body: 'Sounds great, see you there!',
    createdAt: new Date(Date.parse('2025-04-23T18:45:00.000Z') + 400 * 24 * 60 * minute),
  });
  for (const mutation of [
    'markConversationRead(phoneNumber: "+19195550002") { unreadCount }',
    'markConversationRead(phoneNumber: "+12125550003") { unreadCount }',
    'setConversationArchived(phoneNumber: "+12125550003", archived: true) { isArchived }',
    'setConversationStarred(phoneNumber: "+19195550002", starred: true) { isStarred }',
  ]) {
    const res = await t.graphql(`mutation { ${mutation} }`, {}, acme);
    expect(res.body.errors).toBeUndefined();
  }

  // Rival talks to one of Acme's numbers and has a contact matching Acme's search words.
  await t.createContact(rival, { phoneNumber: '+19195551234', firstName: 'Janet', lastName: 'Rival', isTextable: true });
  await t.addMessage(rival, {
    phoneNumber: '+19195551234',
    direction: 'incoming',
    body: 'rival secret',
    createdAt: new Date(base + 10 * minute),
  });
  await t.createContact(rival, { phoneNumber: '+13035550009', firstName: 'Smithers', lastName: 'Only', isTextable: true });
  await t.addMessage(rival, {
    phoneNumber: '+13035550009',
    direction: 'incoming',
    body: 'rival only',
    createdAt: new Date(base + 11 * minute),
  });
});
afterAll(() => t.close());

const list = async (query = '', org: TestOrg = acme) => rest.call('GET', `/api/conversations${query}`, { org });
const phonesOf = async (query = '', org: TestOrg = acme) => {
  const res = await list(query, org);
  expect(res.status).toBe(200);
  return res.body.map((c: any) => c.phoneNumber);
};

describe('GET /api/conversations', () => {
  it('answers the published shape: a JSON array of the example object, field for field and type for type', async () => {
    const example = publishedExample();
    const res = await list();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Array.isArray(res.body)).toBe(true);
    const jane = res.body[0];
    expect(Object.keys(jane).sort()).toEqual(Object.keys(example).sort());
    for (const [field, value] of Object.entries(example)) expect(`${field}: ${typeOf(jane[field])}`).toBe(`${field}: ${typeOf(value)}`);
    const [contact] = await t.db.query.contacts.findMany({
      where: (c, { and, eq }) => and(eq(c.organizationId, acme.organizationId), eq(c.phoneNumber, '+19195551234')),
    });
    expect(jane).toEqual({
      phoneNumber: '+19195551234',
      contactId: contact!.id,
      firstName: 'Jane',
      lastName: 'Smith',
      lastMessage: 'Sounds great, see you there!',
      lastMessageAt: '2026-05-28T18:45:00.000Z',
      unreadCount: 1,
      isArchived: false,
      isStarred: false,
    });
  });

  it('lists every non-archived conversation, most recent first, with nulls for a number without contact', async () => {
    const res = await list();
    expect(res.body.map((c: any) => c.phoneNumber)).toEqual(['+19195551234', '+14155550004', '+19195550002']);
    expect(res.body[1]).toEqual({
      phoneNumber: '+14155550004',
      contactId: null,
      firstName: null,
      lastName: null,
      lastMessage: 'Who is this?',
      lastMessageAt: new Date(base + 3 * minute).toISOString(),
      unreadCount: 1,
      isArchived: false,
      isStarred: false,
    });
    expect(res.body[2]).toMatchObject({ lastMessage: 'Answer', unreadCount: 0, isStarred: true });
    for (const c of res.body) expect(c.lastMessageAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('filters with unread, unresponded, search and includeArchived, alone and combined', async () => {
    expect(await phonesOf('?unread=true')).toEqual(['+19195551234', '+14155550004']);
    expect(await phonesOf('?unresponded=true')).toEqual(['+19195551234', '+14155550004']);
    expect(await phonesOf('?includeArchived=true')).toEqual(['+19195551234', '+14155550004', '+12125550003', '+19195550002']);
    expect(await phonesOf('?includeArchived=true&unresponded=true')).toEqual(['+19195551234', '+14155550004', '+12125550003']);
    expect(await phonesOf('?search=smi')).toEqual(['+19195551234']);
    expect(await phonesOf('?search=Jane%20Smith')).toEqual(['+19195551234']);
    expect(await phonesOf(`?search=${encodeURIComponent('(415) 555')}`)).toEqual(['+14155550004']);
    expect(await phonesOf('?search=quinn')).toEqual([]);
    expect(await phonesOf('?search=quinn&includeArchived=true')).toEqual(['+12125550003']);
    expect(await phonesOf('?search=nobody')).toEqual([]);
    // `false` is the same as leaving the filter out.
    expect(await phonesOf('?unread=false&unresponded=false&includeArchived=false')).toEqual(await phonesOf());
    expect(await phonesOf('?search=')).toEqual(await phonesOf());
  });

  it('answers 400 INVALID_PARAMETER for boolean parameters other than "true" and "false"', async () => {
    for (const query of [
      'unread=1',
      'unread=yes',
      'unresponded=TRUE',
      'includeArchived=',
      'includeArchived=null',
      'unread=true&unread=false',
      'search=a&search=b',
    ]) {
      const res = await list(`?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.success).toBe(false);
      expect(res.body.code).toBe('INVALID_PARAMETER');
      expect(res.body.message.length).toBeGreaterThan(0);
    }
  });

  it('lists with one SQL statement, contact and last message joined in', async () => {
    await list(); // warms the token cache, so the request below costs no auth query
    const stop = t.deps.database.statementLog.record();
    const res = await list('?includeArchived=true');
    const statements = stop();
    expect(res.body).toHaveLength(4);
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatch(/left join "contacts"[\s\S]*left join "messages"/);
  });

  it("keeps tenants apart: the same number and the same search words show only the caller's rows", async () => {
    const acmeJane = (await list()).body.find((c: any) => c.phoneNumber === '+19195551234');
    const rivalRows = (await list('', rival)).body;
    expect(rivalRows.map((c: any) => c.phoneNumber)).toEqual(['+13035550009', '+19195551234']);
    const rivalJane = rivalRows.find((c: any) => c.phoneNumber === '+19195551234');
    expect(rivalJane).toMatchObject({ firstName: 'Janet', lastMessage: 'rival secret' });
    expect(rivalJane.contactId).not.toBe(acmeJane.contactId);
    expect(await phonesOf('?search=smith')).toEqual(['+19195551234']);
    expect(await phonesOf('?search=smith', rival)).toEqual(['+13035550009']);
    expect(JSON.stringify((await list('?includeArchived=true')).body)).not.toContain('rival');
  });

  it("refuses another organization's id with the caller's token (403) and a missing token (401)", async () => {
    const forbidden = await rest.call('GET', '/api/conversations', {
      headers: { authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': rival.organizationId },
    });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toMatchObject({ success: false, code: 'FORBIDDEN' });
    const anonymous = await rest.call('GET', '/api/conversations');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toMatchObject({ success: false, code: 'UNAUTHENTICATED' });
  });
});
