import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { receiveInbound } from '../src/services/inbound.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { until } from './helpers/realtime.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';

// Requests come first: while more requests than WEBHOOK_YIELD_REQUESTS are in flight on the instance, its
// webhook dispatcher starts one attempt per poll interval at most (a tenth of WEBHOOK_CONCURRENCY), and
// catches up once they are served. Real requests held open over TCP (headers sent, body not finished).

const POLL_MS = 100;
const EVENTS = 40;

let t: TestApp;
let receiver: WebhookReceiver;

beforeAll(async () => {
  t = await createTestApp({
    WEBHOOK_ALLOW_INSECURE: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    WEBHOOK_POLL_MS: String(POLL_MS),
    WEBHOOK_CONCURRENCY: '10',
    WEBHOOK_YIELD_REQUESTS: '3',
  });
  receiver = await WebhookReceiver.start();
});
afterAll(async () => {
  await t?.close();
  await receiver?.close();
});

/** A POST /graphql whose body never finishes: in flight until the socket is destroyed. */
function heldRequest(url: string): Socket {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  socket.write(`POST /graphql HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"query":`);
  return socket;
}

describe('outgoing webhooks under request load', () => {
  it('step back to a trickle while requests pile up, then all arrive, once each, in order per conversation', async () => {
    const org = await t.createOrg('Busy', { phoneNumber: '+19195550100' });
    const created = await t.graphql(
      `mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { ... on CreateWebhookEndpointPayload { secret } } }`,
      { input: { url: receiver.url, events: ['MESSAGE_RECEIVED'] } },
      org,
    );
    receiver.secret = created.body.data.createWebhookEndpoint.secret;
    const phone = (i: number) => `+1415555${String(4000 + (i % 8))}`;
    for (let i = 0; i < EVENTS; i += 1) {
      await receiveInbound(t.deps, { organizationId: org.organizationId, from: phone(i), body: `event ${i}`, provider: 'cli' });
    }

    const held = Array.from({ length: 6 }, () => heldRequest(t.url));
    await until(() => t.deps.requestLoad.inFlight >= 6, 5_000, 'requests in flight');
    t.deps.requestLoad.averageInFlight(); // the dispatcher's first look averages from here: 6 in flight
    const started = Date.now();
    t.deps.webhooks.start();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const duringLoad = receiver.received.length;
    const elapsed = Date.now() - started;
    for (const socket of held) socket.destroy();

    // One slot while busy, one cycle per poll interval: at most one attempt each.
    expect(duringLoad).toBeLessThanOrEqual(Math.ceil(elapsed / POLL_MS) + 2);
    expect(duringLoad).toBeLessThan(EVENTS);
    await until(() => receiver.distinct().length === EVENTS, 15_000, 'every event delivered once the requests are served');
    expect(receiver.received).toHaveLength(EVENTS);
    expect(receiver.received.every((e) => e.verified)).toBe(true);
    for (let c = 0; c < 8; c += 1) {
      const order = receiver.received.filter((e) => e.data.phoneNumber === phone(c)).map((e) => Number(e.data.message.split(' ')[1]));
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
  });
});
