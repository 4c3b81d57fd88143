import { sql } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { rawRows } from '../src/db/rows.js';
import { assembleDeps, closeDeps, type Deps } from '../src/deps.js';
import { receiveInbound } from '../src/services/inbound.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { postgresUrl } from './helpers/database.js';
import { until } from './helpers/realtime.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';

// Two instances sending from one outbox (separate connections on PostgreSQL, the same embedded database on
// PGlite): no attempt is made twice at once, every attempt is recorded once, and order per conversation holds.

const ENV = {
  WEBHOOK_ALLOW_INSECURE: 'true',
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_RETRY_SCHEDULE: '100ms,100ms,100ms',
  WEBHOOK_POLL_MS: '20',
  WEBHOOK_CONCURRENCY: '4',
};

let t: TestApp;
let other: Deps;
let second: Database;
let receiver: WebhookReceiver;

beforeAll(async () => {
  t = await createTestApp(ENV);
  second = postgresUrl ? await createDatabase({ kind: 'postgres', url: (t.database as { url?: string }).url!, poolSize: 4 }) : t.database;
  other = assembleDeps(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...ENV }), second, pino({ level: 'silent' }));
  receiver = await WebhookReceiver.start();
});
afterAll(async () => {
  await closeDeps(other, { database: Boolean(postgresUrl) });
  await t?.close();
  await receiver?.close();
});

describe('two instances', () => {
  it('share the deliveries: each attempt made by one instance, none twice at once, order per conversation kept', async () => {
    const org = await t.createOrg('Two', { phoneNumber: '+19195550100' });
    const created = await t.graphql(
      `mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { ... on CreateWebhookEndpointPayload { secret } } }`,
      { input: { url: receiver.url, events: ['MESSAGE_RECEIVED'] } },
      org,
    );
    receiver.secret = created.body.data.createWebhookEndpoint.secret;
    const inFlight = new Map<string, number>();
    let overlapping = 0;
    // Slow answers, and every third event's first attempt fails: claims and retries interleave.
    receiver.answer = async (request, count) => {
      const now = (inFlight.get(request.id) ?? 0) + 1;
      inFlight.set(request.id, now);
      if (now > 1) overlapping += 1;
      await new Promise((resolve) => setTimeout(resolve, 15));
      inFlight.set(request.id, inFlight.get(request.id)! - 1);
      return Number(request.data.message.split(' ')[1]) % 3 === 0 && count === 1 ? 500 : 200;
    };
    const EVENTS = 36;
    const phone = (i: number) => `+1415555${String(3000 + (i % 6))}`;
    for (let i = 0; i < EVENTS; i += 6) {
      await Promise.all(Array.from({ length: 6 }, (_, k) => receiveInbound(t.deps, { organizationId: org.organizationId, from: phone(i + k), body: `event ${i + k}`, provider: 'cli' })));
    }
    t.deps.webhooks.start();
    other.webhooks.start();
    await until(() => receiver.distinct().length === EVENTS && receiver.received.length === EVENTS + EVENTS / 3, 20_000, 'all delivered, with retries');
    await new Promise((resolve) => setTimeout(resolve, 200));

    // Both took part (each runs at most WEBHOOK_CONCURRENCY=4 at once; six conversations are due together).
    expect(Math.min(t.deps.webhooks.attempted, other.webhooks.attempted)).toBeGreaterThan(0);
    expect(overlapping).toBe(0);
    expect(receiver.received.length).toBe(EVENTS + EVENTS / 3);
    expect(receiver.received.every((e) => e.verified)).toBe(true);
    expect(t.deps.webhooks.attempted + other.webhooks.attempted).toBe(receiver.received.length);
    const recorded = await rawRows(t.db, sql`select delivery_id::text as id, count(*)::int as n from webhook_attempts where organization_id = ${org.organizationId} group by 1`);
    const received = new Map<string, number>();
    for (const e of receiver.received) received.set(e.id, (received.get(e.id) ?? 0) + 1);
    expect(new Map(recorded.map((row) => [row.id as string, Number(row.n)]))).toEqual(received);
    for (let c = 0; c < 6; c += 1) {
      const order = receiver.distinct().filter((e) => e.data.phoneNumber === phone(c)).map((e) => Number(e.data.message.split(' ')[1]));
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
  });
});
