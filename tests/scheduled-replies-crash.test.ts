import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContact } from '../src/services/contacts.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { until } from './helpers/realtime.js';
import { createServerStore, freePort, startServerProcess, type ServerProcess, type ServerStore } from './helpers/server-process.js';

// A scheduled reply is sent exactly once even when the instance that claimed it is SIGKILLed in the middle
// of the provider call: the real server process (`dist/main.js`), the real `twilio` SDK against the fake
// Twilio, PostgreSQL or an embedded PGlite directory. Twilio created the first reply before the kill and
// never got the second; after a restart the first gets its SID (not sent again) and the second is sent once.

const NUMBER = '+19195550100';
const KEPT = '+14155550111';
const LOST = '+14155550112';

let fake: FakeTwilio;
let store: ServerStore;
let server: ServerProcess | null = null;

beforeAll(async () => {
  fake = await startFakeTwilio();
  store = await createServerStore();
});
afterAll(async () => {
  if (server && server.child.exitCode === null) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  await store?.destroy();
  await fake?.close();
});

describe('scheduled replies across a SIGKILL', () => {
  it('the instance that claimed due replies dies during the provider call; after a restart each is sent exactly once', async () => {
    const database = await store.open();
    let org: { organizationId: string; apiToken: string };
    try {
      await database.migrate();
      org = await createOrganization(database.db, { name: 'Crash', credits: 10 });
      await addPhoneNumber(database.db, org.organizationId, { phoneNumber: NUMBER, isDefault: true });
      for (const phoneNumber of [KEPT, LOST]) await createContact(database.db, org.organizationId, { phoneNumber, isTextable: true });
    } finally {
      await database.close();
    }
    const env = {
      ...store.env,
      ...fake.env(),
      PUBLIC_BASE_URL: 'https://crash.example.test',
      SMS_PROVIDER_TIMEOUT_MS: '1000',
      SENDS_IN_DOUBT_AFTER_MS: '2000',
      JOB_LEASE_MS: '2000',
      JOB_POLL_MS: '100',
    };
    const graphql = async (query: string, variables: Record<string, unknown> = {}) => {
      const response = await fetch(`${server!.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId },
        body: JSON.stringify({ query, variables }),
      });
      return (await response.json()) as { data?: any; errors?: unknown[] };
    };
    const port = await freePort();
    server = await startServerProcess(env, port);

    fake.hangSendsTo(KEPT, { kept: true });
    fake.hangSendsTo(LOST, { kept: false });
    const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on SendReplyPayload { message { status } } } }`;
    // Well past the 5 s under which a reply is sent at once, even when the requests themselves are slow.
    const sendAt = new Date(Date.now() + 9_000).toISOString();
    for (const phoneNumber of [KEPT, LOST]) {
      const res = await graphql(SEND, { input: { phoneNumber, message: `Later, ${phoneNumber}`, sendAt } });
      expect(res.data.sendReply).toEqual({ __typename: 'SendReplyPayload', message: { status: 'SCHEDULED' } });
    }
    // Both fall due and reach Twilio; neither answer comes back before the kill.
    await until(() => fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/Messages.json')).length === 2, 20_000, 'both sends at Twilio');
    server.child.kill('SIGKILL');
    await server.exited;
    expect(fake.sent.map((m) => m.to)).toEqual([KEPT]);
    fake.stopHanging(KEPT);
    fake.stopHanging(LOST);

    server = await startServerProcess(env, port);
    const THREAD = `query($phone: String!) { conversation(phoneNumber: $phone) { messages(first: 5) { edges { node { status providerMessageId creditsCharged sendAt } } } } }`;
    const replies = async (phone: string) => (await graphql(THREAD, { phone })).data?.conversation?.messages.edges.map((e: any) => e.node) ?? [];
    await until(
      async () => (await replies(KEPT))[0]?.providerMessageId && (await replies(LOST))[0]?.providerMessageId,
      30_000,
      'both replies settled',
    );
    // Twilio has each exactly once: the kept one was not sent again, the lost one was sent after the restart.
    expect(fake.sent.filter((m) => m.to === KEPT)).toHaveLength(1);
    expect(fake.sent.filter((m) => m.to === LOST)).toHaveLength(1);
    const kept = await replies(KEPT);
    const lost = await replies(LOST);
    expect(kept).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(kept[0]).toMatchObject({ providerMessageId: fake.sent.find((m) => m.to === KEPT)!.sid, creditsCharged: 1, sendAt });
    expect(lost[0]).toMatchObject({ providerMessageId: fake.sent.find((m) => m.to === LOST)!.sid, creditsCharged: 1, sendAt });
    expect((await graphql('{ organization { credits } }')).data.organization.credits).toBe(8);
    expect(server.output()).toMatch(/the provider never got it; sending it now/);
  }, 90_000);
});
