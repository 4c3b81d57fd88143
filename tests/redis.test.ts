import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { assembleDeps, closeDeps, type Deps } from '../src/deps.js';
import { Redis } from 'ioredis';
import { revokeApiToken } from '../src/services/api-tokens.js';
import { ACCESS_CHANGED_CHANNEL } from '../src/services/auth.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { postgresUrl } from './helpers/database.js';
import { connectWs, postInbound, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL, until } from './helpers/realtime.js';
import { freePort } from './helpers/free-port.js';

// Several instances sharing Redis (REDIS_URL): events cross instances over its pub/sub, rate limits are
// counted once for all, and with Redis gone requests are still served (limits fall back to memory).
// Each test runs its own redis-server on a free port, so it can stop it.

const NUMBER = '+19195550100';
const INBOX = `{ conversations(first: 1) { edges { node { phoneNumber } } } }`;

type Instance = { url: string; app: App; deps: Deps; logs: Record<string, unknown>[] };

let t: TestApp;
let org: TestOrg;
let redis: { url: string; stop(): Promise<void>; start(): Promise<void> };
const extra: { instance: Instance; database: Database | null }[] = [];

async function startRedis() {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const socket = createServer().listen(port, '127.0.0.1');
          socket.once('listening', () => socket.close(() => resolve(false)));
          socket.once('error', () => resolve(true));
        }),
      10_000,
      'redis-server to listen',
    );
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      const running = child!;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    },
    start,
  };
}

/** Another instance on the same database, with its own HTTP server, event bus and Redis connections. */
async function secondInstance(env: Record<string, string>): Promise<Instance> {
  const database = postgresUrl ? await createDatabase({ kind: 'postgres', url: (t.database as { url?: string }).url!, poolSize: 4 }) : null;
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = loadConfig({ NODE_ENV: 'test', PORT: '0', TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL, ...env });
  const deps = assembleDeps(config, database ?? t.database, pino({ level: 'info' }, sink));
  const app = buildApp(deps);
  const instance = { url: await app.start(0, '127.0.0.1'), app, deps, logs };
  extra.push({ instance, database });
  return instance;
}

const inbox = (url: string) =>
  fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId },
    body: JSON.stringify({ query: INBOX }),
  });

beforeAll(async () => {
  redis = await startRedis();
  t = await createTestApp({ REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '6', TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN, PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL });
  org = await t.createOrg('Redis org', { phoneNumber: NUMBER });
});
afterAll(async () => {
  for (const { instance, database } of extra) {
    await instance.app.stop(1_000);
    await closeDeps(instance.deps, { database: false });
    await database?.close();
  }
  await t?.close();
  await redis?.stop().catch(() => {});
});

describe('with REDIS_URL', () => {
  it('carries events between instances over Redis pub/sub', async () => {
    const other = await secondInstance({ REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '0' });
    const connection = connectWs(other.url, org);
    const received = subscribeWs(connection, `subscription { messageReceived { body } }`);
    await until(() => other.deps.events.subscriberCount('messageReceived', org.organizationId) > 0, 10_000, 'the subscription');
    // Stored by the first instance, delivered by the other one, well before the 30 s re-read.
    expect((await postInbound(t.url, NUMBER, '+19195550111', 'across instances')).status).toBe(200);
    const [data] = await received.waitFor(1, 10_000);
    expect(data).toMatchObject({ messageReceived: { body: 'across instances' } });
    const metrics = await (await fetch(`${other.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_event_delivery_lag_seconds_count\{source="redis"\} [1-9]/);
    received.unsubscribe();
    await connection.client.dispose();
  });

  it('carries token revocations to every instance over Redis, once committed', async () => {
    const other = await secondInstance({ REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '0' });
    const revoked = await t.createOrg('Revoked org', { phoneNumber: '+19195550400' });
    const watcher = new Redis(redis.url);
    const notices: string[] = [];
    watcher.on('message', (_channel: string, payload: string) => notices.push(payload));
    await watcher.subscribe(ACCESS_CHANGED_CHANNEL);
    try {
      const connection = connectWs(other.url, revoked);
      subscribeWs(connection, `subscription { messageReceived { body } }`);
      await until(() => other.deps.events.subscriberCount('messageReceived', revoked.organizationId) > 0, 10_000, 'the subscription');
      // The operator's revocation (the CLI's call), on the first instance's database handle.
      const result = await revokeApiToken(t.db, revoked.apiToken);
      await until(() => connection.closes.some((close) => close.code === 4401), 10_000, 'the socket on the other instance to close');
      expect(notices).toContain(result!.tokenId);
      await connection.client.dispose();
    } finally {
      await watcher.quit();
    }
  });

  it('shares one token\'s rate limit between instances', async () => {
    const other = await secondInstance({ REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '6' });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await inbox(i % 2 === 0 ? t.url : other.url)).status);
    // Six for the token in this minute, whichever instance served them.
    expect(statuses.filter((status) => status === 200)).toHaveLength(6);
    expect(statuses.slice(6)).toEqual([429, 429]);
  });

  it('keeps serving with Redis gone (limits in memory, said in the log) and shares again once it is back', async () => {
    const fresh = await t.createOrg('Redis outage org', { phoneNumber: '+19195550200' });
    const other = await secondInstance({ REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '3' });
    const ask = (url: string) =>
      fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${fresh.apiToken}`, 'x-organization-id': fresh.organizationId },
        body: JSON.stringify({ query: INBOX }),
      }).then((res) => res.status);
    await redis.stop();
    await until(() => other.logs.some((line) => String(line.msg).includes('Redis is unavailable')), 10_000, 'the fallback to be logged');
    // Served, and limited by this instance's own memory.
    expect([await ask(other.url), await ask(other.url), await ask(other.url), await ask(other.url)]).toEqual([200, 200, 200, 429]);
    expect((await fetch(`${other.url}/health/ready`)).status).toBe(200);
    await redis.start();
    await until(() => other.logs.some((line) => String(line.msg).includes('Redis is back')), 20_000, 'the recovery to be logged');
    await until(() => t.deps.redis!.commands.status === 'ready', 20_000, 'the first instance to reconnect');
    const again = await t.createOrg('After the outage', { phoneNumber: '+19195550300' });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push(
        await fetch(`${i % 2 === 0 ? t.url : other.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${again.apiToken}`, 'x-organization-id': again.organizationId },
          body: JSON.stringify({ query: INBOX }),
        }).then((res) => res.status),
      );
    }
    // The first instance's limit is 6 and the other's 3, both counted in Redis: the other refuses its second.
    expect(statuses).toEqual([200, 200, 200, 429]);
  });
});
