import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { eq } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { contacts } from '../src/db/tables.js';
import { openDeps, type Deps } from '../src/deps.js';
import { issueApiToken } from '../src/services/api-tokens.js';
import { createContact } from '../src/services/contacts.js';
import { appendMessage } from '../src/services/messages.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import type { TestOrg } from './helpers/app.js';
import { startPrivatePostgres, startPrivateReplica, type PrivatePostgres, type PrivateReplica } from './helpers/private-postgres.js';
import { connectWs, postInbound, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL, until, type WsConnection } from './helpers/realtime.js';
import { freePort } from './helpers/free-port.js';

// A read replica (DATABASE_READ_URL): a private primary and a streaming standby of it (pg_basebackup -R),
// under gateway instances made as main.ts makes them (openDeps). Routing is proven by what each token
// sees while the standby's replay is paused: a write is on the primary only, so whoever sees it read there.
// Runs the same with and without DATABASE_URL: it never uses the shared server.

const NUMBER = '+19195550100';
const CONTACT = '+12125550123';
const READ_YOUR_WRITES_MS = 1_000;

type Instance = { url: string; app: App; deps: Deps & { close(): Promise<void> }; logs: Record<string, unknown>[] };

let primary: PrivatePostgres;
let replica: PrivateReplica;
const instances: Instance[] = [];
/** Token A writes; token B, of the same organization, only reads. */
let a: TestOrg;
let b: TestOrg;
let main: Instance;

async function instance(env: Record<string, string> = {}): Promise<Instance> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '0',
    DATABASE_URL: primary.url,
    DATABASE_READ_URL: replica.url,
    DATABASE_POOL_SIZE: '4',
    READ_YOUR_WRITES_MS: String(READ_YOUR_WRITES_MS),
    RATE_LIMIT_PER_MINUTE: '0',
    TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
    PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
    SIMULATED_STATUS_DELAY_MS: '3600000',
    ...env,
  });
  const deps = await openDeps(config, pino({ level: 'info' }, sink));
  const app = buildApp(deps);
  const started: Instance = { url: await app.start(0, '127.0.0.1'), app, deps, logs };
  instances.push(started);
  return started;
}

async function gql(on: Instance, token: TestOrg, query: string, variables: Record<string, unknown> = {}) {
  const res = await fetch(`${on.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token.apiToken}`, 'x-organization-id': token.organizationId },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  expect(res.status).toBe(200);
  return body.data;
}

async function rest(on: Instance, token: TestOrg, path: string, body?: unknown) {
  const res = await fetch(`${on.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token.apiToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const STARRED = `query Starred($phone: String!) { conversation(phoneNumber: $phone) { isStarred } }`;
const STAR = `mutation Star($phone: String!, $starred: Boolean!) { setConversationStarred(phoneNumber: $phone, starred: $starred) { isStarred unreadCount } }`;
const starredFor = async (on: Instance, token: TestOrg) => (await gql(on, token, STARRED, { phone: CONTACT })).conversation.isStarred as boolean;
const star = async (on: Instance, token: TestOrg, starred: boolean) => (await gql(on, token, STAR, { phone: CONTACT, starred })).setConversationStarred;

/** Runs `check` with the standby's replay paused; resumes and waits until the standby caught up. */
async function whilePaused(check: () => Promise<void>) {
  await replica.pauseReplay();
  try {
    await check();
  } finally {
    await replica.resumeReplay();
    await replica.caughtUp();
  }
}

/** The value of the first /metrics sample line that starts with `prefix` (a name, or a name and its labels). */
async function metric(on: Instance, prefix: string): Promise<number | undefined> {
  const text = await (await fetch(`${on.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(prefix.includes('{') ? prefix : `${prefix} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

beforeAll(async () => {
  primary = await startPrivatePostgres({ replication: true });
  replica = await startPrivateReplica(primary);
  main = await instance();
  const db = main.deps.db;
  a = await createOrganization(db, { name: 'Replicated', credits: 100 });
  b = { organizationId: a.organizationId, apiToken: (await issueApiToken(db, a.organizationId, 'reader')).apiToken };
  await addPhoneNumber(db, a.organizationId, { phoneNumber: NUMBER, isDefault: true });
  await createContact(db, a.organizationId, { phoneNumber: CONTACT, firstName: 'Ada', isTextable: true });
  expect((await postInbound(main.url, NUMBER, CONTACT, 'hello')).status).toBe(200);
  await replica.caughtUp();
}, 60_000);

afterAll(async () => {
  for (const i of instances.reverse()) {
    await i.app.stop(1_000);
    await i.deps.close();
  }
  await replica?.destroy();
  await primary?.destroy();
});

describe('reads from the replica, writes and a writer\'s next reads on the primary', () => {
  it('serves other tokens from the replica, the writer from the primary for READ_YOUR_WRITES_MS, then the replica again', async () => {
    const { fastPath } = main.app.graphql;
    const replicaReads = ((await metric(main, 'gateway_db_reads_total{target="replica"}')) ?? 0);
    // Twice: the first sight of each document is Yoga's, the second the fast path's.
    for (const starred of [true, false]) {
      await whilePaused(async () => {
        const served = fastPath.served;
        // The mutation's payload is read after its write, in the same request: from the primary.
        expect(await star(main, a, starred)).toEqual({ isStarred: starred, unreadCount: 1 });
        if (!starred) expect(fastPath.served).toBe(served + 1);
        expect(await starredFor(main, a)).toBe(starred);
        expect(await starredFor(main, a)).toBe(starred);
        expect(await starredFor(main, b)).toBe(!starred);
        expect(await starredFor(main, b)).toBe(!starred);
        // Once the window has passed, the writer reads the (paused) replica again.
        await until(async () => (await starredFor(main, a)) === !starred, 10_000, 'the writer to read the replica again');
      });
      expect(await starredFor(main, b)).toBe(starred);
    }
    expect(fastPath.served).toBeGreaterThan(0);
    expect(((await metric(main, 'gateway_db_reads_total{target="replica"}')) ?? 0)).toBeGreaterThan(replicaReads);
    expect(((await metric(main, 'gateway_db_reads_total{target="primary"}')) ?? 0)).toBeGreaterThan(0);
  });

  it('serves REST GETs from the replica, and a POST then GET by the same token from the primary', async () => {
    const messagesPath = `/api/conversations/${encodeURIComponent(CONTACT)}/messages`;
    const bodiesOf = (page: { body: { messages?: { message: string }[]; data?: { message: string }[] } }) =>
      JSON.stringify(page.body).match(/"message":"[^"]*"/g) ?? [];
    await whilePaused(async () => {
      const sent = await rest(main, a, `/api/conversations/${encodeURIComponent(CONTACT)}/reply`, { message: 'sent while paused' });
      expect(sent.status).toBe(200);
      expect(bodiesOf(await rest(main, a, messagesPath))).toContain('"message":"sent while paused"');
      const other = await rest(main, b, messagesPath);
      expect(other.status).toBe(200);
      expect(bodiesOf(other)).toContain('"message":"hello"');
      expect(bodiesOf(other)).not.toContain('"message":"sent while paused"');
      expect(JSON.stringify((await rest(main, b, '/api/conversations')).body)).not.toContain('sent while paused');
    });
    expect(bodiesOf(await rest(main, b, messagesPath))).toContain('"message":"sent while paused"');
  });

  it('gives a graphql-ws subscription resuming `after:` a cursor what the primary stored while the replica lags', async () => {
    const LATEST = `query Latest($phone: String!) { conversation(phoneNumber: $phone) { messages(first: 1) { edges { cursor node { body } } } } }`;
    const cursor = (await gql(main, b, LATEST, { phone: CONTACT })).conversation.messages.edges[0].cursor as string;
    let connection: WsConnection | null = null;
    await whilePaused(async () => {
      expect((await postInbound(main.url, NUMBER, CONTACT, 'stored while paused')).status).toBe(200);
      expect((await gql(main, b, LATEST, { phone: CONTACT })).conversation.messages.edges[0].cursor).toBe(cursor);
      connection = connectWs(main.url, b);
      const sub = subscribeWs(connection, `subscription ($after: String) { messageReceived(after: $after) { body } }`, { after: cursor });
      expect((await sub.waitFor(1)).map((r) => r.messageReceived.body)).toEqual(['stored while paused']);
      sub.unsubscribe();
    });
    await (connection as WsConnection | null)?.client.dispose();
  });

  it('answers previewReply from the replica without writing (a send stores what the preview only assumes)', async () => {
    const pending = '+12125550199';
    await createContact(main.deps.db, a.organizationId, { phoneNumber: pending, firstName: 'Pat', isTextable: null });
    await main.deps.db.transaction((tx) => appendMessage(tx, a.organizationId, { phoneNumber: pending, direction: 'incoming', body: 'hi' }));
    await replica.caughtUp();
    const served = (await metric(main, 'gateway_db_reads_total{target="replica"}')) ?? 0;
    const PREVIEW = `query Preview($i: SendReplyInput!) { previewReply(input: $i) { segments error { code } } }`;
    // A number that texted us can be texted, whatever its pending lookup says.
    expect((await gql(main, b, PREVIEW, { i: { phoneNumber: pending, message: 'hello' } })).previewReply).toEqual({ segments: 1, error: null });
    expect(await metric(main, 'gateway_db_reads_total{target="replica"}')).toBe(served + 1);
    expect(main.logs.filter((line) => String(line.msg).includes('tried to write'))).toEqual([]);
    const [contact] = await main.deps.db.select({ isTextable: contacts.isTextable }).from(contacts).where(eq(contacts.phoneNumber, pending));
    expect(contact).toEqual({ isTextable: null });
  });

  it('reports the replica\'s lag while it has WAL to replay', async () => {
    expect(await metric(main, 'gateway_db_replica_up')).toBe(1);
    await whilePaused(async () => {
      await star(main, a, true);
      await until(async () => ((await metric(main, 'gateway_db_replica_lag_seconds')) ?? 0) > 0, 10_000, 'a lag above 0');
    });
    const lag = await metric(main, 'gateway_db_replica_lag_seconds');
    expect(Number.isFinite(lag)).toBe(true);
    expect(lag).toBeGreaterThanOrEqual(0);
  });
});

describe('configuration', () => {
  it('needs DATABASE_URL for DATABASE_READ_URL, and changes nothing without it', async () => {
    expect(() => loadConfig({ DATABASE_READ_URL: 'postgres://replica:5432/gateway' })).toThrow(/DATABASE_READ_URL needs DATABASE_URL/);
    const config = loadConfig({ DATABASE_URL: 'postgres://primary:5432/gateway', DATABASE_POOL_SIZE: '7' });
    expect(config.readReplica).toBeNull();
    expect(loadConfig({ DATABASE_URL: 'postgres://primary:5432/gateway', DATABASE_READ_URL: 'postgres://replica:5432/gateway', DATABASE_POOL_SIZE: '7' }).readReplica).toEqual({
      url: 'postgres://replica:5432/gateway',
      poolSize: 7,
      readYourWritesMs: 2_000,
    });
    const plain = await instance({ DATABASE_READ_URL: '' });
    expect(plain.deps.reads).toBeNull();
    expect(plain.app.graphql.construction.plugins.map((p) => p.name)).not.toContain('read-routing');
    expect(await metric(plain, 'gateway_db_replica_up')).toBeUndefined();
    expect(await starredFor(plain, b)).toBeTypeOf('boolean');
    expect(await metric(plain, 'gateway_db_reads_total{target="primary"}')).toBeUndefined();
    expect(main.app.graphql.construction.plugins.map((p) => p.name)).toContain('read-routing');
  });
});

describe('read-your-writes across instances', () => {
  it('holds per instance without Redis', async () => {
    const other = await instance();
    await whilePaused(async () => {
      await star(main, a, false);
      expect(await starredFor(main, a)).toBe(false);
      // The other instance has not heard of the write: the writer reads the lagging replica there.
      expect(await starredFor(other, a)).toBe(true);
    });
  });

  it('holds on every instance with Redis: a write on one sends the token\'s next read on another to the primary', async () => {
    const redis = await startRedis();
    try {
      const first = await instance({ REDIS_URL: redis.url });
      const second = await instance({ REDIS_URL: redis.url });
      await whilePaused(async () => {
        expect(await star(first, a, true)).toMatchObject({ isStarred: true });
        expect(await starredFor(second, a)).toBe(true);
        expect(await starredFor(second, b)).toBe(false);
        expect(await starredFor(first, b)).toBe(false);
      });
      for (const i of [first, second]) {
        await i.app.stop(1_000);
        await i.deps.close();
        instances.splice(instances.indexOf(i), 1);
      }
    } finally {
      await redis.stop();
    }
  }, 30_000);
});

describe('the replica goes away', () => {
  it('answers reads from the primary with one warning, and goes back to the replica when it returns', async () => {
    await replica.stop('fast');
    // A new document (Yoga), a known one (the fast path), REST: all answered, from the primary.
    expect(await star(main, a, false)).toMatchObject({ isStarred: false });
    for (let i = 0; i < 3; i += 1) expect(await starredFor(main, b)).toBe(false);
    expect((await gql(main, b, `{ conversations(first: 5) { edges { node { phoneNumber isStarred } } } }`)).conversations.edges).toContainEqual({
      node: { phoneNumber: CONTACT, isStarred: false },
    });
    expect((await rest(main, b, '/api/conversations')).status).toBe(200);
    const warnings = main.logs.filter((line) => String(line.msg).startsWith('read replica unreachable'));
    expect(warnings).toHaveLength(1);
    expect(await metric(main, 'gateway_db_replica_up')).toBe(0);
    expect(await metric(main, 'gateway_db_replica_lag_seconds')).toBeNaN();

    await replica.start();
    await replica.caughtUp();
    await until(async () => (await metric(main, 'gateway_db_replica_up')) === 1, 10_000, 'the replica to be used again');
    expect(main.logs.some((line) => line.msg === 'read replica is back: reads go to it again')).toBe(true);
    await whilePaused(async () => {
      await star(main, b, true);
      expect(await starredFor(main, b)).toBe(true);
      // A's own write at the start is on the replica; its mark ends within the window.
      await until(async () => (await starredFor(main, a)) === false, 10_000, 'token A to read the replica');
    });
  }, 30_000);
});

/** A private redis-server on a free port (as tests/redis.test.ts runs one). */
async function startRedis() {
  const port = await freePort();
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  // Connecting tells it listens (listening on the port to probe could take it from redis-server).
  await until(
    () =>
      new Promise<boolean>((resolve) => {
        const probe = connect(port, '127.0.0.1');
        probe.once('connect', () => {
          probe.destroy();
          resolve(true);
        });
        probe.once('error', () => resolve(false));
      }),
    10_000,
    'redis-server to listen',
  );
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
