import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRows } from '../src/db/rows.js';
import { contacts } from '../src/db/tables.js';
import { contactPageQuery } from '../src/services/contacts.js';
import { createTestApp, type GraphqlResponse, type TestApp, type TestOrg } from './helpers/app.js';

// The contacts API: the filtered, keyset-paged `contacts` connection, tags and custom fields on create and
// update, Contact.conversation batched over a page. deleteContact has its own file (contact-delete.test.ts).

let t: TestApp;
let org: TestOrg;
let other: TestOrg;

const CONTACT_FIELDS = 'id uuid phoneNumber firstName lastName tags customFields isTextable isOptedIn updatedAt';
const CREATE = `mutation($input: CreateContactInput!) { createContact(input: $input) {
  __typename ... on Error { code message } ... on CreateContactPayload { contact { ${CONTACT_FIELDS} } } } }`;
const UPDATE = `mutation($input: UpdateContactInput!) { updateContact(input: $input) {
  __typename ... on Error { code message } ... on UpdateContactPayload { contact { ${CONTACT_FIELDS} } } } }`;
const LIST = `query($first: Int, $after: String, $filter: ContactFilter) { contacts(first: $first, after: $after, filter: $filter) {
  edges { cursor node { uuid phoneNumber firstName updatedAt } } pageInfo { hasNextPage hasPreviousPage endCursor } } }`;

/** Every contact the filter matches, walking pages of `size`; fails on an error. */
async function listAll(as: TestOrg, filter: Record<string, unknown> = {}, size = 50): Promise<string[]> {
  const phones: string[] = [];
  let after: string | null = null;
  for (let page = 0; page < 100; page += 1) {
    const res: GraphqlResponse = await t.graphql(LIST, { first: size, after, filter }, as);
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    const { edges, pageInfo }: { edges: any[]; pageInfo: { hasNextPage: boolean; endCursor: string } } = res.body.data.contacts;
    phones.push(...edges.map((edge: any) => edge.node.phoneNumber));
    if (!pageInfo.hasNextPage) return phones;
    after = pageInfo.endCursor;
  }
  throw new Error('too many pages');
}

/** The organization's contacts in the connection's order, straight from the table. */
async function tableOrder(as: TestOrg, where = sql`true`): Promise<string[]> {
  const rows = await t.db
    .select({ phoneNumber: contacts.phoneNumber })
    .from(contacts)
    .where(and(eq(contacts.organizationId, as.organizationId), where))
    .orderBy(sql`updated_at desc, id desc`);
  return rows.map((row) => row.phoneNumber);
}

const sorted = (values: string[]) => [...values].sort();

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('Contacts');
  other = await t.createOrg('Other');
});
afterAll(() => t?.close());

describe('tags and custom fields', () => {
  it('createContact cleans tags (lower case, trimmed, deduplicated, empty dropped) and custom fields (trimmed, empty dropped)', async () => {
    const res = await t.graphql(
      CREATE,
      { input: { phoneNumber: '(415) 555-0161', firstName: 'Tess', tags: [' VIP ', 'vip', '', '  ', 'Spring Promo'], customFields: { company: ' Acme ', 'plan-tier': 'gold', note_1: '' } } },
      org,
    );
    const contact = res.body.data.createContact.contact;
    expect(contact.tags).toEqual(['vip', 'spring promo']);
    expect(contact.customFields).toEqual({ company: 'Acme', 'plan-tier': 'gold' });
    const fresh = await t.graphql(CREATE, { input: { phoneNumber: '(415) 555-0162' } }, org);
    expect(fresh.body.data.createContact.contact).toMatchObject({ tags: [], customFields: {} });
  });

  it.each([
    ['51 tags', { tags: Array.from({ length: 51 }, (_, i) => `t${i}`) }, /at most 50 tags/],
    ['a 65-character tag', { tags: ['x'.repeat(65)] }, /at most 64 characters/],
    ['a control character in a tag', { tags: ['a\tb'] }, /control characters/],
    ['a number as a value', { customFields: { age: 42 } }, /customFields.age must be a string/],
    ['null as a value', { customFields: { age: null } }, /customFields.age must be a string/],
    ['an object as a value', { customFields: { nested: { a: 'b' } } }, /must be a string/],
    ['a key with a space', { customFields: { 'first pet': 'Rex' } }, /not a valid key/],
    ['a key with braces', { customFields: { 'a}}{{b': 'x' } }, /not a valid key/],
    ['a key with a dot', { customFields: { 'a.b': 'x' } }, /not a valid key/],
    ['an empty key', { customFields: { '': 'x' } }, /not a valid key/],
    ['a 65-character key', { customFields: { ['k'.repeat(65)]: 'x' } }, /not a valid key/],
    ['51 keys', { customFields: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) }, /at most 50 custom fields/],
    ['a 1001-character value', { customFields: { bio: 'b'.repeat(1001) } }, /at most 1000 characters/],
  ])('refuses %s with BAD_USER_INPUT on create and update, writing nothing', async (_name, values, message) => {
    const phoneNumber = '+14155550163';
    const created = await t.graphql(CREATE, { input: { phoneNumber, ...values } }, org);
    expect(created.body.errors?.[0]?.extensions?.code, JSON.stringify(created.body)).toBe('BAD_USER_INPUT');
    expect(created.body.errors?.[0]?.message).toMatch(message);
    expect(await t.db.select().from(contacts).where(eq(contacts.phoneNumber, phoneNumber))).toEqual([]);

    const target = await t.createContact(org, { phoneNumber: '+14155550164', tags: ['keep'], customFields: { keep: 'me' }, isOptedIn: true });
    const updated = await t.graphql(UPDATE, { input: { id: target.id, firstName: 'Changed', isOptedIn: false, ...values } }, org);
    expect(updated.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const [after] = await t.db.select().from(contacts).where(eq(contacts.id, target.id));
    // Nothing of the patch applied: not the name, not the consent change that came with it.
    expect(after).toEqual(target);
    await t.db.delete(contacts).where(eq(contacts.id, target.id));
  });

  it('updateContact: omitted tags and custom fields stay, given ones replace, null clears; updatedAt moves on every change only', async () => {
    const target = await t.createContact(org, { phoneNumber: '+14155550165', firstName: 'Una', tags: ['a', 'b'], customFields: { x: '1', y: '2' } });
    const name = await t.graphql(UPDATE, { input: { id: target.id, firstName: 'Uma' } }, org);
    const afterName = name.body.data.updateContact.contact;
    expect(afterName).toMatchObject({ firstName: 'Uma', tags: ['a', 'b'], customFields: { x: '1', y: '2' } });
    expect(new Date(afterName.updatedAt).getTime()).toBeGreaterThan(target.updatedAt.getTime());

    const replaced = (await t.graphql(UPDATE, { input: { phoneNumber: '415-555-0165', tags: ['C', 'a'], customFields: { z: '3' } } }, org)).body.data.updateContact.contact;
    expect(replaced).toMatchObject({ firstName: 'Uma', tags: ['c', 'a'], customFields: { z: '3' } });
    expect(new Date(replaced.updatedAt).getTime()).toBeGreaterThan(new Date(afterName.updatedAt).getTime());

    // The same values again: nothing changes, nothing is written.
    const same = (await t.graphql(UPDATE, { input: { id: target.id, firstName: 'Uma', tags: ['c', 'a'], customFields: { z: '3' } } }, org)).body.data.updateContact.contact;
    expect(same.updatedAt).toBe(replaced.updatedAt);

    const cleared = (await t.graphql(UPDATE, { input: { id: target.id, tags: null, customFields: null } }, org)).body.data.updateContact.contact;
    expect(cleared).toMatchObject({ firstName: 'Uma', tags: [], customFields: {} });
    const emptied = (await t.graphql(UPDATE, { input: { id: target.id, tags: ['q'], customFields: { q: 'r' } } }, org)).body.data.updateContact.contact;
    expect(emptied).toMatchObject({ tags: ['q'], customFields: { q: 'r' } });
    const viaEmpty = (await t.graphql(UPDATE, { input: { id: target.id, tags: [], customFields: {} } }, org)).body.data.updateContact.contact;
    expect(viaEmpty).toMatchObject({ tags: [], customFields: {} });
  });

  it("keeps another organization's contacts out of reach", async () => {
    const theirs = await t.createContact(other, { phoneNumber: '+14155550166', tags: ['theirs'] });
    const res = await t.graphql(UPDATE, { input: { id: theirs.id, tags: ['mine'] } }, org);
    expect(res.body.data.updateContact).toMatchObject({ __typename: 'ContactNotFoundError', code: 'CONTACT_NOT_FOUND' });
    expect(await listAll(org, { tags: ['theirs'] })).toEqual([]);
    expect(await listAll(org, { search: '5550166' })).toEqual([]);
    expect(await listAll(other, { tags: ['theirs'] })).toEqual(['+14155550166']);
  });
});

describe('the contacts connection', () => {
  let filters: TestOrg;
  const A = '+14155550123';
  const B = '+14155550124';
  const C = '+16175550100';
  const D = '+12125550199';
  const E = '+13125550111';

  beforeAll(async () => {
    filters = await t.createOrg('Filters');
    await t.createContact(filters, { phoneNumber: A, firstName: 'Ann', lastName: 'Lee', tags: ['vip', 'customer'], isTextable: true });
    await t.createContact(filters, { phoneNumber: B, firstName: 'Bob', lastName: 'Annis', tags: ['customer'], isTextable: false });
    await t.createContact(filters, { phoneNumber: C, firstName: 'Carla', lastName: 'Diaz', tags: ['vip'], isTextable: null, isOptedIn: false });
    await t.createContact(filters, { phoneNumber: D, isTextable: true, isOptedIn: false });
    await t.createContact(filters, { phoneNumber: E, firstName: 'Dan', lastName: "O'Brien_x", tags: ['lead', 'vip', 'customer'], isTextable: true });
    // A contact elsewhere that every filter below would match.
    await t.createContact(other, { phoneNumber: A, firstName: 'Ann', lastName: 'Lee', tags: ['vip', 'customer', 'lead'], isTextable: true });
  });

  it.each([
    ['no filter', {}, [A, B, C, D, E]],
    ['a partial first name, any case', { search: 'aNn' }, [A, B]],
    ['a last name', { search: 'diaz' }, [C]],
    ['first and last name', { search: 'ann lee' }, [A]],
    ['phone digits in a US format', { search: '(415) 555' }, [A, B]],
    ['phone digits with a country code', { search: '+1 617' }, [C]],
    ['the end of a number', { search: '555-0100' }, [C]],
    ['LIKE wildcards, literally', { search: '%' }, []],
    ['an underscore, literally', { search: '_x' }, [E]],
    ['an apostrophe', { search: "o'brien" }, [E]],
    ['nothing matching', { search: 'zzz' }, []],
    ['a blank search', { search: '   ' }, [A, B, C, D, E]],
    ['one tag', { tags: ['vip'] }, [A, C, E]],
    ['any of two tags, cleaned like stored ones', { tags: [' VIP ', 'Lead'] }, [A, C, E]],
    ['any, explicitly', { tags: ['lead', 'customer'], tagsMode: 'ANY' }, [A, B, E]],
    ['all of two tags', { tags: ['vip', 'customer'], tagsMode: 'ALL' }, [A, E]],
    ['all of three tags', { tags: ['vip', 'customer', 'lead'], tagsMode: 'ALL' }, [E]],
    ['an unknown tag', { tags: ['nope'] }, []],
    ['an empty tag list (no condition)', { tags: [], tagsMode: 'ALL' }, [A, B, C, D, E]],
    ['textable', { isTextable: true }, [A, D, E]],
    ['not textable (a pending lookup is neither)', { isTextable: false }, [B]],
    ['opted out', { optedOut: true }, [C, D]],
    ['opted in', { optedOut: false }, [A, B, E]],
    ['tags, consent and a search', { tags: ['vip'], optedOut: false, search: 'an' }, [A, E]],
    ['all tags and textability', { tags: ['customer'], tagsMode: 'ALL', isTextable: false }, [B]],
    ['a search and opted out', { search: '555', optedOut: true }, [C, D]],
    ['every filter', { search: '415', tags: ['vip', 'customer'], tagsMode: 'ALL', isTextable: true, optedOut: false }, [A]],
    ['every filter, nothing left', { search: '415', tags: ['vip'], isTextable: false, optedOut: false }, []],
  ])('filters by %s', async (_name, filter, expected) => {
    const found = await listAll(filters, filter);
    expect(sorted(found)).toEqual(sorted(expected));
    // Newest updated first, like the table says.
    expect(found).toEqual((await tableOrder(filters)).filter((phone) => found.includes(phone)));
  });

  it('refuses bad filters and page sizes with typed errors', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ filter: { tags: ['x'.repeat(65)] } }, 'BAD_USER_INPUT'],
      [{ filter: { search: 's'.repeat(201) } }, 'BAD_USER_INPUT'],
      [{ first: 201 }, 'BAD_USER_INPUT'],
      [{ first: -1 }, 'BAD_USER_INPUT'],
      [{ after: 'not-a-cursor' }, 'INVALID_CURSOR'],
    ];
    for (const [variables, code] of cases) {
      const res = await t.graphql(LIST, variables, filters);
      const error = res.body.errors?.[0]?.extensions;
      expect(error?.errorCode ?? error?.code, JSON.stringify(res.body)).toBe(code);
    }
    // A cursor of another organization's list.
    const theirs = await t.graphql(LIST, { first: 1 }, other);
    const res = await t.graphql(LIST, { after: theirs.body.data.contacts.pageInfo.endCursor }, filters);
    expect(res.body.errors?.[0]?.extensions?.errorCode).toBe('INVALID_CURSOR');
  });

  it('pages without gaps or duplicates, also through contacts updated in the same instant', async () => {
    const pages = await t.createOrg('Pages');
    // One statement: all 23 share updated_at, so only the id orders them.
    await t.db.insert(contacts).values(
      Array.from({ length: 23 }, (_, i) => ({
        organizationId: pages.organizationId,
        phoneNumber: `+1919555${String(3000 + i)}`,
        tags: i % 2 === 0 ? ['even'] : ['odd'],
      })),
    );
    for (let i = 0; i < 7; i += 1) await t.createContact(pages, { phoneNumber: `+1919555${3100 + i}`, tags: i % 2 === 0 ? ['even'] : [] });
    const all = await tableOrder(pages);
    expect(all).toHaveLength(30);
    for (const size of [1, 4, 7, 30, 200]) expect(await listAll(pages, {}, size)).toEqual(all);
    const even = await tableOrder(pages, sql`'even' = any(tags)`);
    expect(even).toHaveLength(16);
    expect(await listAll(pages, { tags: ['even'] }, 3)).toEqual(even);

    const first = await t.graphql(LIST, { first: 5 }, pages);
    expect(first.body.data.contacts.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    const empty = await t.graphql(LIST, { first: 0 }, pages);
    expect(empty.body.data.contacts.edges).toEqual([]);

    // An update moves the contact to the top.
    const last = all.at(-1)!;
    await t.graphql(UPDATE, { input: { phoneNumber: last, tags: ['moved'] } }, pages);
    expect((await listAll(pages, {}, 30))[0]).toBe(last);
  });

  it('reads a page and the conversations of its contacts in two statements, whatever the page size', async () => {
    const many = await t.createOrg('Many', { phoneNumber: '+19195550900' });
    for (let i = 0; i < 12; i += 1) {
      const phoneNumber = `+1919555${4000 + i}`;
      await t.createContact(many, { phoneNumber, firstName: `P${i}` });
      if (i % 3 !== 0) await t.addMessage(many, { phoneNumber, direction: 'incoming', body: `hello ${i}` });
    }
    const PAGE = `query($first: Int) { contacts(first: $first) { edges { node { phoneNumber tags customFields
      conversation { phoneNumber unreadCount lastMessage { body } } } } } }`;
    await t.graphql(PAGE, { first: 1 }, many); // warms the token cache
    for (const first of [3, 12]) {
      const stop = t.database.statementLog.record();
      const res = await t.graphql(PAGE, { first }, many);
      const statements = stop().filter((statement) => !/api_tokens|memberships/.test(statement));
      expect(res.body.errors).toBeUndefined();
      const edges = res.body.data.contacts.edges;
      expect(edges).toHaveLength(first);
      for (const { node } of edges) {
        const i = Number(node.phoneNumber.slice(-2));
        expect(node.conversation === null, node.phoneNumber).toBe(i % 3 === 0);
        if (node.conversation) expect(node.conversation.lastMessage.body).toBe(`hello ${i}`);
      }
      // The page; the conversations by phone; their last messages.
      expect(statements.length, statements.join('\n')).toBeLessThanOrEqual(3);
      expect(statements.filter((s) => /from "contacts"/.test(s))).toHaveLength(1);
    }
  });
});

describe('at 10,000 contacts', () => {
  let big: TestOrg;

  beforeAll(async () => {
    big = await t.createOrg('Big');
    // Tags: every 100th contact is vip, every other one a customer; one in ten has a name with "smith".
    await t.db.execute(sql`insert into contacts (organization_id, phone_number, first_name, last_name, tags, is_textable, updated_at)
      select ${big.organizationId}, '+1415' || lpad(i::text, 7, '0'), 'First' || i, case when i % 10 = 0 then 'Smith' else 'Jones' || i end,
        case when i % 100 = 0 then array['vip', 'customer'] when i % 2 = 0 then array['customer'] else array[]::text[] end,
        i % 3 <> 0, now() - make_interval(secs => i)
      from generate_series(1, 10000) i`);
    // The table holds other organizations' contacts too, as it does in service: with one organization alone in
    // it, PostgreSQL rightly reads the whole table for a very selective search (the ILIKE on every row is the
    // cost either way; README "Contacts").
    const others = await Promise.all(Array.from({ length: 10 }, (_, i) => t.createOrg(`Neighbour ${i}`)));
    await t.db.execute(sql`insert into contacts (organization_id, phone_number, first_name, tags, updated_at)
      select (array[${sql.join(
        others.map((o) => sql`${o.organizationId}::uuid`),
        sql`, `,
      )}])[1 + i % 10], '+1212' || lpad(i::text, 7, '0'), 'Smith' || i, array['vip'], now() - make_interval(secs => i)
      from generate_series(1, 20000) i`);
    await t.db.execute(sql`analyze contacts`);
  }, 120_000);

  const plans: [string, Record<string, unknown>][] = [
    ['the plain page', {}],
    ['a rare tag', { tags: ['vip'] }],
    ['a common tag', { tags: ['customer'] }],
    ['all of two tags', { tags: ['vip', 'customer'], tagsMode: 'ALL' }],
    ['a name search', { search: 'smith' }],
    ['a phone search', { search: '(415) 000-12' }],
    ['a tag, a search and consent', { tags: ['customer'], search: 'smith', optedOut: false, isTextable: true }],
  ];

  it.each(plans)('plans %s with an index, no Seq Scan on contacts', async (_name, filter) => {
    const explained = await rawRows(t.db, sql`explain ${contactPageQuery(big.organizationId, { first: 50, filter })}`);
    const plan = explained.map((row) => String(Object.values(row)[0])).join('\n');
    expect(plan, plan).toMatch(/Index Scan using contacts_|Bitmap Index Scan on contacts_/);
    expect(plan, plan).not.toMatch(/Seq Scan on contacts/);
  });

  it('answers a filtered page in one SQL statement, matching the table', async () => {
    await t.graphql(LIST, { first: 1 }, big); // warms the token cache
    const stop = t.database.statementLog.record();
    const res = await t.graphql(LIST, { first: 20, filter: { tags: ['customer'], search: 'smith' } }, big);
    const statements = stop().filter((statement) => !/api_tokens|memberships/.test(statement));
    expect(statements).toHaveLength(1);
    const phones = res.body.data.contacts.edges.map((edge: any) => edge.node.phoneNumber);
    const expected = await tableOrder(big, sql`'customer' = any(tags) and last_name = 'Smith'`);
    expect(phones).toEqual(expected.slice(0, 20));
  });
});
