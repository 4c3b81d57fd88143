import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isoString } from '../src/schema/date-time.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// The inbox reads only the columns its selection shows (src/services/conversations.ts listColumns): a
// row read that way must never answer a field that needs more, however deep the same row is asked for again.

let t: TestApp;
let acme: TestOrg;
const base = Date.parse('2026-03-01T12:00:00.000Z');

beforeAll(async () => {
  t = await createTestApp();
  acme = await t.createOrg('Acme');
  await t.createContact(acme, { phoneNumber: '+19195551234', firstName: 'Jane', lastName: 'Smith', isTextable: true });
  await t.addMessage(acme, {
    phoneNumber: '+19195551234',
    direction: 'outgoing',
    body: 'Hi Jane',
    status: 'sent',
    createdAt: new Date(base),
  });
  await t.addMessage(acme, { phoneNumber: '+19195551234', direction: 'incoming', body: 'Hello!', createdAt: new Date(base + 60_000) });
});
afterAll(() => t.close());

describe('inbox column selection', () => {
  it('answers every field of rows asked for again below a narrow inbox selection', async () => {
    const narrow = `{ conversations(first: 5) { edges { node { phoneNumber contact { firstName } lastMessage { body }
      messages(first: 2) { edges { node { body conversation { unreadCount isArchived lastMessageDirection
        contact { lastName isOptedIn isTextable createdAt } lastMessage { direction status segments createdAt } } } } } } } } }`;
    const wide = `{ conversations(first: 5) { edges { node { phoneNumber unreadCount isArchived lastMessageDirection
      contact { firstName lastName isOptedIn isTextable createdAt } lastMessage { body direction status segments createdAt } } } } }`;
    for (let round = 0; round < 2; round++) {
      // Twice: the second request of a document is served by the fast path.
      const [a, b] = await Promise.all([t.graphql(narrow, {}, acme), t.graphql(wide, {}, acme)]);
      expect(a.body.errors).toBeUndefined();
      expect(b.body.errors).toBeUndefined();
      const listed = b.body.data.conversations.edges[0].node;
      const node = a.body.data.conversations.edges[0].node;
      expect(node).toMatchObject({ phoneNumber: '+19195551234', contact: { firstName: 'Jane' }, lastMessage: { body: 'Hello!' } });
      const again = node.messages.edges[0].node.conversation;
      expect(again).toEqual({
        unreadCount: listed.unreadCount,
        isArchived: false,
        lastMessageDirection: 'incoming',
        contact: { lastName: 'Smith', isOptedIn: true, isTextable: true, createdAt: listed.contact.createdAt },
        lastMessage: { direction: 'INCOMING', status: null, segments: listed.lastMessage.segments, createdAt: '2026-03-01T12:01:00.000Z' },
      });
    }
  });
});

describe('DateTime text', () => {
  it('is toISOString, byte for byte', () => {
    const times = [
      0, 1, 999, 86_399_999, 951_782_400_000, 951_868_800_000, 1_748_778_813_121, 253_402_300_799_999, -1, -62_198_755_200_000,
      253_402_300_800_000,
    ];
    for (let i = 0; i < 20_000; i++) times.push(Math.floor(Math.random() * 253_402_300_800_000));
    for (const ms of times) expect(isoString(new Date(ms))).toBe(new Date(ms).toISOString());
    expect(() => isoString(new Date(Number.NaN))).toThrow(RangeError);
  });
});
