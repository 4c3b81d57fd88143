import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import twilio from 'twilio';
import { createDatabase } from '../src/db/client.js';
import { operatorCaller } from '../src/services/access.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { createWebhookEndpoint } from '../src/services/webhooks/endpoints.js';
import { systemLookup } from '../src/services/webhooks/url-policy.js';
import { loadConfig } from '../src/config.js';
import { benchDatabaseUrl } from './lib/database.js';
import { percentile } from './lib/percentile.js';
import { cpuMs } from './lib/process-stats.js';
import { SERVER_NODE_FLAGS } from './lib/node-flags.js';

// npx tsx bench/webhooks.ts [--rounds 3] [--duration 10] [--connections 50]
// Issue 18's figure: Q5 (signed inbound Twilio webhooks, a new MessageSid each) with and without 3 webhook
// endpoints subscribed to message.received in every organization written (3 loopback receivers, so each
// inbound message is 3 deliveries). Rounds alternate without / with on the same server process and database
// (gw_bench_webhooks on DATABASE_URL's server, dropped and recreated). Reports inbound/s and server CPU per
// webhook for both, their ratio, deliveries per second, and the delay from the event's statement to receipt.

const benchDir = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    organizations: { type: 'string', default: '9' },
  },
});
const rounds = Number(values.rounds);
const durationS = Number(values.duration);
const connections = Number(values.connections);
const organizations = Number(values.organizations);
const AUTH_TOKEN = 'bench-twilio-auth-token';
const PORT = 4110;
const BASE = `http://127.0.0.1:${PORT}`;

const server = new URL(benchDatabaseUrl());
server.pathname = '/postgres';
const url = new URL(server);
url.pathname = '/gw_bench_webhooks';
const admin = postgres(server.toString(), { max: 1, onnotice: () => {} });
await admin.unsafe('drop database if exists gw_bench_webhooks with (force)');
await admin.unsafe('create database gw_bench_webhooks');
await admin.end();

// Receivers: answer 200 at once, and note when each event arrived.
const delays: number[] = [];
let received = 0;
let measuring = false;
const receivers: Server[] = [];
for (let i = 0; i < 3; i += 1) {
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = Date.now();
      received += 1;
      if (measuring) delays.push(at - Date.parse(JSON.parse(Buffer.concat(chunks).toString()).timestamp));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receivers.push(receiver);
}

// Organizations, numbers, endpoints (disabled until a "with" round), contacts texting in.
const database = await createDatabase({ kind: 'postgres', url: url.toString(), poolSize: 4 });
await database.migrate();
const config = loadConfig({ DATABASE_URL: url.toString(), WEBHOOK_ALLOW_INSECURE: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' });
const targets: { from: string; to: string }[] = [];
for (let o = 0; o < organizations; o += 1) {
  const org = await createOrganization(database.db, { name: `Org ${o}` });
  const to = `+1919555${String(1000 + o)}`;
  await addPhoneNumber(database.db, org.organizationId, { phoneNumber: to, isDefault: true });
  for (const receiver of receivers) {
    const { port } = receiver.address() as { port: number };
    await createWebhookEndpoint({ db: database.db, config, webhookLookup: systemLookup }, operatorCaller(org.organizationId), {
      url: `http://127.0.0.1:${port}/hooks`,
      events: ['message.received'],
    });
  }
  for (let c = 0; c < 200; c += 1) targets.push({ from: `+1415555${String(o)}${String(c).padStart(3, '0')}`, to });
}
// Interleave organizations, as Q5 does.
targets.sort((a, b) => a.from.slice(-3).localeCompare(b.from.slice(-3)) || a.to.localeCompare(b.to));
const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
const setEndpoints = (enabled: boolean) => sql`update webhook_endpoints set enabled = ${enabled}`;
await setEndpoints(false);
await database.close();

execFileSync(process.execPath, [join(benchDir, '..', 'scripts', 'build.mjs')], { stdio: 'inherit' });
const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, join(benchDir, 'servers', 'gateway.mjs')], {
  env: {
    ...process.env,
    DATABASE_URL: url.toString(),
    DATABASE_POOL_SIZE: '10',
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(PORT),
    LOG_LEVEL: 'warn',
    SEED_DEMO: 'false',
    RATE_LIMIT_PER_MINUTE: '1000000000',
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    PUBLIC_BASE_URL: BASE,
    WEBHOOK_ALLOW_INSECURE: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  },
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
// Never leave the server behind, whatever happens here.
process.on('exit', () => child.kill('SIGKILL'));
process.on('uncaughtException', (error) => {
  console.error(error);
  process.exit(1);
});
for (let i = 0; ; i += 1) {
  try {
    await fetch(`${BASE}/health`);
    break;
  } catch {
    if (i > 300) throw new Error('the gateway did not start');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const requireFromBench = createRequire(join(benchDir, 'package.json'));
const autocannon = requireFromBench('autocannon') as (options: Record<string, unknown>) => Promise<{ requests: { total: number }; non2xx: number; errors: number }>;
const run = Date.now().toString(16);
let sequence = 0;
let turn = 0;
const nextWebhook = () => {
  const target = targets[turn++ % targets.length]!;
  sequence += 1;
  const params = {
    MessageSid: `SM${run}${String(sequence).padStart(32 - run.length, '0')}`,
    AccountSid: 'AC00000000000000000000000000000000',
    From: target.from,
    To: target.to,
    Body: 'Thanks, see you there!',
    NumMedia: '0',
  };
  return {
    body: new URLSearchParams(params).toString(),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${BASE}/webhooks/twilio/messages`, params),
    },
  };
};
const load = (seconds: number) =>
  autocannon({
    url: `${BASE}/webhooks/twilio/messages`,
    method: 'POST',
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/webhooks/twilio/messages',
        setupRequest: (req: Record<string, any>) => {
          const next = nextWebhook();
          return { ...req, body: next.body, headers: { ...req.headers, ...next.headers } };
        },
      },
    ],
  });

const pending = async () => Number((await sql`select count(*)::int as n from webhook_deliveries where status = 'pending'`)[0]!.n);
async function drained() {
  while ((await pending()) > 0) await new Promise((resolve) => setTimeout(resolve, 100));
}

// Every contact texts once first (conversations and contacts exist, as in Q5's dataset).
await load(Math.max(3, Math.ceil(targets.length / 500)));
type Row = { mode: 'without' | 'with'; rps: number; cpuPerRequestUs: number; deliveriesPerS?: number; drainS?: number; p50?: number; p99?: number };
const rows: Row[] = [];
for (let round = 0; round < rounds; round += 1) {
  for (const mode of round % 2 === 0 ? (['without', 'with'] as const) : (['with', 'without'] as const)) {
    await setEndpoints(mode === 'with');
    await sql.unsafe('vacuum (analyze) contacts, conversations, messages, webhook_deliveries');
    await load(2);
    await drained();
    // This machine kind runs without autovacuum: give the planner the outbox's statistics as it would have them.
    await sql.unsafe('analyze webhook_deliveries, webhook_attempts');
    delays.length = 0;
    const receivedBefore = received;
    const cpuBefore = cpuMs(child.pid!)!;
    measuring = true;
    const started = Date.now();
    const result = await load(durationS);
    const cpuAfter = cpuMs(child.pid!)!;
    const loadEnded = Date.now();
    if (result.non2xx || result.errors) throw new Error(`${result.non2xx} non-2xx, ${result.errors} errors`);
    const row: Row = { mode, rps: result.requests.total / durationS, cpuPerRequestUs: ((cpuAfter - cpuBefore) * 1000) / result.requests.total };
    if (mode === 'with') {
      await drained();
      const drainedAt = Date.now();
      const deliveries = received - receivedBefore;
      row.deliveriesPerS = deliveries / ((drainedAt - started) / 1000);
      row.drainS = (drainedAt - loadEnded) / 1000;
      row.p50 = percentile(delays, 50);
      row.p99 = percentile(delays, 99);
    }
    measuring = false;
    rows.push(row);
    console.log(JSON.stringify({ round, ...row }));
  }
}
const median = (xs: number[]) => percentile(xs, 50);
const without = rows.filter((r) => r.mode === 'without');
const withHooks = rows.filter((r) => r.mode === 'with');
console.log(
  JSON.stringify(
    {
      withoutRps: median(without.map((r) => r.rps)),
      withRps: median(withHooks.map((r) => r.rps)),
      ratio: median(withHooks.map((r) => r.rps)) / median(without.map((r) => r.rps)),
      cpuPerRequestUs: { without: median(without.map((r) => r.cpuPerRequestUs)), with: median(withHooks.map((r) => r.cpuPerRequestUs)) },
      deliveriesPerS: median(withHooks.map((r) => r.deliveriesPerS!)),
      delayMs: { p50: median(withHooks.map((r) => r.p50!)), p99: median(withHooks.map((r) => r.p99!)) },
    },
    null,
    2,
  ),
);
child.kill('SIGTERM');
await sql.end();
for (const receiver of receivers) receiver.close();
