import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { assembleDeps, closeDeps } from '../src/deps.js';
import { operatorCaller } from '../src/services/access.js';
import { receiveInbound } from '../src/services/inbound.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { createWebhookEndpoint } from '../src/services/webhooks/endpoints.js';
import { until } from './helpers/realtime.js';
import { createServerStore, freePort, startServerProcess, type ServerProcess, type ServerStore } from './helpers/server-process.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';

// Committed events are delivered at least once across a SIGKILL: the real server process (`dist/main.js`),
// PostgreSQL or an embedded PGlite directory, a real receiver verifying with `standardwebhooks`. The
// instance is killed while its attempts are in flight (the receiver holds them unanswered); after a
// restart every event arrives, and a receiver that deduplicates by webhook-id acts on each exactly once.

const NUMBER = '+19195550100';
const EVENTS = 12;

let store: ServerStore;
let receiver: WebhookReceiver;
let server: ServerProcess | null = null;

beforeAll(async () => {
  store = await createServerStore();
  receiver = await WebhookReceiver.start();
});
afterAll(async () => {
  if (server && server.child.exitCode === null) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  await receiver?.close();
  await store?.destroy();
});

describe('outgoing webhooks across a SIGKILL', () => {
  it('attempts in flight when the instance dies are made again after a restart; each event is acted on once', async () => {
    const env = {
      ...store.env,
      WEBHOOK_ALLOW_INSECURE: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_TIMEOUT_MS: '1000',
      WEBHOOK_LEASE_MS: '2000',
      WEBHOOK_POLL_MS: '50',
    };
    // The events are committed before any instance runs: written through the inbound path, in process.
    const database = await store.open();
    let organizationId: string;
    try {
      const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...env });
      const deps = assembleDeps(config, database, pino({ level: 'silent' }));
      const org = await createOrganization(database.db, { name: 'Crash hooks' });
      organizationId = org.organizationId;
      await addPhoneNumber(database.db, organizationId, { phoneNumber: NUMBER, isDefault: true });
      const created = await createWebhookEndpoint(deps, operatorCaller(organizationId), { url: receiver.url, events: ['message.received'] });
      receiver.secret = created.secret;
      for (let i = 0; i < EVENTS; i += 1) {
        await receiveInbound(deps, { organizationId, from: `+1415555${String(1000 + (i % 4)).padStart(4, '0')}`, body: `event ${i}`, provider: 'cli' });
      }
      await closeDeps(deps);
    } catch (error) {
      await database.close().catch(() => {});
      throw error;
    }

    // Every attempt of the first instance hangs: none is answered before the kill.
    let killed = false;
    receiver.answer = () => (killed ? 200 : new Promise<number>(() => {}));
    const port = await freePort();
    server = await startServerProcess(env, port);
    // One per conversation (4) is in flight; the others wait behind them.
    await until(() => receiver.received.length === 4, 60_000, 'attempts in flight');
    server.child.kill('SIGKILL');
    await server.exited;
    killed = true;
    const beforeRestart = receiver.received.length;

    server = await startServerProcess(env, port);
    await until(() => receiver.distinct().length === EVENTS, 60_000, 'every event delivered');
    // Each event at least once, every request signed; acted on once per webhook-id.
    const acted = receiver.distinct();
    expect(acted.map((e) => e.data.message).sort()).toEqual(Array.from({ length: EVENTS }, (_, i) => `event ${i}`).sort());
    expect(receiver.received.every((e) => e.verified)).toBe(true);
    // The four held when the instance died came again with the same webhook-id.
    const held = receiver.received.slice(0, beforeRestart).map((e) => e.id);
    for (const id of held) expect(receiver.received.filter((e) => e.id === id).length).toBeGreaterThanOrEqual(2);
    // Order per conversation held across the restart.
    for (let c = 0; c < 4; c += 1) {
      const phone = `+1415555${String(1000 + c).padStart(4, '0')}`;
      const order = acted.filter((e) => e.data.phoneNumber === phone).map((e) => Number(e.data.message.split(' ')[1]));
      expect(order).toEqual([...order].sort((x, y) => x - y));
    }
  }, 180_000);
});
