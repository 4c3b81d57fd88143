import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages, organizations } from '../src/db/tables.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// Mutations on the GraphQL fast path (src/http/graphql-fast-mutation.ts): run once, on the fast path, and
// answered as Yoga answers. Each case sends a mutation through Yoga first, then the same document through
// the fast path, and compares the answers (ids and times aside when the two calls made two messages) and
// what was stored: a mutation whose answer carries errors must still have run exactly once.

let t: TestApp;
let acme: TestOrg;
const CONTACT = '+19195551234';

const REPLY = `mutation Reply($input: SendReplyInput!) {
  sendReply(input: $input) {
    __typename
    ... on SendReplyPayload { segments creditsCharged provider message { id body status direction createdAt } }
    ... on Error { error: message }
  }
}`;

// The send succeeds, the second field fails (no such conversation): data and errors together.
const REPLY_THEN_FAIL = `mutation ReplyThenFail($input: SendReplyInput!) {
  sendReply(input: $input) { __typename ... on SendReplyPayload { creditsCharged message { body } } }
  setConversationStarred(phoneNumber: "+14155550009", starred: true) { isStarred }
}`;

type Answer = { status: number; headers: Record<string, string>; body: string };

async function post(body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${acme.apiToken}`,
      'x-organization-id': acme.organizationId,
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const seen: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'date' && name !== 'x-request-id' && name !== 'keep-alive' && name !== 'connection') seen[name] = value;
  });
  return { status: response.status, headers: seen, body: await response.text() };
}

/** Yoga first, then the same document again; `fast` tells whether the fast path ran the second. */
async function twice(first: unknown, second: unknown, headers: Record<string, string> = {}) {
  const viaYoga = await post(first, headers);
  const served = t.app.graphql.fastPath.served;
  const viaFast = await post(second, headers);
  return { viaYoga, viaFast, fast: t.app.graphql.fastPath.served > served };
}

/** An answer with message ids, content lengths and times blanked: two sends of one text differ only there. */
const blank = (answer: Answer) => ({
  ...answer,
  headers: { ...answer.headers, 'content-length': 'n' },
  body: answer.body.replace(/"id":"[^"]+"/g, '"id":"x"').replace(/"createdAt":"[^"]+"/g, '"createdAt":"x"'),
});

const stored = async () => {
  const rows = await t.db
    .select({ key: messages.idempotencyKey })
    .from(messages)
    .where(and(eq(messages.organizationId, acme.organizationId), eq(messages.direction, 'outgoing')));
  const [org] = await t.db.select({ credits: organizations.credits }).from(organizations).where(eq(organizations.id, acme.organizationId));
  return { keys: rows.map((row) => row.key).sort(), credits: org!.credits };
};

beforeAll(async () => {
  t = await createTestApp({ SIMULATED_STATUS_DELAY_MS: '5000' });
  acme = await t.createOrg('Acme', { credits: 100, phoneNumber: '+19195550101' });
  await t.createContact(acme, { phoneNumber: CONTACT, firstName: 'Jane', isTextable: true });
});
afterAll(() => t.close());

describe('mutations on the GraphQL fast path', () => {
  it('sends once per request, answering as Yoga does', async () => {
    const before = await stored();
    const input = (key: string) => ({
      query: REPLY,
      variables: { input: { phoneNumber: CONTACT, message: 'On our way!', idempotencyKey: key } },
    });
    const { viaYoga, viaFast, fast } = await twice(input('a-1'), input('a-2'));
    expect(fast).toBe(true);
    expect(viaYoga.status).toBe(200);
    expect(JSON.parse(viaFast.body).data.sendReply).toMatchObject({
      __typename: 'SendReplyPayload',
      creditsCharged: 1,
      message: { body: 'On our way!' },
    });
    expect(blank(viaFast)).toEqual(blank(viaYoga));
    expect(JSON.parse(viaFast.body).data.sendReply.message.id).not.toBe(JSON.parse(viaYoga.body).data.sendReply.message.id);
    const after = await stored();
    expect(after.keys).toEqual([...before.keys, 'a-1', 'a-2'].sort());
    expect(after.credits).toBe(before.credits - 2);

    // The same key again, now on the fast path: the first send's answer, nothing sent or charged.
    const again = await post(input('a-2'));
    expect(again).toEqual(viaFast);
    expect(await stored()).toEqual(after);
  });

  it('reports domain refusals (union members) and CORS like Yoga', async () => {
    const input = (key: string) => ({
      query: REPLY,
      variables: { input: { phoneNumber: '+14155550007', message: 'Hi', idempotencyKey: key } },
    });
    const { viaYoga, viaFast, fast } = await twice(input('b-1'), input('b-2'), { origin: 'https://app.example.com' });
    expect(fast).toBe(true);
    expect(JSON.parse(viaFast.body).data.sendReply.__typename).toBe('ContactNotFoundError');
    expect(viaFast).toEqual(viaYoga);
  });

  it('runs a mutation whose answer has errors once, and lets Yoga format that answer', async () => {
    const before = await stored();
    // No idempotency key here: a second run would be a second message, not a replay of the first.
    const input = (text: string) => ({ query: REPLY_THEN_FAIL, variables: { input: { phoneNumber: CONTACT, message: text } } });
    // Yoga runs a document seen once with graphql-js, then with graphql-jit, as the fast path does (their
    // error answers differ in field order and locations): the fast path's answer is Yoga's second one. An
    // unknown request parameter keeps a request off the fast path.
    await post(input('Both'));
    const served = t.app.graphql.fastPath.served;
    const { viaYoga, viaFast } = await twice({ ...input('Both'), extensions: {} }, input('Both'));
    // Answered by Yoga (an error), from the fast path's single run.
    expect(t.app.graphql.fastPath.served).toBe(served);
    const answer = JSON.parse(viaFast.body);
    // setConversationStarred is non-null, so its error nulls the whole data: the send still happened, once.
    expect(answer.data).toBeNull();
    expect(answer.errors[0]).toMatchObject({ path: ['setConversationStarred'], extensions: { code: 'NOT_FOUND' } });
    expect(viaFast).toEqual(viaYoga);
    const after = await stored();
    expect(after.keys).toEqual([...before.keys, null, null, null].sort());
    expect(after.credits).toBe(before.credits - 3);
  });

  it('leaves bad variables and bad credentials to Yoga, sending nothing', async () => {
    const before = await stored();
    const bad = { query: REPLY, variables: { input: { phoneNumber: CONTACT } } };
    const { viaYoga, viaFast } = await twice(bad, bad);
    expect(viaYoga.status).not.toBe(500);
    expect(viaFast).toEqual(viaYoga);
    const good = { query: REPLY, variables: { input: { phoneNumber: CONTACT, message: 'x', idempotencyKey: 'd-1' } } };
    const { viaYoga: denied, viaFast: deniedAgain } = await twice(good, good, { authorization: 'Bearer nope' });
    expect(denied.status).toBe(401);
    expect(deniedAgain).toEqual(denied);
    expect(await stored()).toEqual(before);
  });
});
