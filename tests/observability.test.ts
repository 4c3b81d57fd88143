import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createDatabase } from '../src/db/client.js';
import { assembleDeps, closeDeps } from '../src/deps.js';
import { requestLogMixin } from '../src/http/request-id.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { postgresUrl } from './helpers/database.js';
import { startPrivatePostgres } from './helpers/private-postgres.js';
import { connectWs, postInbound, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL, until } from './helpers/realtime.js';

// GET /metrics (Prometheus), /health/live and /health/ready, and the request and trace ids on log lines.

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const NUMBER = '+19195550100';
const INBOX = `query Inbox { conversations(first: 5) { edges { node { phoneNumber } } } }`;

let t: TestApp;
let org: TestOrg;

/** The value of one sample (`name{labels} value`), or undefined when absent. */
async function sample(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await (await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).split(' ')[0]!;
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
}

beforeAll(async () => {
  t = await createTestApp({ METRICS_TOKEN, TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
  org = await t.createOrg('Metrics org', { phoneNumber: NUMBER, credits: 100 });
});
afterAll(async () => {
  await t?.close();
});

describe('GET /metrics', () => {
  it('needs the METRICS_TOKEN as a bearer token', async () => {
    expect((await fetch(`${t.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${t.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    // The default process metrics, and ours.
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    expect(text).toContain('# TYPE gateway_http_request_duration_seconds histogram');
    expect(text).toContain('# TYPE gateway_jobs_pending gauge');
  });

  it('counts HTTP requests by route template, method and status', async () => {
    const before = (await sample('gateway_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' })) ?? 0;
    await fetch(`${t.url}/no/such/${Math.random()}`);
    await fetch(`${t.url}/another/${Math.random()}`);
    await until(async () => (await sample('gateway_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' })) === before + 2);
    expect(await sample('gateway_http_request_duration_seconds_count', { route: 'unmatched', method: 'GET' })).toBeGreaterThanOrEqual(2);
  });

  it('counts GraphQL operations alike whether Yoga or the fast path answers them', async () => {
    const served = t.app.graphql.fastPath.served;
    for (let i = 0; i < 3; i++) expect((await t.graphql(INBOX, {}, org)).status).toBe(200);
    // The first went through Yoga, the next ones through the fast path: all three are counted once.
    expect(t.app.graphql.fastPath.served).toBe(served + 2);
    const labels = { operation_type: 'query', operation_name: 'Inbox', outcome: 'success' };
    expect(await sample('gateway_graphql_operations_total', labels)).toBe(3);
    expect(await sample('gateway_graphql_operation_duration_seconds_count', { operation_type: 'query', operation_name: 'Inbox' })).toBe(3);
    // An error is counted as one, once (the fast path hands it to Yoga, which counts it).
    const bad = await t.graphql(`query Missing { conversation(phoneNumber: "not a phone") { phoneNumber } }`, {}, org);
    expect(bad.body.errors).toBeDefined();
    await t.graphql(`query Missing { conversation(phoneNumber: "not a phone") { phoneNumber } }`, {}, org);
    expect(await sample('gateway_graphql_operations_total', { operation_name: 'Missing', outcome: 'error' })).toBe(2);
  });

  it('counts inbound messages and published events, and the open WebSocket subscriptions', async () => {
    const connection = connectWs(t.url, org);
    const received = subscribeWs(connection, `subscription { messageReceived { body } }`);
    await until(async () => (await sample('gateway_subscriptions_active', { transport: 'ws' })) === 1, 10_000, 'the subscription to count');
    const inbound = (await sample('gateway_inbound_messages_total')) ?? 0;
    expect((await postInbound(t.url, NUMBER, '+19195550111', 'counted')).status).toBe(200);
    await received.waitFor(1);
    expect(await sample('gateway_inbound_messages_total')).toBe(inbound + 1);
    expect(await sample('gateway_events_published_total', { topic: 'messageReceived' })).toBeGreaterThanOrEqual(1);
    received.unsubscribe();
    await connection.client.dispose();
    await until(async () => (await sample('gateway_subscriptions_active', { transport: 'ws' })) === 0, 10_000, 'the subscription to end');
  });

  it('reports the database pool, sends in doubt and pending jobs', async () => {
    expect(await sample('gateway_db_pool_connections', { state: 'max' })).toBe(postgresUrl ? 10 : 1);
    expect(await sample('gateway_db_pool_connections', { state: 'open' })).toBeGreaterThanOrEqual(1);
    expect(await sample('gateway_sends_in_doubt')).toBe(0);
    expect(await sample('gateway_sms_sends_total', { provider: 'simulated', outcome: 'accepted' })).toBeUndefined();
    const sent = await t.graphql(`mutation { sendReply(input: { phoneNumber: "+19195550111", message: "hi" }) { __typename } }`, {}, org);
    expect(sent.body.data?.sendReply.__typename).toBe('SendReplyPayload');
    expect(await sample('gateway_sms_sends_total', { provider: 'simulated', outcome: 'accepted' })).toBe(1);
  });
});

describe('health', () => {
  it('is live and ready while serving, and not ready from the start of shutdown', async () => {
    const own = await createTestApp({ SHUTDOWN_DELAY_MS: '2000' });
    try {
      expect((await fetch(`${own.url}/health/live`)).status).toBe(200);
      const ready = await fetch(`${own.url}/health/ready`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ok' });
      const stopping = own.app.stop(1_000);
      const draining = await fetch(`${own.url}/health/ready`);
      expect(draining.status).toBe(503);
      expect(await draining.json()).toMatchObject({ status: 'unavailable', reason: 'shutting_down' });
      // Still alive, and still serving the requests a load balancer sends before it notices.
      expect((await fetch(`${own.url}/health/live`)).status).toBe(200);
      expect((await fetch(`${own.url}/health`)).status).toBe(200);
      await stopping;
    } finally {
      await own.close();
    }
  });

  it('is not ready before the migrations finish', async () => {
    const database = postgresUrl ? null : await createDatabase({ kind: 'pglite' });
    const cluster = postgresUrl ? await startPrivatePostgres() : null;
    const db = database ?? (await createDatabase({ kind: 'postgres', url: cluster!.url, poolSize: 2 }));
    const deps = assembleDeps(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }), db, pino({ level: 'silent' }));
    const app = buildApp(deps);
    try {
      const url = await app.start(0, '127.0.0.1');
      const before = await fetch(`${url}/health/ready`);
      expect(before.status).toBe(503);
      expect(await before.json()).toMatchObject({ reason: 'migrating' });
      expect((await fetch(`${url}/health/live`)).status).toBe(200);
      await db.migrate();
      expect((await fetch(`${url}/health/ready`)).status).toBe(200);
    } finally {
      await app.stop(1_000);
      await closeDeps(deps);
      await cluster?.destroy();
    }
  });

  // A private cluster on either store: it is stopped under the running instance.
  it('is not ready while the database does not answer, and ready again when it is back', async () => {
    const cluster = await startPrivatePostgres();
    const database = await createDatabase({ kind: 'postgres', url: cluster.url, poolSize: 2 });
    await database.migrate();
    const deps = assembleDeps(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }), database, pino({ level: 'silent' }));
    const app = buildApp(deps);
    try {
      const url = await app.start(0, '127.0.0.1');
      expect((await fetch(`${url}/health/ready`)).status).toBe(200);
      await cluster.stop('fast');
      const down = await fetch(`${url}/health/ready`);
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ reason: 'database_unavailable' });
      expect((await fetch(`${url}/health/live`)).status).toBe(200);
      await cluster.start();
      await until(async () => (await fetch(`${url}/health/ready`)).status === 200, 20_000, 'readiness to recover');
    } finally {
      await app.stop(1_000);
      await closeDeps(deps);
      await cluster.destroy();
    }
  });
});

describe('logs', () => {
  it('carry the request id and the caller\'s trace id on every line of a request', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const deps = assembleDeps(loadConfig({ NODE_ENV: 'test', PORT: '0' }), t.database, pino({ level: 'info', mixin: requestLogMixin }, sink));
    const app = buildApp(deps);
    try {
      const url = await app.start(0, '127.0.0.1');
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const res = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer cgw_not_a_token', 'x-request-id': 'req-42', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
        body: JSON.stringify({ query: INBOX }),
      });
      expect(res.status).toBe(401);
      await until(() => lines.some((line) => line.requestId === 'req-42'), 5_000, 'the request to be logged');
      const ofRequest = lines.filter((line) => line.requestId === 'req-42');
      expect(ofRequest.length).toBeGreaterThanOrEqual(1);
      for (const line of ofRequest) expect(line.traceId).toBe(traceId);
    } finally {
      await app.stop(1_000);
      await closeDeps(deps, { database: false });
    }
  });
});
