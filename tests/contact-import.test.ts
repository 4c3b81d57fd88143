import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../src/db/client.js';
import { consentEvents, contacts, conversations } from '../src/db/tables.js';
import { importContacts } from '../src/services/contact-import.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { createTestDatabase, postgresUrl } from './helpers/database.js';

// The CSV import of contacts: the service on a real store, then the built CLI as an operator runs it.

let t: TestApp;

const csv = (...lines: string[]) => lines.join('\n') + '\n';
/** The text as a stream in small chunks, so lines and CRLFs straddle chunk boundaries. */
const stream = (text: string, chunk = 7) => Readable.from(Array.from({ length: Math.ceil(text.length / chunk) }, (_, i) => Buffer.from(text.slice(i * chunk, (i + 1) * chunk))));
const run = (org: TestOrg, text: string, options?: { batchSize?: number }) => importContacts(t.db, org.organizationId, stream(text), options);

async function contactOf(org: TestOrg, phoneNumber: string) {
  const [row] = await t.db.select().from(contacts).where(and(eq(contacts.organizationId, org.organizationId), eq(contacts.phoneNumber, phoneNumber)));
  return row;
}

const countOf = async (org: TestOrg) => (await t.db.select().from(contacts).where(eq(contacts.organizationId, org.organizationId))).length;

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t?.close());

describe('importContacts', () => {
  it('creates new numbers and updates known ones: names and tags replace when given, custom fields merge, consent and textability stay', async () => {
    const org = await t.createOrg('Import');
    const old = await t.createContact(org, {
      phoneNumber: '+14155550174',
      firstName: 'Old',
      lastName: 'Name',
      tags: ['keep'],
      customFields: { a: '1', company: 'Old' },
      isOptedIn: false,
      isTextable: false,
    });
    const result = await run(
      org,
      csv(
        'Phone, First Name ,last_name,TAGS,company,plan-tier',
        '(415) 555-0171,Ann,Lee,VIP; customer ;vip,Acme,gold',
        '415.555.0172,Bob,,,,',
        '+14155550173,,,lead,,',
        '4155550174,,New,,Acme,',
      ),
    );
    expect(result).toEqual({ created: 3, updated: 1, skipped: 0, errors: [] });
    expect(await contactOf(org, '+14155550171')).toMatchObject({
      firstName: 'Ann',
      lastName: 'Lee',
      tags: ['vip', 'customer'],
      customFields: { company: 'Acme', 'plan-tier': 'gold' },
      isOptedIn: true,
      // No lookups from an import: textability stays pending.
      isTextable: null,
    });
    expect(await contactOf(org, '+14155550172')).toMatchObject({ firstName: 'Bob', lastName: null, tags: [], customFields: {} });
    expect(await contactOf(org, '+14155550173')).toMatchObject({ firstName: null, tags: ['lead'] });
    const updated = await contactOf(org, '+14155550174');
    expect(updated).toMatchObject({ id: old.id, firstName: 'Old', lastName: 'New', tags: ['keep'], customFields: { a: '1', company: 'Acme' }, isOptedIn: false, isTextable: false });
    expect(updated!.updatedAt.getTime()).toBeGreaterThan(old.updatedAt.getTime());
    // Nothing about consent was written.
    expect(await t.db.select().from(consentEvents).where(eq(consentEvents.organizationId, org.organizationId))).toEqual([]);

    // The same file again changes nothing: every line counts as updated, nothing is written.
    const again = await run(org, csv('phone,firstName', '(415) 555-0171,Ann', '4155550174,'));
    expect(again).toEqual({ created: 0, updated: 2, skipped: 0, errors: [] });
    expect((await contactOf(org, '+14155550174'))!.updatedAt).toEqual(updated!.updatedAt);
  });

  it('applies a number seen again later in the file after the earlier line (the later line wins), also across batches', async () => {
    for (const batchSize of [1000, 2]) {
      const org = await t.createOrg(`Duplicates ${batchSize}`);
      const result = await run(
        org,
        csv(
          'phone,firstName,lastName,tags,color,size',
          '+14155550181,First,Line,a;b,red,',
          '(415) 555-0182,Other,,,,',
          '415-555-0181,Second,,c,,XL',
          '14155550181,Third,,,blue,',
        ),
        { batchSize },
      );
      expect(result, `batch size ${batchSize}`).toEqual({ created: 2, updated: 2, skipped: 0, errors: [] });
      expect(await contactOf(org, '+14155550181')).toMatchObject({ firstName: 'Third', lastName: 'Line', tags: ['c'], customFields: { color: 'blue', size: 'XL' } });
      expect(await countOf(org)).toBe(2);
    }
  });

  it('reports a bad line with its line number and skips it whole; blank lines are skipped silently', async () => {
    const org = await t.createOrg('Bad lines');
    const text = csv(
      'phone,firstName,lastName,tags,note', // 1
      '+14155550191,Good,One,,', // 2
      '12,Bad,Phone,,', // 3
      ',No,Phone,,', // 4
      `+14155550192,Many,Tags,${Array.from({ length: 51 }, (_, i) => `t${i}`).join(';')},`, // 5
      `+14155550193,Long,Tag,${'x'.repeat(65)},`, // 6
      `+14155550194,Long,Note,,${'n'.repeat(1001)}`, // 7
      `+14155550195,${'f'.repeat(201)},Name,,`, // 8
      '+14155550196,Extra,Field,,,surprise', // 9
      '+14155550197,Nul\u0000,Char,,', // 10
      ',,,,', // 11: blank
      '', // 12: blank
      '+14155550198,Trailing,Commas,,,,', // 13: empty extra cells are fine
      '+14155550199,Good "Quoted" Name', // 14: a quote inside a field is text; missing trailing fields are empty
      '+14155550201,"Multi', // 15
      'line",Name,,', // 16
      '+14155550202,Never,"Closed,,', // 17
      '+14155550203,Lost,Line,,', // 18
    );
    const result = await run(org, text);
    expect(result.errors).toEqual([
      { line: 3, error: 'phone is not a valid phone number: "12"' },
      { line: 4, error: 'phone is empty.' },
      { line: 5, error: 'tags: at most 50 tags per contact (got 51).' },
      { line: 6, error: expect.stringMatching(/^tags: a tag must be at most 64 characters/) },
      { line: 7, error: 'custom field.note must be at most 1000 characters.' },
      { line: 8, error: 'Names must be at most 200 characters.' },
      { line: 9, error: 'has 6 fields, the header has 5.' },
      { line: 10, error: 'contains a NUL character.' },
      { line: 17, error: 'a quoted field is never closed; lines 17-18 not imported.' },
    ]);
    expect(result).toMatchObject({ created: 4, updated: 0, skipped: 11 });
    const phones = (await t.db.select({ p: contacts.phoneNumber }).from(contacts).where(eq(contacts.organizationId, org.organizationId))).map((r) => r.p);
    expect(phones.sort()).toEqual(['+14155550191', '+14155550198', '+14155550199', '+14155550201']);
    expect(await contactOf(org, '+14155550201')).toMatchObject({ firstName: 'Multi\nline' });
    expect(await contactOf(org, '+14155550199')).toMatchObject({ firstName: 'Good "Quoted" Name', lastName: null });
  });

  it('counts lines right with CRLF line ends and quoted line breaks, and reads a BOM', async () => {
    const org = await t.createOrg('CRLF');
    const text = '\uFEFFphone,firstName\r\n+14155550211,"Two\r\nLines"\r\n12,Bad\r\n+14155550212,Fine\r\n\r\nnope,Bad\r\n';
    for (const chunk of [1, 2, 3, 1000]) {
      const result = await importContacts(t.db, org.organizationId, stream(text, chunk));
      expect(result.errors.map((e) => e.line), `chunks of ${chunk}`).toEqual([4, 7]);
      expect(result.skipped).toBe(3);
    }
    expect(await contactOf(org, '+14155550211')).toMatchObject({ firstName: 'Two\nLines' });
  });

  it.each([
    ['no phone column', 'firstName,lastName\nAnn,Lee\n', /no phone column/],
    ['a header that is not a usable custom field key', 'phone,Company Name\n+14155550221,Acme\n', /line 1, column 2: "Company Name" is neither/],
    ['a key with a brace', 'phone,a{b\n+14155550221,x\n', /line 1, column 2/],
    ['two phone columns', 'Phone,phone_number\n+14155550221,+14155550222\n', /second phone column/],
    ['two custom columns with one name', 'phone,x,x\n+14155550221,1,2\n', /second column with this name/],
    ['an empty column name', 'phone,,firstName\n+14155550221,x,Ann\n', /line 1, column 2: the header has an empty column name/],
    ['an empty file', '', /The file is empty/],
    ['a byte order mark alone', '\uFEFF', /The file is empty/],
  ])('refuses %s with BAD_USER_INPUT, importing nothing', async (_name, text, message) => {
    const org = await t.createOrg('Header');
    const failure = await run(org, text).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringMatching(message) });
    expect(await countOf(org)).toBe(0);
  });

  it('keeps a contact at 50 custom fields: a line that would add more is reported', async () => {
    const org = await t.createOrg('Fields');
    await t.createContact(org, { phoneNumber: '+14155550231', customFields: Object.fromEntries(Array.from({ length: 49 }, (_, i) => [`k${i}`, 'v'])) });
    const result = await run(org, csv('phone,k0,extra1,extra2', '+14155550231,,x,y', '+14155550231,changed,x,', '+14155550231,,,z'));
    expect(result.errors).toEqual([
      { line: 2, error: 'the contact would have 51 custom fields (at most 50).' },
      { line: 4, error: 'the contact would have 51 custom fields (at most 50).' },
    ]);
    expect(result).toMatchObject({ created: 0, updated: 1, skipped: 2 });
    const fields = (await contactOf(org, '+14155550231'))!.customFields;
    expect(Object.keys(fields)).toHaveLength(50);
    expect(fields).toMatchObject({ k0: 'changed', extra1: 'x' });
  });

  it("links a new contact to the conversation its number already had, and never touches another organization's contacts", async () => {
    const org = await t.createOrg('Linking', { phoneNumber: '+19195550241' });
    const other = await t.createOrg('Other');
    await t.addMessage(org, { phoneNumber: '+14155550241', direction: 'incoming', body: 'who is this?' });
    const theirs = await t.createContact(other, { phoneNumber: '+14155550241', firstName: 'Theirs', tags: ['x'] });
    expect(await run(org, csv('phone,firstName', '+14155550241,Mine'))).toEqual({ created: 1, updated: 0, skipped: 0, errors: [] });
    const mine = await contactOf(org, '+14155550241');
    const [conversation] = await t.db.select().from(conversations).where(and(eq(conversations.organizationId, org.organizationId), eq(conversations.phoneNumber, '+14155550241')));
    expect(conversation!.contactId).toBe(mine!.id);
    expect(await contactOf(other, '+14155550241')).toEqual(theirs);
  });
});

// The built CLI (tests/global-setup.ts builds dist/), a separate process on its own store.
describe('contact import (CLI)', { timeout: 120_000 }, () => {
  const exec = promisify(execFile);
  let env: Record<string, string>;
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-import-'));
    if (postgresUrl) {
      const database = await createTestDatabase();
      env = { DATABASE_URL: database.url!, DATA_DIR: '' };
      cleanup = () => database.close();
    } else {
      env = { DATA_DIR: join(dir, 'store'), DATABASE_URL: '' };
      cleanup = async () => {};
    }
  }, 60_000);
  afterAll(async () => {
    await cleanup?.();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => exec(process.execPath, ['dist/cli.js', ...args], { env: { ...process.env, ...env, LOG_LEVEL: 'info' } });
  async function cliFails(...args: string[]) {
    const failure = await cli(...args).then(
      () => null,
      (error: { code: number; stdout: string }) => error,
    );
    expect(failure, 'expected the command to fail').not.toBeNull();
    return { code: failure!.code, json: JSON.parse(failure!.stdout) };
  }
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('imports a file, prints exactly the JSON result, updates on a second run, and summarizes without --json', async () => {
    const org = JSON.parse((await cli('org', 'create', '--name', 'CLI import', '--json')).stdout).organizationId as string;
    const first = file('first.csv', csv('phone,firstName,lastName,tags,company', '(415) 555-0251,Ann,Lee,vip;customer,Acme', '415.555.0252,Bob,,,', '12,Bad,,,', ',,,,', '415.555.0251,Anne,,,'));
    const created = await cli('contact', 'import', '--org', org, '--file', first, '--json');
    expect(created.stdout).toBe('{"created":2,"updated":1,"skipped":2,"errors":[{"line":4,"error":"phone is not a valid phone number: \\"12\\""}]}\n');

    const second = file('second.csv', csv('Phone,company', '+14155550252,Globex', '+14155550253,Initech'));
    const updated = await cli('contact', 'import', '--org', org, '--file', second, '--json');
    expect(JSON.parse(updated.stdout)).toEqual({ created: 1, updated: 1, skipped: 0, errors: [] });

    const human = await cli('contact', 'import', '--org', org, '--file', first);
    expect(human.stdout).toBe(`Imported ${first}: 0 created, 3 updated, 2 skipped.\n  line 4: phone is not a valid phone number: "12"\n`);

    // What the store holds, read once the CLI has exited.
    const database = postgresUrl ? await createDatabase({ kind: 'postgres', url: env.DATABASE_URL! }) : await createDatabase({ kind: 'pglite', dataDir: env.DATA_DIR });
    try {
      const rows = await database.db.select().from(contacts).where(eq(contacts.organizationId, org)).orderBy(contacts.phoneNumber);
      expect(rows.map((r) => [r.phoneNumber, r.firstName, r.lastName, r.tags, r.customFields, r.isOptedIn, r.isTextable])).toEqual([
        ['+14155550251', 'Anne', 'Lee', ['vip', 'customer'], { company: 'Acme' }, true, null],
        ['+14155550252', 'Bob', null, [], { company: 'Globex' }, true, null],
        ['+14155550253', null, null, [], { company: 'Initech' }, true, null],
      ]);
    } finally {
      await database.close();
    }
  });

  it('fails with a JSON error and exit status 1 for a missing file, a bad header or an unknown organization', async () => {
    const org = JSON.parse((await cli('org', 'create', '--name', 'CLI import errors', '--json')).stdout).organizationId as string;
    const missing = await cliFails('contact', 'import', '--org', org, '--file', join(dir, 'nope.csv'), '--json');
    expect(missing).toMatchObject({ code: 1, json: { error: { code: 'BAD_USER_INPUT', message: expect.stringContaining('ENOENT') } } });
    const directory = await cliFails('contact', 'import', '--org', org, '--file', dir, '--json');
    expect(directory.json.error.code).toBe('BAD_USER_INPUT');
    const header = await cliFails('contact', 'import', '--org', org, '--file', file('header.csv', 'name\nAnn\n'), '--json');
    expect(header.json.error).toMatchObject({ code: 'BAD_USER_INPUT', message: expect.stringContaining('no phone column') });
    const unknown = await cliFails('contact', 'import', '--org', '00000000-0000-0000-0000-000000000000', '--file', file('ok.csv', 'phone\n+14155550261\n'), '--json');
    expect(unknown.json.error.code).toBe('NOT_FOUND');
  });
});
