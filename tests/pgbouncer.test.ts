import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { HotQuery } from '../src/db/rows.js';
import { assembleDeps, closeDeps, type Deps } from '../src/deps.js';
import { revokeApiToken } from '../src/services/api-tokens.js';
import { createContact } from '../src/services/contacts.js';
import { receiveInbound } from '../src/services/inbound.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { startPgbouncer, type Pgbouncer } from './helpers/pgbouncer.js';
import { startPrivatePostgres, type PrivatePostgres } from './helpers/private-postgres.js';
import { connectWs, postInbound, subscribeWs, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL, until } from './helpers/realtime.js';
import { freePort, startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';

// The real server process behind Debian's pgbouncer in transaction mode (DATABASE_URL = the pooler,
// DATABASE_DIRECT_URL = PostgreSQL itself), on a private cluster, so this file runs the same in both CI
// runs. pgbouncer keeps 3 server connections per database and logs in to PostgreSQL as the role `pooled`,
// while the gateway's direct connections log in as `postgres`: the role (table owners, the statement log)
// shows which way each piece of work went. PostgreSQL logs every statement with its role and database.

const NUMBER = '+19195550100';
const CONTACTS = Array.from({ length: 20 }, (_, i) => `+1415555${String(2000 + i)}`);
const POOL_SIZE = 12;
const SERVER_POOL = 3;

let cluster: PrivatePostgres;
let admin: postgres.Sql;
let bouncer: Pgbouncer;
let receiver: WebhookReceiver;
let server: ServerProcess | null = null;
let other: { database: Database; deps: Deps } | null = null;
let org: { organizationId: string; apiToken: string };
let revocable: { organizationId: string; apiToken: string };

const directUrl = (database: string) => Object.assign(new URL(cluster.url), { pathname: `/${database}` }).toString();
const gatewayEnv = (database: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: bouncer.urlFor(database),
  DATABASE_DIRECT_URL: directUrl(database),
  DATABASE_POOL_SIZE: String(POOL_SIZE),
  TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
  PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
  RATE_LIMIT_PER_MINUTE: '0',
  SIMULATED_STATUS_DELAY_MS: '50',
  JOB_POLL_MS: '100',
  WEBHOOK_ALLOW_INSECURE: 'true',
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_POLL_MS: '50',
  ...extra,
});

/** Statements PostgreSQL logged (log_statement = all), as `role@database statement`. */
const statementLog = () =>
  readFileSync(cluster.logFile, 'utf8')
    .split('\n')
    .map((line) => / (\S+)@(\S+) LOG:\s+(?:statement|execute [^:]*): (.*)$/.exec(line))
    .filter((match) => match !== null)
    .map(([, role, database, statement]) => ({ role: role!, database: database!, statement: statement! }));

async function graphql(query: string, variables: Record<string, unknown> = {}, as = org) {
  const response = await fetch(`${server!.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${as.apiToken}`, 'x-organization-id': as.organizationId },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, body: (await response.json()) as { data?: any; errors?: unknown[] } };
}

async function rest(method: string, path: string, options: { json?: unknown; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${server!.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${org.apiToken}`,
      'x-organization-id': org.organizationId,
      ...(options.json === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    body: options.json === undefined ? undefined : JSON.stringify(options.json),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** Tables and other relations in `database` owned by `role`. */
async function ownedBy(database: string, role: string): Promise<string[]> {
  const connection = postgres(directUrl(database), { max: 1, onnotice: () => {} });
  try {
    const rows = await connection<{ name: string }[]>`
      select n.nspname || '.' || c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      join pg_roles r on r.oid = c.relowner where r.rolname = ${role} and n.nspname in ('public', 'drizzle') order by 1`;
    return rows.map((row) => row.name);
  } finally {
    await connection.end();
  }
}

beforeAll(async () => {
  cluster = await startPrivatePostgres();
  admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
  await admin.unsafe('create role pooled login superuser');
  await admin.unsafe(`alter system set log_line_prefix = '%m [%p] %u@%d '`);
  await admin.unsafe('select pg_reload_conf()');
  for (const database of ['gw', 'gw_cli', 'gw_redis']) {
    await admin.unsafe(`create database ${database}`);
    await admin.unsafe(`alter database ${database} set log_statement = 'all'`);
  }
  bouncer = await startPgbouncer({ serverUrl: cluster.url, serverUser: 'pooled', defaultPoolSize: SERVER_POOL });
  receiver = await WebhookReceiver.start();
  server = await startServerProcess(gatewayEnv('gw', { LOG_LEVEL: 'info' }));

  // Another instance in this process, also through the pooler: it writes the fixtures, and its events and
  // revocations reach the server only through NOTIFY and the server's LISTEN.
  const database = await createDatabase({ kind: 'postgres', url: bouncer.urlFor('gw'), directUrl: directUrl('gw'), poolSize: 4 });
  const config = loadConfig({ NODE_ENV: 'test', ...gatewayEnv('gw') });
  other = { database, deps: assembleDeps(config, database, pino({ level: 'silent' })) };
  await other.deps.events.ready;
  org = await createOrganization(database.db, { name: 'Pooled', credits: 100 });
  await addPhoneNumber(database.db, org.organizationId, { phoneNumber: NUMBER, isDefault: true });
  for (const phoneNumber of CONTACTS) await createContact(database.db, org.organizationId, { phoneNumber, isTextable: true });
  revocable = await createOrganization(database.db, { name: 'Revocable' });
}, 60_000);

afterAll(async () => {
  if (other) {
    await closeDeps(other.deps);
  }
  if (server && server.child.exitCode === null) {
    server.child.kill('SIGTERM');
    await server.exited;
  }
  await receiver?.close();
  await bouncer?.stop();
  await admin?.end();
  await cluster?.destroy();
});

describe('behind pgbouncer in transaction mode', () => {
  it('applies the migrations through the direct URL', async () => {
    const owned = await ownedBy('gw', 'postgres');
    expect(owned).toContain('drizzle.__drizzle_migrations');
    expect(owned).toContain('public.messages');
    expect(await ownedBy('gw', 'pooled')).toEqual([]);
  });

  it('answers GraphQL queries and mutations: sendReply charges credits once per idempotency key', async () => {
    const SEND = `mutation($input: SendReplyInput!) {
      sendReply(input: $input) { __typename ... on SendReplyPayload { creditsCharged message { id status } } }
    }`;
    const input = { phoneNumber: CONTACTS[0], message: 'Through the pooler', idempotencyKey: 'pooled-1' };
    const first = await graphql(SEND, { input });
    const again = await graphql(SEND, { input });
    expect(first.body.data.sendReply).toMatchObject({ __typename: 'SendReplyPayload', creditsCharged: 1 });
    expect(again.body.data.sendReply.message.id).toBe(first.body.data.sendReply.message.id);
    const read = await graphql(`{ organization { credits } conversation(phoneNumber: "${CONTACTS[0]}") { messages(first: 5) { edges { node { body } } } } }`);
    expect(read.body.errors).toBeUndefined();
    expect(read.body.data.organization.credits).toBe(99);
    expect(read.body.data.conversation.messages.edges.map((edge: any) => edge.node.body)).toEqual(['Through the pooler']);
  });

  it('serves the REST routes', async () => {
    const reply = () =>
      rest('POST', `/api/conversations/${encodeURIComponent(CONTACTS[1]!)}/reply`, { json: { message: 'REST, pooled' }, headers: { 'Idempotency-Key': 'rest-1' } });
    const sent = await reply();
    expect(sent.status).toBe(200);
    expect((await reply()).body.messageLog.id).toBe(sent.body.messageLog.id);
    const list = await rest('GET', '/api/conversations?limit=50');
    expect(list.status).toBe(200);
    const page = await rest('GET', `/api/conversations/${encodeURIComponent(CONTACTS[1]!)}/messages`);
    expect(page.status).toBe(200);
    expect(JSON.stringify(page.body)).toContain('REST, pooled');
  });

  it('takes inbound Twilio webhooks and delivers events to graphql-ws subscribers, also from another instance (LISTEN on the direct URL)', async () => {
    const connection = connectWs(server!.url, org);
    const received = subscribeWs(connection, `subscription { messageReceived { body } }`);
    // The subscription is live once a message posted to this instance reaches it: one stored before it
    // started is not replayed (no after:), so post again until one arrives (the first usually does).
    for (let attempt = 1; ; attempt += 1) {
      expect((await postInbound(server!.url, NUMBER, CONTACTS[2]!, `webhook, pooled ${attempt}`)).status).toBe(200);
      await until(() => received.data.length > 0, 2_000, 'the webhook to reach the subscriber').catch(() => {});
      if (received.data.length > 0) break;
      expect(attempt).toBeLessThan(5);
    }
    // Stored by the other instance: it reaches this one through NOTIFY (sent through the pooler) and LISTEN.
    await receiveInbound(other!.deps, { to: NUMBER, from: CONTACTS[3]!, body: 'from the other instance', provider: 'cli' });
    const bodies = () => received.data.map((data) => data.messageReceived.body as string);
    await until(() => bodies().includes('from the other instance'), 15_000, 'the message from the other instance');
    expect(bodies().filter((body) => !body.startsWith('webhook, pooled'))).toEqual(['from the other instance']);
    const metrics = await (await fetch(`${server!.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_event_delivery_lag_seconds_count\{source="postgres"\} [1-9]/);
    received.unsubscribe();
    await connection.client.dispose();

    // A revocation committed by the other instance closes this one's sockets (its LISTEN on access changes).
    const revoked = connectWs(server!.url, revocable);
    subscribeWs(revoked, `subscription { messageReceived { body } }`);
    await until(async () => revoked.messages.includes('connection_ack'), 10_000, 'the socket');
    await revokeApiToken(other!.database.db, revocable.apiToken);
    await until(() => revoked.closes.some((close) => close.code === 4401), 15_000, 'the socket to close on revocation');
    await revoked.client.dispose();

    // Every LISTEN went straight to PostgreSQL; none through the pooler (whose server connections are `pooled`).
    const listens = statementLog().filter((entry) => /^listen /i.test(entry.statement));
    expect(listens.length).toBeGreaterThan(0);
    expect(listens.every((entry) => entry.role === 'postgres' && entry.database === 'gw')).toBe(true);
  });

  it('sends a scheduled reply through the job runner', async () => {
    // Within 5 s of now it would go out at once: 8 s leaves room for a slow request.
    const sendAt = new Date(Date.now() + 8_000).toISOString();
    const scheduled = await graphql(
      `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on SendReplyPayload { message { status } } } }`,
      { input: { phoneNumber: CONTACTS[4], message: 'Later, pooled', sendAt } },
    );
    expect(scheduled.body.data.sendReply).toEqual({ __typename: 'SendReplyPayload', message: { status: 'SCHEDULED' } });
    const THREAD = `{ conversation(phoneNumber: "${CONTACTS[4]}") { messages(first: 1) { edges { node { status providerMessageId } } } } }`;
    const status = async () => (await graphql(THREAD)).body.data?.conversation?.messages.edges[0]?.node;
    await until(async () => (await status())?.status === 'DELIVERED', 20_000, 'the scheduled reply delivered');
    expect((await status()).providerMessageId).toBeTruthy();
  });

  it('delivers an outgoing webhook', async () => {
    const created = await graphql(
      `mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { __typename ... on CreateWebhookEndpointPayload { secret } } }`,
      { input: { url: receiver.url, events: ['MESSAGE_RECEIVED'] } },
    );
    expect(created.body.data.createWebhookEndpoint.__typename).toBe('CreateWebhookEndpointPayload');
    receiver.secret = created.body.data.createWebhookEndpoint.secret;
    expect((await postInbound(server!.url, NUMBER, CONTACTS[5]!, 'hook, pooled')).status).toBe(200);
    await until(() => receiver.distinct('message.received').length === 1, 20_000, 'the webhook');
    const [delivered] = receiver.distinct('message.received');
    expect(delivered!.verified).toBe(true);
    expect(delivered!.data.message).toBe('hook, pooled');
  });

  it('serves many concurrent requests on more client connections than pgbouncer has server connections', async () => {
    const INBOX = `{ conversations(first: 20) { edges { node { phoneNumber lastMessage { body } messages(first: 5) { edges { node { body } } } } } } }`;
    const queries = Array.from({ length: 200 }, () => graphql(INBOX));
    const sends = CONTACTS.slice(6).map((phoneNumber, i) =>
      graphql(`mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename } }`, {
        input: { phoneNumber, message: `Burst ${i}`, idempotencyKey: `burst-${i}` },
      }),
    );
    const inbound = CONTACTS.slice(6).map((from, i) => postInbound(server!.url, NUMBER, from, `inbound burst ${i}`));
    const answers = await Promise.all([...queries, ...sends]);
    expect(answers.filter((answer) => answer.status !== 200 || answer.body.errors)).toEqual([]);
    for (const answer of answers.slice(200)) expect(answer.body.data.sendReply.__typename).toBe('SendReplyPayload');
    expect((await Promise.all(inbound)).map((answer) => answer.status)).toEqual(inbound.map(() => 200));

    // pgbouncer's view: the gateway's client connections outnumber the server connections they shared.
    const clients = (await bouncer.admin('show clients')).filter((client) => client.database === 'gw');
    const pools = (await bouncer.admin('show pools')).filter((pool) => pool.database === 'gw');
    const serverConnections = pools.reduce((sum, pool) => sum + Number(pool.sv_active) + Number(pool.sv_idle) + Number(pool.sv_used) + Number(pool.sv_tested) + Number(pool.sv_login), 0);
    expect(clients.length).toBeGreaterThan(SERVER_POOL);
    expect(serverConnections).toBeLessThanOrEqual(SERVER_POOL);
    const poolers = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where usename = 'pooled' and datname = 'gw'`;
    expect(poolers[0]!.n).toBeLessThanOrEqual(SERVER_POOL);

    // This instance's own side of the pool, as the metric reports it behind a pooler.
    const metrics = await (await fetch(`${server!.url}/metrics`)).text();
    expect(metrics).toContain(`gateway_db_pool_connections{state="max"} ${POOL_SIZE}`);
    expect(metrics).toMatch(/gateway_db_pool_connections\{state="busy"\} \d+/);
    expect(metrics).toMatch(/gateway_db_pool_connections\{state="waiting"\} \d+/);
  });

  it('answers every statement, also one sent while another is unanswered on the same pooled connection', async () => {
    // postgres.js writes a statement behind one still running on its connection (pipelining), and without
    // prepared statements one with parameters goes out in two steps (Parse/Describe/Flush, then Bind/Execute/
    // Sync). Behind another statement, pgbouncer gave the server connection back to its pool at the first
    // one's ReadyForQuery and dropped the replies to the second ("got packet from server when not linked"):
    // it never got an answer, or another client got it. One connection, so every statement goes on it.
    const database = await createDatabase({ kind: 'postgres', url: bouncer.urlFor('gw'), directUrl: directUrl('gw'), poolSize: 1 });
    try {
      await database.ping();
      for (let round = 1; round <= 20; round += 1) {
        const [, withParameter, without, another] = await Promise.all([
          database.ping(),
          database.db.execute(sql`select ${round}::int as n`),
          database.db.execute(sql`select 'plain' as s`),
          database.db.execute(sql`select ${-round}::int as n`),
        ]);
        expect([withParameter, without, another].map((result) => [...(result as unknown as Record<string, unknown>[])])).toEqual([
          [{ n: round }],
          [{ s: 'plain' }],
          [{ n: -round }],
        ]);
      }
    } finally {
      await database.close();
    }
    expect(bouncer.output()).not.toMatch(/when not linked/);
  });

  it('a graphql-ws subscriber resuming with after: gets every message while readiness checks share its one pooled connection', async () => {
    // The readiness checks (statements without parameters) keep the connection busy; the resumed stream's
    // reads (with parameters) went out behind them and, through pgbouncer, never came back: the bench's
    // rolling restart saw a subscriber miss every message after its resume.
    const single = await startServerProcess(gatewayEnv('gw', { DATABASE_POOL_SIZE: '1' }));
    let checking = true;
    const checks = Array.from({ length: 3 }, async () => {
      // Until the signal's refusals: a stopped instance answers 503, then no more.
      while (checking) await fetch(`${single.url}/health/ready`).then((response) => response.text(), () => (checking = false));
    });
    const QUERY = 'subscription($after: String) { messageReceived(after: $after) { cursor body } }';
    type Received = { messageReceived: { cursor: string; body: string } };
    const connections: ReturnType<typeof connectWs>[] = [];
    try {
      const first = connectWs(single.url, org);
      connections.push(first);
      const live = subscribeWs<Received>(first, QUERY);
      await until(async () => first.messages.includes('connection_ack'), 10_000, 'the socket');
      expect((await postInbound(single.url, NUMBER, CONTACTS[1]!, 'resume 0')).status).toBe(200);
      let cursor = (await live.waitFor(1, 15_000))[0]!.messageReceived.cursor;
      await first.client.dispose();
      for (let round = 1; round <= 5; round += 1) {
        // Stored while nobody listens: the next subscriber replays them with after:, then gets one live.
        const missed = [`resume ${round}a`, `resume ${round}b`];
        for (const body of missed) expect((await postInbound(single.url, NUMBER, CONTACTS[1]!, body)).status).toBe(200);
        const connection = connectWs(single.url, org);
        connections.push(connection);
        const resumed = subscribeWs<Received>(connection, QUERY, { after: cursor });
        expect((await resumed.waitFor(2, 15_000)).map((data) => data.messageReceived.body)).toEqual(missed);
        expect((await postInbound(single.url, NUMBER, CONTACTS[1]!, `resume ${round} live`)).status).toBe(200);
        const all = await resumed.waitFor(3, 15_000);
        expect(all.map((data) => data.messageReceived.body)).toEqual([...missed, `resume ${round} live`]);
        cursor = all[2]!.messageReceived.cursor;
        if (round < 5) await connection.client.dispose();
      }
      // The last one still subscribed and the checks still running: SIGTERM ends its socket with 1001, and
      // the instance exits (it waited forever on a statement whose answer pgbouncer had dropped).
      single.child.kill('SIGTERM');
      expect(await single.exited).toEqual({ code: 0, signal: null });
      expect(connections.at(-1)!.closes.map((close) => close.code)).toEqual([1001]);
    } finally {
      checking = false;
      await Promise.all(checks);
      for (const connection of connections) await connection.client.dispose();
      if (single.child.exitCode === null) single.child.kill('SIGKILL');
    }
  }, 120_000);

  it('logs no prepared-statement errors, in the gateway or in PostgreSQL', async () => {
    const postgresLog = readFileSync(cluster.logFile, 'utf8');
    expect(server!.output()).not.toMatch(/prepared statement/i);
    expect(postgresLog).not.toMatch(/prepared statement/i);
    expect(postgresLog).not.toMatch(/ERROR: /);
    expect(bouncer.output()).not.toMatch(/prepared statement/i);
  });

  it('`cli db migrate` migrates through the direct URL', async () => {
    const root = join(import.meta.dirname, '..');
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined && key !== 'DATABASE_URL') env[key] = value;
    Object.assign(env, { DATABASE_URL: bouncer.urlFor('gw_cli'), DATABASE_DIRECT_URL: directUrl('gw_cli'), LOG_LEVEL: 'warn' });
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'dist', 'cli.js'), '--json', 'db', 'migrate'], { cwd: root, env });
    expect(JSON.parse(stdout)).toEqual({ migrated: true });
    expect(await ownedBy('gw_cli', 'postgres')).toContain('drizzle.__drizzle_migrations');
    expect(await ownedBy('gw_cli', 'pooled')).toEqual([]);
  });
});

describe('behind pgbouncer with Redis', () => {
  let redis: ChildProcess | null = null;
  let redisServer: ServerProcess | null = null;
  afterAll(async () => {
    if (redisServer && redisServer.child.exitCode === null) {
      redisServer.child.kill('SIGTERM');
      await redisServer.exited;
    }
    if (redis && redis.exitCode === null) {
      const exited = new Promise((resolve) => redis!.once('exit', resolve));
      redis.kill('SIGKILL');
      await exited;
    }
  });

  it('LISTENs nowhere: events travel over Redis', async () => {
    const port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    redisServer = await startServerProcess(gatewayEnv('gw_redis', { REDIS_URL: `redis://127.0.0.1:${port}` }));
    const database = await createDatabase({ kind: 'postgres', url: bouncer.urlFor('gw_redis'), directUrl: directUrl('gw_redis'), poolSize: 2 });
    let tenant: { organizationId: string; apiToken: string };
    try {
      tenant = await createOrganization(database.db, { name: 'Pooled with Redis' });
      await addPhoneNumber(database.db, tenant.organizationId, { phoneNumber: NUMBER, isDefault: true });
    } finally {
      await database.close();
    }
    const connection = connectWs(redisServer.url, tenant);
    const received = subscribeWs(connection, `subscription { messageReceived { body } }`);
    await until(async () => connection.messages.includes('connection_ack'), 10_000, 'the socket');
    expect((await postInbound(redisServer.url, NUMBER, CONTACTS[0]!, 'over redis')).status).toBe(200);
    expect((await received.waitFor(1, 15_000))[0]).toEqual({ messageReceived: { body: 'over redis' } });
    await connection.client.dispose();
    const statements = statementLog().filter((entry) => entry.database === 'gw_redis');
    expect(statements.length).toBeGreaterThan(0);
    expect(statements.filter((entry) => /^listen /i.test(entry.statement))).toEqual([]);
  });
});

describe('pooled connections (checked straight on PostgreSQL)', () => {
  // Drizzle asks postgres.js to prepare named statements (HotQuery); behind a pooler, the client-wide setting wins.
  const preparedAfterHotRead = async (options: { url?: string; directUrl?: string; poolerPrepared?: boolean }) => {
    // Straight to PostgreSQL with one connection, so pg_prepared_statements is the session that ran the read.
    const database = await createDatabase({ kind: 'postgres', url: directUrl('gw'), poolSize: 1, ...options });
    try {
      await new HotQuery(sql`select ${sql.placeholder('n')}::int as n`).rows(database.db, { n: 1 });
      const [row] = (await database.db.execute(sql`select count(*)::int as n from pg_prepared_statements`)) as unknown as { n: number }[];
      return row!.n;
    } finally {
      await database.close();
    }
  };

  it('prepares none behind a pooler, unless DATABASE_POOLER_PREPARED', async () => {
    expect(await preparedAfterHotRead({ directUrl: directUrl('gw') })).toBe(0);
    expect(await preparedAfterHotRead({ directUrl: directUrl('gw'), poolerPrepared: true })).toBeGreaterThan(0);
    expect(await preparedAfterHotRead({})).toBeGreaterThan(0);
    // Without DATABASE_DIRECT_URL nothing changes: postgres.js's own URL parameter still turns preparing off.
    expect(await preparedAfterHotRead({ url: `${directUrl('gw')}?prepare=false` })).toBe(0);
  });

  it('counts its own statements and transactions for gateway_db_pool_connections', async () => {
    const database = await createDatabase({ kind: 'postgres', url: directUrl('gw'), directUrl: directUrl('gw'), poolSize: 2 });
    try {
      expect(await database.poolStats()).toEqual({ busy: 0, waiting: 0, max: 2 });
      // Held open until released: two plain statements and a transaction, for a pool of two.
      const lock = postgres(directUrl('gw'), { max: 1, onnotice: () => {} });
      await lock.unsafe('create table if not exists held (id int)');
      const release = await lock.reserve();
      await release.unsafe('begin; lock table held in access exclusive mode');
      const running = Promise.all([
        database.db.execute(sql`select count(*) from held`),
        database.db.execute(sql`select count(*) from held`),
        database.db.transaction((tx) => tx.execute(sql`select count(*) from held`)),
      ]);
      await until(async () => (await database.poolStats()).waiting === 1, 10_000, 'three pieces of work in flight');
      expect(await database.poolStats()).toEqual({ busy: 2, waiting: 1, max: 2 });
      await release.unsafe('commit');
      release.release();
      await running;
      expect(await database.poolStats()).toEqual({ busy: 0, waiting: 0, max: 2 });
      await lock.unsafe('drop table held');
      await lock.end();
    } finally {
      await database.close();
    }
  });

  it('refuses DATABASE_DIRECT_URL without DATABASE_URL', () => {
    expect(() => loadConfig({ DATABASE_DIRECT_URL: 'postgres://postgres@127.0.0.1:5432/gw' })).toThrow(/DATABASE_DIRECT_URL needs DATABASE_URL/);
    const config = loadConfig({ DATABASE_URL: 'postgres://postgres@127.0.0.1:6432/gw', DATABASE_DIRECT_URL: 'postgres://postgres@127.0.0.1:5432/gw' });
    expect(config).toMatchObject({ databaseDirectUrl: 'postgres://postgres@127.0.0.1:5432/gw', databasePoolerPrepared: false });
  });
});
