import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPubSub, type PubSubEventTarget } from 'graphql-yoga';
import type { Database } from '../src/db/client.js';
import { createEventBus, type GatewayEvents } from '../src/pubsub/index.js';
import { sql } from 'drizzle-orm';
import { EVENTS_CHANNEL, PostgresEventTarget } from '../src/pubsub/postgres-event-target.js';
import { createTestDatabase, postgresUrl } from './helpers/database.js';
import { until } from './helpers/realtime.js';

// The cross-instance event target over real LISTEN/NOTIFY (PostgreSQL, or PGlite's own in-process
// implementation of it): two targets stand for two gateway instances on one database.

let database: Database;
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  database = await createTestDatabase();
}, 60_000);
afterAll(() => database?.close());

function instance() {
  const target = new PostgresEventTarget(database, logger);
  const pubsub = createPubSub<GatewayEvents>({ eventTarget: target as unknown as PubSubEventTarget<GatewayEvents> });
  return { target, pubsub };
}

async function collect(iterable: AsyncIterable<unknown>, into: unknown[]) {
  for await (const value of iterable) into.push(value);
}

describe('PostgresEventTarget', () => {
  it('delivers each event exactly once on every instance, only to the same organization', async () => {
    const a = instance();
    const b = instance();
    await Promise.all([a.target.ready, b.target.ready]);
    const onA: unknown[] = [];
    const onB: unknown[] = [];
    const otherOrgOnB: unknown[] = [];
    const subs = [a.pubsub.subscribe('conversationUpdated', 'org-1'), b.pubsub.subscribe('conversationUpdated', 'org-1'), b.pubsub.subscribe('conversationUpdated', 'org-2')];
    void collect(subs[0]!, onA);
    void collect(subs[1]!, onB);
    void collect(subs[2]!, otherOrgOnB);

    a.pubsub.publish('conversationUpdated', 'org-1', { conversationId: 'c1' });
    b.pubsub.publish('conversationUpdated', 'org-1', { conversationId: 'c2' });
    await until(() => onA.length >= 2 && onB.length >= 2, 5_000, 'both events on both instances');
    // Give any echo (an event re-sent by its receiver) time to show up.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(onA).toHaveLength(2);
    expect(onB).toHaveLength(2);
    expect(onA).toContainEqual({ conversationId: 'c1' });
    expect(onA).toContainEqual({ conversationId: 'c2' });
    expect(onB).toEqual(expect.arrayContaining([{ conversationId: 'c1' }, { conversationId: 'c2' }]));
    expect(otherOrgOnB).toEqual([]);

    await Promise.all(subs.map((sub) => sub.return()));
    await a.target.close();
    await b.target.close();
    // Closed: B no longer hears A.
    const late: unknown[] = [];
    const c = instance();
    await c.target.ready;
    const sub = b.pubsub.subscribe('conversationUpdated', 'org-1');
    void collect(sub, late);
    c.pubsub.publish('conversationUpdated', 'org-1', { conversationId: 'c3' });
    await c.target.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(late).toEqual([]);
    await sub.return();
  });

  it('packs the events published together into few notifications of one statement, each arriving once and in order', async () => {
    const a = instance();
    const b = instance();
    await Promise.all([a.target.ready, b.target.ready]);
    const onB: Array<{ conversationId: string }> = [];
    const sub = b.pubsub.subscribe('conversationUpdated', 'org-1');
    void collect(sub, onB);
    const notifications: string[] = [];
    const stopListening = await database.listen(EVENTS_CHANNEL, (raw) => notifications.push(raw));
    const stop = database.statementLog.record();
    const ids = Array.from({ length: 600 }, (_, i) => `c${i}`); // far more than one notification holds
    for (const conversationId of ids) a.pubsub.publish('conversationUpdated', 'org-1', { conversationId });
    await until(() => onB.length >= ids.length, 5_000, 'every event on the other instance');
    // A later turn's events: the next statement.
    const more = ['d1', 'd2', 'd3'];
    for (const conversationId of more) a.pubsub.publish('conversationUpdated', 'org-1', { conversationId });
    await until(() => onB.length >= ids.length + more.length, 5_000, 'the later events on the other instance');
    const statements = stop().filter((query) => /pg_notify/.test(query));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(onB.map((event) => event.conversationId)).toEqual([...ids, ...more]);
    expect(statements).toHaveLength(2);
    // About 60 bytes an event: a hundred or so to a notification, each under NOTIFY's 8000-byte limit.
    expect(notifications.length).toBeGreaterThan(2);
    expect(notifications.length).toBeLessThan(20);
    for (const raw of notifications) expect(Buffer.byteLength(raw)).toBeLessThan(8000);
    await stopListening();
    await sub.return();
    await a.target.close();
    await b.target.close();
  });

  it('understands the one-event notifications of an instance running the previous version', async () => {
    const b = instance();
    await b.target.ready;
    const onB: unknown[] = [];
    const sub = b.pubsub.subscribe('conversationUpdated', 'org-1');
    void collect(sub, onB);
    const older = JSON.stringify({ o: 'an-older-instance', t: 'conversationUpdated:org-1', p: { conversationId: 'c-old' } });
    await database.db.execute(sql`select pg_notify(${EVENTS_CHANNEL}, ${older})`);
    await until(() => onB.length >= 1, 5_000, 'the event of the older instance');
    expect(onB).toEqual([{ conversationId: 'c-old' }]);
    await sub.return();
    await b.target.close();
  });

  it('is what the event bus uses on PostgreSQL, and in-process delivery on PGlite', async () => {
    // Both buses listen before anything is published: a NOTIFY is sent after the publish returns, so one
    // published before the second bus listened may still reach it (it did under load).
    const bus = createEventBus({ database, logger });
    const second = createEventBus({ database, logger });
    await Promise.all([bus.ready, second.ready]);
    const received: unknown[] = [];
    const sub = bus.subscribe('messageReceived', 'org-1');
    void collect(sub, received);
    expect(bus.subscriberCount('messageReceived', 'org-1')).toBe(1);
    const heard: unknown[] = [];
    const secondSub = second.subscribe('messageReceived', 'org-1');
    void collect(secondSub, heard);
    bus.publish('messageReceived', 'org-1', { messageId: 'm1', conversationId: 'c1' });
    bus.publish('messageReceived', 'org-1', { messageId: 'm2', conversationId: 'c1' });
    await until(() => received.length === 2, 5_000, 'local delivery');

    // The second bus on the same database hears the first one only when events cross instances (PostgreSQL).
    if (postgresUrl) await until(() => heard.length === 2, 5_000, 'delivery across instances');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received).toEqual([{ messageId: 'm1', conversationId: 'c1' }, { messageId: 'm2', conversationId: 'c1' }]);
    expect(heard).toEqual(postgresUrl ? [{ messageId: 'm1', conversationId: 'c1' }, { messageId: 'm2', conversationId: 'c1' }] : []);
    await sub.return();
    await secondSub.return();
    await bus.close();
    await second.close();
  });
});
