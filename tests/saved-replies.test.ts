import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { contacts, messages, organizations } from '../src/db/tables.js';
import { savedReplies } from '../src/db/teamwork-tables.js';
import { withSavedReply } from '../src/services/saved-replies.js';
import { createTestApp, type TestApp, type TestMember, type TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';

// Saved replies over GraphQL: CRUD and roles, typed errors, and sending or previewing one with its merge
// fields filled in. Sends go through the real Twilio SDK to the fake Twilio, which shows the text it got.

const PUBLIC = 'https://gateway.example.test';
let fake: FakeTwilio;
let t: TestApp;
let acme: TestOrg;
let other: TestOrg;
let owner: TestMember;
let admin: TestMember;
let agent: TestMember;
let seq = 0;

const nextPhone = () => {
  do seq += 1;
  while (seq % 10 === 0);
  return `+1415555${4000 + seq}`;
};

const FIELDS = `id uuid name body createdAt updatedAt createdBy { id email }`;
const LIST = `{ savedReplies { ${FIELDS} } }`;
const CREATE = `mutation($input: CreateSavedReplyInput!) {
  createSavedReply(input: $input) {
    __typename
    ... on Error { code message }
    ... on InvalidSavedReplyError { field }
    ... on SavedReplyNameTakenError { field }
    ... on CreateSavedReplyPayload { savedReply { ${FIELDS} } }
  }
}`;
const UPDATE = `mutation($id: ID!, $input: UpdateSavedReplyInput!) {
  updateSavedReply(id: $id, input: $input) {
    __typename
    ... on Error { code message }
    ... on InvalidSavedReplyError { field }
    ... on UpdateSavedReplyPayload { savedReply { ${FIELDS} } }
  }
}`;
const DELETE = `mutation($id: ID!) {
  deleteSavedReply(id: $id) { __typename ... on Error { code message } ... on DeleteSavedReplyPayload { savedReply { id name } } }
}`;
const SEND = `mutation($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on Error { code message }
    ... on SendReplyPayload { segments encoding creditsCharged sent: message { uuid body } }
  }
}`;
const PREVIEW = `query($input: SendReplyInput!) {
  previewReply(input: $input) { text encoding segments route credits error { __typename code } }
}`;

async function create(as: TestOrg, input: { name: string; body: string }) {
  const res = await t.graphql(CREATE, { input }, as);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.createSavedReply;
}

async function created(as: TestOrg, input: { name: string; body: string }) {
  const result = await create(as, input);
  expect(result.__typename).toBe('CreateSavedReplyPayload');
  return result.savedReply as { id: string; uuid: string; name: string; body: string; updatedAt: string; createdBy: { email: string } | null };
}

async function list(as: TestOrg) {
  const res = await t.graphql(LIST, {}, as);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.savedReplies as Array<{ id: string; name: string; body: string }>;
}

async function send(input: Record<string, unknown>, as: TestOrg = acme) {
  const res = await t.graphql(SEND, { input }, as);
  expect(res.body.errors).toBeUndefined();
  return res.body.data.sendReply;
}

async function balance(org: TestOrg): Promise<number> {
  const [row] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, org.organizationId));
  return row!.credits;
}

async function messageCount(org: TestOrg): Promise<number> {
  const [row] = await t.db.select({ n: sql<number>`count(*)::int` }).from(messages).where(eq(messages.organizationId, org.organizationId));
  return row!.n;
}

async function rowCount(org: TestOrg): Promise<number> {
  const [row] = await t.db
    .select({ n: sql<number>`count(*)::int` })
    .from(savedReplies)
    .where(eq(savedReplies.organizationId, org.organizationId));
  return row!.n;
}

/** A textable contact; custom fields are set with SQL, as the contacts API may not take them yet. */
async function contact(org: TestOrg, names: { firstName?: string; lastName?: string } = {}, customFields?: Record<string, string>) {
  const row = await t.createContact(org, { phoneNumber: nextPhone(), isTextable: true, ...names });
  if (customFields) {
    await t.db
      .update(contacts)
      .set({ customFields })
      .where(and(eq(contacts.organizationId, org.organizationId), eq(contacts.id, row.id)));
  }
  return row;
}

beforeAll(async () => {
  fake = await startFakeTwilio();
  t = await createTestApp({ ...fake.env(), PUBLIC_BASE_URL: PUBLIC, STATUS_CALLBACK_WAIT_MS: '3000' });
  acme = await t.createOrg('Acme', { credits: 1000, phoneNumber: '+14155550100' });
  other = await t.createOrg('Other', { credits: 1000, phoneNumber: '+14155550200' });
  owner = await t.addMember(acme, { email: 'owner@acme.test', role: 'owner' });
  admin = await t.addMember(acme, { email: 'admin@acme.test', role: 'admin' });
  agent = await t.addMember(acme, { email: 'agent@acme.test', role: 'agent' });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});
beforeEach(() => fake.reset());

describe('saved replies: create, list, update, delete', () => {
  it('lets ADMIN and OWNER manage them; any member or token lists them by name', async () => {
    const byAdmin = await created(admin, { name: '  welcome  ', body: ' Hi {{firstName}}!\nWelcome. ' });
    expect(byAdmin).toMatchObject({ name: 'welcome', body: 'Hi {{firstName}}!\nWelcome.', createdBy: { email: 'admin@acme.test' } });
    expect(Buffer.from(byAdmin.id, 'base64').toString()).toBe(`SavedReply:${byAdmin.uuid}`);
    const byOwner = await created(owner, { name: 'Away', body: 'We are away until Monday.' });
    expect(byOwner.createdBy).toEqual({ id: expect.any(String), email: 'owner@acme.test' });
    // An integration token is no person.
    const byToken = await created(acme, { name: 'Closing', body: 'Thanks, {{firstName}}.' });
    expect(byToken.createdBy).toBeNull();

    for (const reader of [agent, admin, acme]) {
      expect((await list(reader)).map((r) => r.name)).toEqual(['Away', 'Closing', 'welcome']);
    }
    // Another organization sees none of them.
    expect(await list(other)).toEqual([]);

    // Node lookup, scoped to the organization.
    const NODE = `query($id: ID!) { node(id: $id) { __typename ... on SavedReply { name } } }`;
    expect((await t.graphql(NODE, { id: byAdmin.id }, agent)).body.data.node).toEqual({ __typename: 'SavedReply', name: 'welcome' });
    expect((await t.graphql(NODE, { id: byAdmin.id }, other)).body.data.node).toBeNull();

    // Update: a field left out stays; the Node id or the raw UUID names it.
    const renamed = await t.graphql(UPDATE, { id: byAdmin.id, input: { name: 'Welcome!' } }, owner);
    expect(renamed.body.data.updateSavedReply).toMatchObject({
      __typename: 'UpdateSavedReplyPayload',
      savedReply: { name: 'Welcome!', body: 'Hi {{firstName}}!\nWelcome.' },
    });
    const rewritten = await t.graphql(UPDATE, { id: byAdmin.uuid, input: { body: 'Hello {{ firstName }}', name: null } }, acme);
    const after = rewritten.body.data.updateSavedReply.savedReply;
    expect(after).toMatchObject({ name: 'Welcome!', body: 'Hello {{ firstName }}', createdBy: { email: 'admin@acme.test' } });
    expect(Date.parse(after.updatedAt)).toBeGreaterThanOrEqual(Date.parse(byAdmin.updatedAt));
    // Renaming to its own name in another case is no conflict.
    const recased = await t.graphql(UPDATE, { id: byAdmin.id, input: { name: 'WELCOME!' } }, admin);
    expect(recased.body.data.updateSavedReply.savedReply.name).toBe('WELCOME!');

    const deleted = await t.graphql(DELETE, { id: byOwner.id }, admin);
    expect(deleted.body.data.deleteSavedReply).toEqual({ __typename: 'DeleteSavedReplyPayload', savedReply: { id: byOwner.id, name: 'Away' } });
    expect((await list(agent)).map((r) => r.name)).toEqual(['Closing', 'WELCOME!']);
    const again = await t.graphql(DELETE, { id: byOwner.id }, admin);
    expect(again.body.data.deleteSavedReply).toMatchObject({ __typename: 'SavedReplyNotFoundError', code: 'SAVED_REPLY_NOT_FOUND' });

    for (const row of await list(acme)) await t.graphql(DELETE, { id: row.id }, acme);
    expect(await rowCount(acme)).toBe(0);
  });

  it('refuses AGENT writes with FORBIDDEN, changing nothing', async () => {
    const reply = await created(admin, { name: 'Agent-proof', body: 'Original' });
    const before = await rowCount(acme);
    const attempts = [
      await t.graphql(CREATE, { input: { name: 'By agent', body: 'x' } }, agent),
      await t.graphql(UPDATE, { id: reply.id, input: { body: 'Changed' } }, agent),
      await t.graphql(DELETE, { id: reply.id }, agent),
    ];
    for (const res of attempts) {
      expect(res.status).toBe(200);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    }
    expect(await rowCount(acme)).toBe(before);
    expect((await list(agent)).find((r) => r.id === reply.id)?.body).toBe('Original');
  });

  it('answers a taken name, an empty or too long name or body, and an unknown id with typed errors, changing nothing', async () => {
    const first = await created(admin, { name: 'Hours', body: 'Open 9 to 5.' });
    const second = await created(admin, { name: 'Directions', body: 'Take exit 4.' });
    const before = await rowCount(acme);

    // Names are unique per organization, ignoring case.
    expect(await create(admin, { name: 'HOURS', body: 'Other text' })).toMatchObject({
      __typename: 'SavedReplyNameTakenError',
      code: 'SAVED_REPLY_NAME_TAKEN',
      field: 'name',
    });
    const renameOnto = await t.graphql(UPDATE, { id: second.id, input: { name: ' hours ' } }, admin);
    expect(renameOnto.body.data.updateSavedReply).toMatchObject({ __typename: 'SavedReplyNameTakenError', code: 'SAVED_REPLY_NAME_TAKEN' });
    // Another organization may use the same name.
    expect((await create(other, { name: 'Hours', body: 'Closed.' })).__typename).toBe('CreateSavedReplyPayload');

    const invalid: Array<[{ name: string; body: string }, string]> = [
      [{ name: '', body: 'Text' }, 'name'],
      [{ name: '   ', body: 'Text' }, 'name'],
      [{ name: 'n'.repeat(101), body: 'Text' }, 'name'],
      [{ name: 'Empty', body: '' }, 'body'],
      [{ name: 'Blank', body: ' \n\t ' }, 'body'],
      [{ name: 'Long', body: 'b'.repeat(1601) }, 'body'],
      // Code points, as Twilio counts them: 801 emoji are 1,602 UTF-16 units but still over.
      [{ name: 'Emoji', body: '🎉'.repeat(1601) }, 'body'],
    ];
    for (const [input, field] of invalid) {
      expect(await create(admin, input), JSON.stringify(input).slice(0, 60)).toMatchObject({
        __typename: 'InvalidSavedReplyError',
        code: 'INVALID_SAVED_REPLY',
        field,
      });
    }
    const emptied = await t.graphql(UPDATE, { id: first.id, input: { body: '  ' } }, admin);
    expect(emptied.body.data.updateSavedReply).toMatchObject({ __typename: 'InvalidSavedReplyError', field: 'body' });
    expect(await rowCount(acme)).toBe(before);
    expect((await list(admin)).find((r) => r.id === first.id)).toMatchObject({ name: 'Hours', body: 'Open 9 to 5.' });

    // At the limits exactly.
    const longest = await created(admin, { name: 'n'.repeat(100), body: '🎉'.repeat(1600) });
    expect([...longest.body]).toHaveLength(1600);

    const theirs = (await list(other))[0]!;
    for (const id of [randomUUID(), 'not-an-id', Buffer.from('SavedReply:nope').toString('base64'), theirs.id]) {
      const updated = await t.graphql(UPDATE, { id, input: { body: 'Mine now' } }, admin);
      expect(updated.body.data.updateSavedReply, id).toMatchObject({ __typename: 'SavedReplyNotFoundError', code: 'SAVED_REPLY_NOT_FOUND' });
      const deleted = await t.graphql(DELETE, { id }, admin);
      expect(deleted.body.data.deleteSavedReply, id).toMatchObject({ __typename: 'SavedReplyNotFoundError' });
    }
    expect((await list(other))[0]).toEqual(theirs);
  });
});

describe('sending and previewing a saved reply', () => {
  it('sends the text rendered for the contact: the provider gets it, segments and credits count it', async () => {
    const pat = await contact(acme, { firstName: 'Pat', lastName: 'Lee' }, { plan: 'Gold', note: 'n'.repeat(100) });
    // The template fits one segment; the rendered text needs two.
    const template = `Hi {{ firstName }} {{lastName}}, your {{custom.plan}} plan renews soon. {{custom.note}} Reply here from {{phone}}{{unknown}}.`;
    const reply = await created(admin, { name: 'Renewal', body: template });
    expect(template.length).toBeLessThanOrEqual(160);
    const rendered = `Hi Pat Lee, your Gold plan renews soon. ${'n'.repeat(100)} Reply here from ${pat.phoneNumber}.`;
    expect(rendered.length).toBeGreaterThan(160);

    const before = await balance(acme);
    const result = await send({ phoneNumber: pat.phoneNumber, savedReplyId: reply.id }, agent);
    expect(result).toMatchObject({ __typename: 'SendReplyPayload', segments: 2, encoding: 'GSM-7', creditsCharged: 2, sent: { body: rendered } });
    expect(fake.sent.map((m) => m.body)).toEqual([rendered]);
    expect(await balance(acme)).toBe(before - 2);
  });

  it('renders before links are shortened, and blanks what the contact lacks', async () => {
    const anon = await contact(acme, {}, { link: 'https://example.com/offers/spring' });
    const reply = await created(admin, { name: 'Offer', body: 'Hi {{firstName}}{{lastName}}! See {{custom.link}} ({{custom.code}})' });
    const result = await send({ phoneNumber: anon.phoneNumber, savedReplyId: reply.uuid });
    expect(result.__typename).toBe('SendReplyPayload');
    expect(result.sent.body).toMatch(new RegExp(`^Hi ! See ${PUBLIC}/l/[A-Za-z0-9_-]+ \\(\\)$`));
    expect(fake.sent.map((m) => m.body)).toEqual([result.sent.body]);

    // Without custom fields at all.
    const bare = await contact(acme);
    const plain = await send({ phoneNumber: bare.phoneNumber, savedReplyId: reply.id });
    expect(plain.sent.body).toBe('Hi ! See  ()');
  });

  it('refuses message and savedReplyId together, or neither, with BAD_USER_INPUT; sends and charges nothing', async () => {
    const pat = await contact(acme, { firstName: 'Pat' });
    const reply = await created(admin, { name: 'Both', body: 'Saved text' });
    const [credits, count] = [await balance(acme), await messageCount(acme)];
    for (const input of [
      { phoneNumber: pat.phoneNumber, message: 'Typed text', savedReplyId: reply.id },
      { phoneNumber: pat.phoneNumber, message: '', savedReplyId: reply.id },
      { phoneNumber: pat.phoneNumber },
      { phoneNumber: pat.phoneNumber, message: null, savedReplyId: null },
    ]) {
      const res = await t.graphql(SEND, { input }, acme);
      expect(res.body.errors?.[0]?.extensions?.code, JSON.stringify(input)).toBe('BAD_USER_INPUT');
      const previewed = await t.graphql(PREVIEW, { input }, acme);
      expect(previewed.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    expect(fake.sent).toEqual([]);
    expect([await balance(acme), await messageCount(acme)]).toEqual([credits, count]);
  });

  it("answers an unknown, deleted or other organization's saved reply with SavedReplyNotFoundError; sends and charges nothing", async () => {
    const pat = await contact(acme, { firstName: 'Pat' });
    const gone = await created(admin, { name: 'Gone soon', body: 'Bye' });
    await t.graphql(DELETE, { id: gone.id }, admin);
    const theirs = await created(other, { name: 'Theirs', body: 'Not yours, {{firstName}}' });
    const [credits, count] = [await balance(acme), await messageCount(acme)];
    for (const savedReplyId of [randomUUID(), gone.id, theirs.id, theirs.uuid, 'garbage']) {
      const result = await send({ phoneNumber: pat.phoneNumber, savedReplyId });
      expect(result, savedReplyId).toMatchObject({ __typename: 'SavedReplyNotFoundError', code: 'SAVED_REPLY_NOT_FOUND' });
      const previewed = await t.graphql(PREVIEW, { input: { phoneNumber: pat.phoneNumber, savedReplyId } }, acme);
      expect(previewed.body.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', errorCode: 'SAVED_REPLY_NOT_FOUND' });
    }
    expect(fake.sent).toEqual([]);
    expect([await balance(acme), await messageCount(acme)]).toEqual([credits, count]);
  });

  it('previews the rendered text with its segments and credits, storing and sending nothing', async () => {
    const pat = await contact(acme, { firstName: 'Zoe' }, { tier: 'Platinum 💎' });
    const reply = await created(admin, { name: 'Preview me', body: 'Hello {{firstName}}, {{custom.tier}} member!' });
    const count = await messageCount(acme);
    const res = await t.graphql(PREVIEW, { input: { phoneNumber: pat.phoneNumber, savedReplyId: reply.id } }, agent);
    expect(res.body.errors).toBeUndefined();
    // The emoji comes from the contact's custom field: the rendered text is UCS-2.
    expect(res.body.data.previewReply).toEqual({
      text: 'Hello Zoe, Platinum 💎 member!',
      encoding: 'UCS-2',
      segments: 1,
      route: 'SMS',
      credits: 1,
      error: null,
    });
    // A contact that does not exist: blanks, and the error sendReply would give.
    const nobody = await t.graphql(PREVIEW, { input: { phoneNumber: nextPhone(), savedReplyId: reply.id } }, agent);
    expect(nobody.body.data.previewReply).toMatchObject({ text: 'Hello ,  member!', error: { __typename: 'ContactNotFoundError' } });
    expect(await messageCount(acme)).toBe(count);
    expect(fake.sent).toEqual([]);
  });

  it('replays an idempotent retry of a saved reply without sending again', async () => {
    const pat = await contact(acme, { firstName: 'Pat' });
    const reply = await created(admin, { name: 'Once', body: 'Only once, {{firstName}}.' });
    const input = { phoneNumber: pat.phoneNumber, savedReplyId: reply.id, idempotencyKey: `saved-${randomUUID()}` };
    const first = await send(input);
    const second = await send(input);
    expect(second.sent.uuid).toBe(first.sent.uuid);
    expect(fake.sent.map((m) => m.body)).toEqual(['Only once, Pat.']);
  });

  it('reads the saved reply and the contact in one statement, and none for a plain message', async () => {
    const pat = await contact(acme, { firstName: 'Pat' }, { plan: 'Gold' });
    const reply = await created(admin, { name: 'One read', body: '{{firstName}}: {{custom.plan}}' });
    let stop = t.database.statementLog.record();
    const input = await withSavedReply(t.deps, acme.organizationId, { phoneNumber: pat.phoneNumber, savedReplyId: reply.uuid, forceRoute: 'SMS' });
    expect(stop()).toHaveLength(1);
    expect(input).toEqual({ phoneNumber: pat.phoneNumber, message: 'Pat: Gold', forceRoute: 'SMS' });
    stop = t.database.statementLog.record();
    expect(await withSavedReply(t.deps, acme.organizationId, { phoneNumber: pat.phoneNumber, message: 'Typed' })).toEqual({
      phoneNumber: pat.phoneNumber,
      message: 'Typed',
    });
    expect(stop()).toHaveLength(0);
  });
});
