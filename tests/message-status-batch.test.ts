import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messages, messageStatusEvents } from '../src/db/tables.js';
import { applyMessageStatus, type StatusUpdate } from '../src/services/message-status.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// Status callbacks of one message arriving together are stored by one write (src/services/message-status.ts):
// the outcome of each, the history and the end state must be those of applying them one after the other.

let t: TestApp;
let acme: TestOrg;
let seq = 0;

beforeAll(async () => {
  t = await createTestApp({ SIMULATED_STATUS_DELAY_MS: '3600000' });
  acme = await t.createOrg('Acme');
});
afterAll(() => t.close());

async function tracked(status: string | null) {
  const sid = `SMbatch${(seq += 1)}`;
  await t.addMessage(acme, {
    phoneNumber: '+19195551234',
    direction: 'outgoing',
    body: 'x',
    status,
    provider: 'twilio',
    providerMessageId: sid,
  } as never);
  return sid;
}

/** The updates submitted in one tick (one batch), in this order. */
const together = (sid: string, updates: Omit<StatusUpdate, 'providerMessageId'>[]) =>
  Promise.all(updates.map((update) => applyMessageStatus(t.deps, { providerMessageId: sid, ...update })));

async function stateOf(sid: string) {
  const [message] = await t.db
    .select()
    .from(messages)
    .where(and(eq(messages.organizationId, acme.organizationId), eq(messages.providerMessageId, sid)));
  const history = await t.db
    .select({ status: messageStatusEvents.status, errorCode: messageStatusEvents.errorCode })
    .from(messageStatusEvents)
    .where(and(eq(messageStatusEvents.organizationId, acme.organizationId), eq(messageStatusEvents.messageId, message!.id)))
    .orderBy(asc(messageStatusEvents.createdAt), asc(messageStatusEvents.id));
  return { status: message!.status, errorCode: message!.errorCode, history };
}

describe('status callbacks arriving together', () => {
  it('applies them in arrival order: forward moves apply, late ones are ignored and kept in the history', async () => {
    const inOrder = await tracked('queued');
    const outcomes = await together(inOrder, [{ status: 'sent' }, { status: 'delivered' }, { status: 'read' }]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['applied', 'applied', 'applied']);
    expect(await stateOf(inOrder)).toMatchObject({
      status: 'read',
      history: [{ status: 'sent' }, { status: 'delivered' }, { status: 'read' }],
    });

    const late = await tracked('queued');
    const lateOutcomes = await together(late, [{ status: 'delivered' }, { status: 'sent' }, { status: 'failed', errorCode: 30003 }]);
    expect(lateOutcomes).toMatchObject([
      { outcome: 'applied', status: 'delivered' },
      { outcome: 'ignored', status: 'delivered' },
      { outcome: 'ignored', status: 'delivered' },
    ]);
    expect(await stateOf(late)).toMatchObject({
      status: 'delivered',
      errorCode: null,
      history: [{ status: 'delivered' }, { status: 'sent' }, { status: 'failed', errorCode: 30003 }],
    });
  });

  it('keeps the error code of the last callback that moved the message, whatever it was found in', async () => {
    const failed = await tracked('sending');
    const outcomes = await together(failed, [
      { status: 'sent' },
      { status: 'undelivered', errorCode: 30005 },
      { status: 'failed', errorCode: 30008 },
    ]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['applied', 'applied', 'ignored']);
    expect(await stateOf(failed)).toMatchObject({ status: 'undelivered', errorCode: 30005 });

    // A stored status we do not know is replaced by any known one, as one by one.
    const odd = await tracked('mystery');
    expect((await together(odd, [{ status: 'sent' }, { status: 'sending' }])).map((o) => o.outcome)).toEqual(['applied', 'ignored']);
    expect((await stateOf(odd)).status).toBe('sent');

    // Unknown messages stay unknown; other messages in the same batch are unaffected.
    const other = await tracked('queued');
    const [missing, found] = await Promise.all([
      applyMessageStatus(t.deps, { providerMessageId: 'SMnone', status: 'sent' }),
      applyMessageStatus(t.deps, { providerMessageId: other, status: 'sent' }),
    ]);
    expect(missing.outcome).toBe('unknown_message');
    expect(found.outcome).toBe('applied');
  });

  it('tells subscribers once per message: sent and delivered applied together are one change', async () => {
    const heard: string[] = [];
    const stop = t.deps.events.listen('messageStatusChanged', acme.organizationId, (event) => heard.push(event.messageId));
    try {
      const both = await tracked('queued');
      const alone = await tracked('queued');
      await Promise.all([
        together(both, [{ status: 'sent' }, { status: 'delivered' }]),
        together(alone, [{ status: 'sending' }, { status: 'queued' }]),
      ]);
      const [bothRow, aloneRow] = await Promise.all([stateOf(both), stateOf(alone)]);
      expect([bothRow.status, aloneRow.status]).toEqual(['delivered', 'sending']);
      const ids = await t.db
        .select({ id: messages.id, sid: messages.providerMessageId })
        .from(messages)
        .where(eq(messages.organizationId, acme.organizationId));
      const idOf = (sid: string) => ids.find((row) => row.sid === sid)!.id;
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(heard.sort()).toEqual([idOf(both), idOf(alone)].sort());
      // A callback that moves nothing tells nobody.
      await together(both, [{ status: 'sent' }]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(heard).toHaveLength(2);
    } finally {
      stop();
    }
  });
});
