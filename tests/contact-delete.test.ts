import { randomUUID } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditEvents,
  consentEvents,
  contacts,
  conversations,
  messages,
  messageStatusEvents,
  shortLinks,
} from '../src/db/tables.js';
import { noteMentions, notes } from '../src/db/teamwork-tables.js';
import { createTestApp, type TestApp, type TestMember, type TestOrg } from './helpers/app.js';

// deleteContact: roles, the refusal of a contact with a conversation, and the erase of its whole history in
// one transaction, with the short links its messages carried still redirecting.

let t: TestApp;
let org: TestOrg;
let owner: TestMember;
let admin: TestMember;
let agent: TestMember;
let seq = 0;

const DELETE = `mutation($id: ID!, $erase: Boolean) { deleteContact(id: $id, eraseHistory: $erase) {
  __typename ... on Error { code message } ... on ContactHasConversationError { phoneNumber }
  ... on DeleteContactPayload { deletedContactId deletedContactUuid erasedConversationId } } }`;
const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on Error { code message }
  ... on SendReplyPayload { sent: message { uuid links { shortUrl } } } } }`;
const UPDATE = `mutation($input: UpdateContactInput!) { updateContact(input: $input) { __typename } }`;

const globalId = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString('base64');

/** A fresh number whose last digit is not 0 (the simulated lookup's landline rule). */
function phone(): string {
  do seq += 1;
  while (seq % 10 === 0);
  return `+1919555${5000 + seq}`;
}

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * A contact with a whole history: an inbound message, a reply with a short link (and its delivery statuses),
 * a note mentioning the agent, and an opt-out and opt-in in its consent history.
 */
async function thread() {
  const phoneNumber = phone();
  const contact = await t.createContact(org, { phoneNumber, firstName: 'Erin', isTextable: true });
  await t.addMessage(org, { phoneNumber, direction: 'incoming', body: 'hi' });
  const sent = await t.graphql(SEND, { input: { phoneNumber, message: 'See https://example.com/a/rather/long/path/to/shorten?x=1' } }, owner);
  expect(sent.body.data?.sendReply?.__typename, JSON.stringify(sent.body)).toBe('SendReplyPayload');
  const messageId: string = sent.body.data.sendReply.sent.uuid;
  const shortUrl: string = sent.body.data.sendReply.sent.links[0].shortUrl;
  await waitFor(
    () => t.db.select().from(messageStatusEvents).where(eq(messageStatusEvents.messageId, messageId)),
    (rows) => rows.some((row) => row.status === 'delivered'),
  );
  const [conversation] = await t.db.select().from(conversations).where(eq(conversations.phoneNumber, phoneNumber));
  const noteId = randomUUID();
  await t.db.insert(notes).values({ organizationId: org.organizationId, id: noteId, conversationId: conversation!.id, authorUserId: owner.userId, body: '@agent call back' });
  await t.db.insert(noteMentions).values({ organizationId: org.organizationId, noteId, userId: agent.userId, createdAt: new Date() });
  for (const isOptedIn of [false, true]) await t.graphql(UPDATE, { input: { id: contact.id, isOptedIn } }, owner);
  return { contact, conversationId: conversation!.id, messageId, noteId, shortUrl };
}

/** What is left of a thread, row counts by table. */
async function remains(x: Awaited<ReturnType<typeof thread>>) {
  const count = async (rows: Promise<unknown[]>) => (await rows).length;
  const messageIds = (await t.db.select({ id: messages.id }).from(messages).where(eq(messages.conversationId, x.conversationId))).map((m) => m.id);
  return {
    contact: await count(t.db.select().from(contacts).where(eq(contacts.id, x.contact.id))),
    conversation: await count(t.db.select().from(conversations).where(eq(conversations.id, x.conversationId))),
    messages: messageIds.length,
    statusEvents: await count(t.db.select().from(messageStatusEvents).where(eq(messageStatusEvents.messageId, x.messageId))),
    notes: await count(t.db.select().from(notes).where(eq(notes.conversationId, x.conversationId))),
    mentions: await count(t.db.select().from(noteMentions).where(eq(noteMentions.noteId, x.noteId))),
    consentEvents: await count(t.db.select().from(consentEvents).where(eq(consentEvents.contactId, x.contact.id))),
  };
}

const NOTHING_LEFT = { contact: 0, conversation: 0, messages: 0, statusEvents: 0, notes: 0, mentions: 0, consentEvents: 0 };

async function auditOf(contactId: string) {
  return t.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.organizationId, org.organizationId), eq(auditEvents.action, 'contact.deleted'), eq(auditEvents.objectId, contactId)));
}

beforeAll(async () => {
  t = await createTestApp({ PUBLIC_BASE_URL: 'https://sms.example.test', SIMULATED_STATUS_DELAY_MS: '10' });
  org = await t.createOrg('Erasers', { credits: 1_000, phoneNumber: '+19195550111' });
  owner = await t.addMember(org, { email: 'owner@erase.example.com', role: 'owner' });
  admin = await t.addMember(org, { email: 'admin@erase.example.com', role: 'admin' });
  agent = await t.addMember(org, { email: 'agent@erase.example.com', role: 'agent' });
});
afterAll(() => t?.close());

describe('deleteContact', () => {
  it('is FORBIDDEN to an AGENT, deleting nothing', async () => {
    const lone = await t.createContact(org, { phoneNumber: phone() });
    const x = await thread();
    for (const [id, erase] of [[lone.id, null], [x.contact.id, true]] as const) {
      const res = await t.graphql(DELETE, { id, erase }, agent);
      expect(res.body.errors?.[0]?.extensions?.code, JSON.stringify(res.body)).toBe('FORBIDDEN');
    }
    expect(await t.db.select().from(contacts).where(eq(contacts.id, lone.id))).toHaveLength(1);
    expect(await remains(x)).toEqual({ contact: 1, conversation: 1, messages: 2, statusEvents: expect.any(Number), notes: 1, mentions: 1, consentEvents: 2 });
  });

  it('refuses a contact with a conversation unless eraseHistory is true (CONTACT_HAS_CONVERSATION), deleting nothing', async () => {
    const x = await thread();
    const before = await remains(x);
    for (const erase of [undefined, null, false]) {
      const res = await t.graphql(DELETE, { id: globalId('Contact', x.contact.id), erase }, admin);
      expect(res.body.data.deleteContact).toEqual({
        __typename: 'ContactHasConversationError',
        code: 'CONTACT_HAS_CONVERSATION',
        message: expect.stringContaining('eraseHistory: true'),
        phoneNumber: x.contact.phoneNumber,
      });
    }
    expect(await remains(x)).toEqual(before);
    expect(await auditOf(x.contact.id)).toEqual([]);
  });

  it('deletes a contact without a conversation (ADMIN), with its consent history, and audits it', async () => {
    const lone = await t.createContact(org, { phoneNumber: phone(), firstName: 'Lone' });
    await t.graphql(UPDATE, { input: { id: lone.id, isOptedIn: false } }, admin);
    expect(await t.db.select().from(consentEvents).where(eq(consentEvents.contactId, lone.id))).toHaveLength(1);
    const res = await t.graphql(DELETE, { id: lone.id }, admin);
    expect(res.body.data.deleteContact).toEqual({
      __typename: 'DeleteContactPayload',
      deletedContactId: globalId('Contact', lone.id),
      deletedContactUuid: lone.id,
      erasedConversationId: null,
    });
    expect(await t.db.select().from(contacts).where(eq(contacts.id, lone.id))).toEqual([]);
    expect(await t.db.select().from(consentEvents).where(eq(consentEvents.contactId, lone.id))).toEqual([]);
    const [audit] = await auditOf(lone.id);
    expect(audit).toMatchObject({ actorUserId: admin.userId, objectType: 'contact', data: { eraseHistory: false, conversationId: null } });
    // No phone number in the log of a deleted person.
    expect(JSON.stringify(audit!.data)).not.toContain(lone.phoneNumber.slice(2));
    const node = await t.graphql(`query($id: ID!) { node(id: $id) { id } }`, { id: globalId('Contact', lone.id) }, admin);
    expect(node.body.data.node).toBeNull();
  });

  it('with eraseHistory (OWNER) deletes the contact, conversation, messages, statuses, notes, mentions and consent history; short links still redirect', async () => {
    const x = await thread();
    const kept = await thread();
    const keptBefore = await remains(kept);
    const res = await t.graphql(DELETE, { id: x.contact.id, erase: true }, owner);
    expect(res.body.data.deleteContact).toEqual({
      __typename: 'DeleteContactPayload',
      deletedContactId: globalId('Contact', x.contact.id),
      deletedContactUuid: x.contact.id,
      erasedConversationId: globalId('Conversation', x.conversationId),
    });
    expect(await remains(x)).toEqual(NOTHING_LEFT);
    expect(await remains(kept)).toEqual(keptBefore);

    const link = await fetch(`${t.url}/l/${x.shortUrl.split('/l/')[1]}`, { redirect: 'manual' });
    expect(link.status).toBe(302);
    expect(link.headers.get('location')).toBe('https://example.com/a/rather/long/path/to/shorten?x=1');
    expect(await t.db.select().from(shortLinks).where(eq(shortLinks.messageId, x.messageId))).toHaveLength(1);

    const [audit] = await auditOf(x.contact.id);
    expect(audit).toMatchObject({
      actorUserId: owner.userId,
      data: { eraseHistory: true, conversationId: x.conversationId, erased: { messages: 2, notes: 1 } },
    });
    const gone = await t.graphql(`query($p: String!) { conversation(phoneNumber: $p) { id } }`, { p: x.contact.phoneNumber }, owner);
    expect(gone.body.data.conversation).toBeNull();
    // The number may write again: a new contact and a new thread, nothing of the old one.
    await t.addMessage(org, { phoneNumber: x.contact.phoneNumber, direction: 'incoming', body: 'me again' });
    const fresh = await t.graphql(`query($p: String!) { conversation(phoneNumber: $p) { unreadCount messages(first: 10) { edges { node { body } } } } }`, { p: x.contact.phoneNumber }, owner);
    expect(fresh.body.data.conversation.messages.edges.map((e: any) => e.node.body)).toEqual(['me again']);
  });

  it('erases in one transaction: a failure at its last step leaves everything in place', async () => {
    const x = await thread();
    const before = await remains(x);
    // The audit row is the erase's last write; make the database refuse it.
    await t.db.execute(sql.raw(`create function refuse_contact_delete() returns trigger language plpgsql as $$
      begin if new.action = 'contact.deleted' then raise exception 'refused by test'; end if; return new; end $$`));
    await t.db.execute(sql.raw(`create trigger refuse_contact_delete before insert on audit_events for each row execute function refuse_contact_delete()`));
    try {
      const res = await t.graphql(DELETE, { id: x.contact.id, erase: true }, owner);
      expect(res.body.errors?.[0]?.message, JSON.stringify(res.body)).toBe('Unexpected error.');
    } finally {
      await t.db.execute(sql.raw('drop trigger refuse_contact_delete on audit_events'));
      await t.db.execute(sql.raw('drop function refuse_contact_delete()'));
    }
    expect(await remains(x)).toEqual(before);
    expect(before).toMatchObject({ contact: 1, conversation: 1, messages: 2, notes: 1, mentions: 1, consentEvents: 2 });
  });

  it("answers CONTACT_NOT_FOUND for an unknown id, a malformed one, and another organization's contact; an integration token may delete", async () => {
    const elsewhere = await t.createOrg('Elsewhere');
    const theirs = await t.createContact(elsewhere, { phoneNumber: phone() });
    for (const id of [randomUUID(), 'nope', globalId('Conversation', theirs.id), theirs.id]) {
      const res = await t.graphql(DELETE, { id, erase: true }, owner);
      expect(res.body.data.deleteContact, id).toMatchObject({ __typename: 'ContactNotFoundError', code: 'CONTACT_NOT_FOUND' });
    }
    expect(await t.db.select().from(contacts).where(eq(contacts.id, theirs.id))).toHaveLength(1);
    const mine = await t.createContact(org, { phoneNumber: phone() });
    const res = await t.graphql(DELETE, { id: mine.id }, org);
    expect(res.body.data.deleteContact.__typename).toBe('DeleteContactPayload');
    const [audit] = await auditOf(mine.id);
    expect(audit).toMatchObject({ actorUserId: null, actorTokenId: expect.any(String) });
    expect(await t.db.select().from(contacts).where(inArray(contacts.id, [mine.id]))).toEqual([]);
  });
});
