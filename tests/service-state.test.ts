import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages } from '../src/db/tables.js';
import { receiveInbound } from '../src/services/inbound.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { connectWs, subscribeWs, until } from './helpers/realtime.js';

// What services keep between calls belongs to the instance (src/services/state.ts): closing it waits for
// the writes in flight, ends the shared feeds, and refuses later calls instead of writing to a closed database.

const NUMBER = '+15005550006';
const RECEIVED = 'subscription { messageReceived { id body } }';

let t: TestApp;
let acme: TestOrg;

beforeAll(async () => {
  t = await createTestApp();
  acme = await t.createOrg('Acme', { phoneNumber: NUMBER });
});
afterAll(() => t.close());

const inbound = (body: string, sid: string) =>
  receiveInbound(t.deps, { to: NUMBER, from: '+19195550100', body, provider: 'twilio', providerMessageId: sid });

describe('the state of one instance', () => {
  it('shows the shared feed of a subscription while it is open, and forgets it when the last subscriber leaves', async () => {
    const ws = connectWs(t.url, acme);
    const received = subscribeWs(ws, RECEIVED);
    await until(() => t.deps.state.inspect()['inbound message feeds'] === 1, 10_000, 'the feed to open');
    await inbound('hello', 'SMstate00000000000000000000000001');
    await received.waitFor(1);
    expect(t.deps.state.inspect()['inbound routes']).toBe(1);
    received.unsubscribe();
    await until(() => t.deps.state.inspect()['inbound message feeds'] === 0, 10_000, 'the feed to close');
    await ws.client.dispose();
  });

  it('draining writes every message already submitted, ends live subscriptions and refuses new calls', async () => {
    const ws = connectWs(t.url, acme);
    const received = subscribeWs(ws, RECEIVED);
    await until(() => t.deps.state.inspect()['inbound message feeds'] === 1, 10_000, 'the feed to open');

    const sids = Array.from({ length: 20 }, (_, i) => `SMdrain${String(i).padStart(27, '0')}`);
    const submitted = sids.map((sid, i) => inbound(`drain ${i}`, sid));
    // All twenty are queued in the batcher, none written yet: the drain below has to wait for them.
    expect(t.deps.state.inspect()['inbound messages']).toBe(20);
    await t.deps.state.drain();

    const stored = await t.db
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.organizationId, acme.organizationId), eq(messages.direction, 'incoming')));
    expect(stored).toHaveLength(21);
    expect((await Promise.all(submitted)).map((outcome) => outcome.outcome)).toEqual(sids.map(() => 'stored'));

    // graphql-ws hands the client the error of the operation as a list of GraphQL errors.
    const ended = await received.waitForError();
    expect(ended).toMatchObject([{ extensions: { code: 'SERVICE_UNAVAILABLE' } }]);

    await expect(inbound('too late', 'SMlate000000000000000000000000001')).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    await ws.client.dispose();
  });
});
