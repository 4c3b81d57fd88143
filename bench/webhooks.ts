import { fork, spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
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
import { summarizeProfile } from './lib/profile-summary.js';
import { cpuDelta, cpuMs, cpuOfAll } from './lib/process-stats.js';
import { SERVER_NODE_FLAGS } from './lib/node-flags.js';

// npx tsx bench/webhooks.ts [--rounds 3] [--duration 10] [--connections 50] [--paced 0.25] [--only with|without] [--profile DIR]
// Issue 18's figure: Q5 (signed inbound Twilio webhooks, a new MessageSid each) with and without 3 webhook
// endpoints subscribed to message.received in every organization written (3 loopback receivers in a process
// of their own, so each inbound message is 3 deliveries). Rounds alternate without / with on the same server
// process and database (gw_bench_webhooks on DATABASE_URL's server, dropped and recreated). Reports per mode
// inbound/s and CPU per inbound webhook (the server, PostgreSQL's backends on the database, this process's
// autocannon, the receivers), the ratio with / without per round, deliveries made during the load and per
// second until drained, the delay from the event's statement to receipt, and the server and PostgreSQL CPU
// per delivery while the backlog left after the load drains. Then a paced run with endpoints, an open loop at
// --paced times Q5's rate without them: deliveries per second and the delay when the gateway is not saturated.

const benchDir = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    organizations: { type: 'string', default: '9' },
    /** The paced run's rate as a share of Q5 without endpoints (0: no paced run). */
    paced: { type: 'string', default: '0.25' },
    /** Only one mode (profiling): `with` or `without`. */
    only: { type: 'string' },
    /** Record the server's V8 CPU profile of each measured load into this folder and print its summary. */
    profile: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
if (values.profile) mkdirSync(values.profile, { recursive: true });
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

// Receivers in a process of their own (as the customer's systems would be, and so their work never delays
// autocannon's event loop here): they answer 204 at once and note when each event arrived.
const receiverProcess = fork(join(benchDir, 'lib', 'webhook-receivers.mjs'), ['3'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const receiverPorts = await new Promise<number[]>((resolve) => receiverProcess.once('message', (message) => resolve(message as number[])));
const askReceivers = <T>(message: string) =>
  new Promise<T>((resolve) => {
    receiverProcess.once('message', (answer) => resolve(answer as T));
    receiverProcess.send(message);
  });
const receivedCount = () => askReceivers<number>('count');

// Organizations, numbers, endpoints (disabled until a "with" round), contacts texting in.
const database = await createDatabase({ kind: 'postgres', url: url.toString(), poolSize: 4 });
await database.migrate();
const config = loadConfig({ DATABASE_URL: url.toString(), WEBHOOK_ALLOW_INSECURE: 'true', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' });
const targets: { from: string; to: string }[] = [];
for (let o = 0; o < organizations; o += 1) {
  const org = await createOrganization(database.db, { name: `Org ${o}` });
  const to = `+1919555${String(1000 + o)}`;
  await addPhoneNumber(database.db, org.organizationId, { phoneNumber: to, isDefault: true });
  for (const port of receiverPorts) {
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
// Never leave the server or the receivers behind, whatever happens here.
process.on('exit', () => {
  child.kill('SIGKILL');
  receiverProcess.kill('SIGKILL');
});
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

/** A message to the server over IPC (bench/servers/stats.mjs), resolved by its answer. */
const ask = (message: string, replyType: string) =>
  new Promise<void>((resolve) => {
    const onMessage = (reply: { type?: string }) => {
      if (reply?.type !== replyType) return;
      child.off('message', onMessage);
      resolve();
    };
    child.on('message', onMessage);
    child.send(message);
  });

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
/** Q5 for `seconds`: closed loop on `connections`, or an open loop at `rate` requests per second. */
const load = (seconds: number, rate?: number) =>
  autocannon({
    url: `${BASE}/webhooks/twilio/messages`,
    method: 'POST',
    connections,
    ...(rate ? { overallRate: rate } : {}),
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

// Deliveries to settle, and events not yet fanned out to their endpoints.
const pending = async () =>
  Number((await sql`select ((select count(*) from webhook_deliveries where status = 'pending') + (select count(*) from webhook_events))::int as n`)[0]!.n);
async function drained() {
  while ((await pending()) > 0) await new Promise((resolve) => setTimeout(resolve, 100));
}

// Every contact texts once first (conversations and contacts exist, as in Q5's dataset).
await load(Math.max(3, Math.ceil(targets.length / 500)));
// PostgreSQL's client backends serving this database (the server's pool and ours): their CPU is the DB CPU.
const backendPids = async () =>
  (await sql`select pid from pg_stat_activity where datname = current_database() and backend_type = 'client backend'`).map((row) => row.pid as number);
type Row = {
  mode: 'without' | 'with';
  rps: number;
  cpuPerRequestUs: number;
  dbCpuPerRequestUs: number;
  /** This process (autocannon) and the receivers' process, on the same 2 cores. */
  benchCpuPerRequestUs: number;
  receiversCpuPerRequestUs: number;
  /** Deliveries received while the load ran (3 per inbound webhook would be keeping up). */
  deliveredInLoad?: number;
  deliveriesPerS?: number;
  drainS?: number;
  /** Server and DB CPU per delivery while the backlog drains after the load (deliveries alone). */
  drainServerCpuPerDeliveryUs?: number;
  drainDbCpuPerDeliveryUs?: number;
  p50?: number;
  p99?: number;
};
const rows: Row[] = [];
for (let round = 0; round < rounds; round += 1) {
  const modes = round % 2 === 0 ? (['without', 'with'] as const) : (['with', 'without'] as const);
  for (const mode of modes.filter((m) => !values.only || m === values.only)) {
    await setEndpoints(mode === 'with');
    await sql.unsafe('vacuum (analyze) contacts, conversations, messages, webhook_events, webhook_deliveries');
    await load(2);
    await drained();
    // This machine kind runs without autovacuum: give the planner the outbox's statistics as it would have them.
    await sql.unsafe('analyze webhook_events, webhook_deliveries, webhook_attempts');
    const receivedBefore = await receivedCount();
    const receiversBefore = cpuMs(receiverProcess.pid!)!;
    const cpuBefore = cpuMs(child.pid!)!;
    const pids = await backendPids();
    const dbBefore = cpuOfAll(pids);
    const benchBefore = process.cpuUsage();
    if (values.profile) await ask('profile:start', 'profile:started');
    receiverProcess.send('delays:start');
    const started = Date.now();
    const result = await load(durationS);
    const loadEnded = Date.now();
    const receivedInLoad = (await receivedCount()) - receivedBefore;
    const receiversCpu = cpuMs(receiverProcess.pid!)! - receiversBefore;
    const cpuAfter = cpuMs(child.pid!)!;
    const benchCpu = process.cpuUsage(benchBefore);
    const dbAfter = cpuOfAll([...new Set([...pids, ...(await backendPids())])]);
    if (values.profile) {
      const file = join(values.profile, `webhooks-${mode}-${round}.cpuprofile`);
      await ask(`profile:stop ${file}`, 'profile:stopped');
      console.log(summarizeProfile(file, 40));
    }
    if (result.non2xx || result.errors) throw new Error(`${result.non2xx} non-2xx, ${result.errors} errors`);
    const total = result.requests.total;
    const row: Row = {
      mode,
      rps: total / durationS,
      cpuPerRequestUs: ((cpuAfter - cpuBefore) * 1000) / total,
      dbCpuPerRequestUs: (cpuDelta(dbBefore, dbAfter) * 1000) / total,
      benchCpuPerRequestUs: (benchCpu.user + benchCpu.system) / total,
      receiversCpuPerRequestUs: (receiversCpu * 1000) / total,
    };
    if (mode === 'with') {
      // What the deliveries left after the load cost on their own (no inbound load): CPU per delivery.
      const drainPids = await backendPids();
      const drainFrom = { received: await receivedCount(), server: cpuMs(child.pid!)!, db: cpuOfAll(drainPids) };
      await drained();
      const drainedAt = Date.now();
      const receivedAfter = await receivedCount();
      const drainDeliveries = receivedAfter - drainFrom.received;
      if (drainDeliveries > 0) {
        row.drainServerCpuPerDeliveryUs = ((cpuMs(child.pid!)! - drainFrom.server) * 1000) / drainDeliveries;
        row.drainDbCpuPerDeliveryUs = (cpuDelta(drainFrom.db, cpuOfAll([...new Set([...drainPids, ...(await backendPids())])])) * 1000) / drainDeliveries;
      }
      const deliveries = receivedAfter - receivedBefore;
      row.deliveredInLoad = receivedInLoad;
      row.deliveriesPerS = deliveries / ((drainedAt - started) / 1000);
      row.drainS = (drainedAt - loadEnded) / 1000;
    }
    const { delays } = await askReceivers<{ delays: number[] }>('delays:stop');
    if (mode === 'with') {
      row.p50 = percentile(delays, 50);
      row.p99 = percentile(delays, 99);
    }
    rows.push(row);
    console.log(JSON.stringify({ round, ...row }));
  }
}
const median = (xs: number[]) => percentile(xs, 50);
const without = rows.filter((r) => r.mode === 'without');
const withHooks = rows.filter((r) => r.mode === 'with');
// Below saturation (an open loop at a share of what Q5 without endpoints served): deliveries keep up, and
// the delay is what a receiver sees in normal operation rather than the backlog of a burst.
let paced: Record<string, number | null> | null = null;
const pacedShare = Number(values.paced);
if (pacedShare > 0 && without.length > 0 && withHooks.length > 0) {
  await setEndpoints(true);
  await drained();
  const rate = Math.round(median(without.map((r) => r.rps)) * pacedShare);
  const receivedBefore = await receivedCount();
  receiverProcess.send('delays:start');
  const started = Date.now();
  const result = await load(durationS, rate);
  const receivedInLoad = (await receivedCount()) - receivedBefore;
  await drained();
  const drainS = (Date.now() - started) / 1000 - durationS;
  const { delays } = await askReceivers<{ delays: number[] }>('delays:stop');
  paced = {
    rate,
    rps: result.requests.total / durationS,
    deliveriesPerS: receivedInLoad / durationS,
    drainS,
    p50: percentile(delays, 50),
    p99: percentile(delays, 99),
  };
  console.log(JSON.stringify({ paced }));
}

console.log(
  JSON.stringify(
    {
      withoutRps: median(without.map((r) => r.rps)),
      withRps: median(withHooks.map((r) => r.rps)),
      ratio: median(withHooks.map((r) => r.rps)) / median(without.map((r) => r.rps)),
      ratioPerRound: Array.from({ length: rounds }, (_, round) => withHooks[round] && without[round] ? withHooks[round]!.rps / without[round]!.rps : null),
      cpuPerRequestUs: { without: median(without.map((r) => r.cpuPerRequestUs)), with: median(withHooks.map((r) => r.cpuPerRequestUs)) },
      dbCpuPerRequestUs: { without: median(without.map((r) => r.dbCpuPerRequestUs)), with: median(withHooks.map((r) => r.dbCpuPerRequestUs)) },
      benchCpuPerRequestUs: { without: median(without.map((r) => r.benchCpuPerRequestUs)), with: median(withHooks.map((r) => r.benchCpuPerRequestUs)) },
      receiversCpuPerRequestUs: { without: median(without.map((r) => r.receiversCpuPerRequestUs)), with: median(withHooks.map((r) => r.receiversCpuPerRequestUs)) },
      deliveriesPerS: median(withHooks.map((r) => r.deliveriesPerS!)),
      delayMs: { p50: median(withHooks.map((r) => r.p50!)), p99: median(withHooks.map((r) => r.p99!)) },
      paced,
    },
    null,
    2,
  ),
);
child.kill('SIGTERM');
await sql.end();
receiverProcess.kill('SIGTERM');
