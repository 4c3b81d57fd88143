import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createClient, type Client } from 'graphql-ws';
import twilio from 'twilio';
import WebSocket from 'ws';
import { createDatabase } from '../src/db/client.js';
import { createContact } from '../src/services/contacts.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { SERVER_NODE_FLAGS } from './lib/node-flags.js';
import { median } from './lib/report.js';

// Soak (not CI): the real server process under mixed load for a few minutes on loopback, with 1,000
// live graphql-ws subscribers: inbox reads (GraphQL and REST), sends, inbound webhooks. Asserts no
// error and bounded server memory, and writes bench/SOAK.md.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/soak npx tsx bench/soak.ts [--minutes 3] [--subscribers 1000] [--workers 16]
//
// With DATABASE_URL it uses (and fills) that PostgreSQL database; without, an embedded PGlite directory
// in a temporary folder (whose data then lives inside the server process and counts in its memory).

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '3' },
    subscribers: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '16' },
    'max-growth-mb': { type: 'string', default: '64' },
  },
});
const MINUTES = Number(values.minutes);
const SUBSCRIBERS = Number(values.subscribers);
const WORKERS = Number(values.workers);
/**
 * Allowed RSS growth from just after the warm-up (the median of the run's second fifth) to the end (the
 * median of its last fifth). Single samples swing by the young generation's size (`--max-semi-space-size`):
 * one sample against another measured where each fell in a collection cycle, not a leak.
 */
const MAX_GROWTH_MB = Number(values['max-growth-mb']);
const AUTH = 'soak-auth-token-0000000000000000';
const PUBLIC = 'https://soak.example.test';
const CONTACTS = Array.from({ length: 200 }, (_, i) => `+1415555${String(1000 + i)}`);

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const rssMb = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
};

async function main() {
  const pgliteDir = process.env.DATABASE_URL ? null : mkdtempSync(join(os.tmpdir(), 'gw-soak-'));
  const storeEnv = process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : { DATA_DIR: pgliteDir! };
  const database = process.env.DATABASE_URL
    ? await createDatabase({ kind: 'postgres', url: process.env.DATABASE_URL, poolSize: 2 })
    : await createDatabase({ kind: 'pglite', dataDir: pgliteDir! });
  await database.migrate();
  const org = await createOrganization(database.db, { name: `Soak ${Date.now()}`, credits: 1_000_000_000 });
  // A fresh sending number per run: numbers are globally unique and a PostgreSQL soak database is reused.
  // The exchange starts with 2 (a NANP exchange cannot start with 0 or 1, which the clock's digits can).
  const { phoneNumber: inboundNumber } = await addPhoneNumber(database.db, org.organizationId, { phoneNumber: `+19192${String(Date.now()).slice(-6)}`, isDefault: true });
  for (const phone of CONTACTS) await createContact(database.db, org.organizationId, { phoneNumber: phone, firstName: 'Soak', lastName: phone.slice(-4), isTextable: true });
  await database.close();

  const port = await freePort();
  // The server as `npm start` runs it: the build in dist/.
  execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const server = spawn(process.execPath, [...SERVER_NODE_FLAGS, '--enable-source-maps', 'dist/main.js'], {
    cwd: root,
    env: {
      ...process.env,
      ...storeEnv,
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      SEED_DEMO: 'false',
      TWILIO_AUTH_TOKEN: AUTH,
      PUBLIC_BASE_URL: PUBLIC,
      RATE_LIMIT_PER_MINUTE: '0',
      SIMULATED_STATUS_DELAY_MS: '500',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let serverErrors = '';
  server.stderr!.on('data', (chunk) => (serverErrors += chunk));
  // The server's own error lines (pino JSON, level 50+), to explain any failure.
  const serverErrorLogs: string[] = [];
  let pending = '';
  server.stdout!.on('data', (chunk) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (/"level":(50|60)/.test(line) && serverErrorLogs.length < 5) serverErrorLogs.push(line.slice(0, 1500));
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // starting
    }
    if (i > 300) throw new Error('server did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const auth = { authorization: `Bearer ${org.apiToken}` };
  const counts = { graphql: 0, rest: 0, send: 0, webhook: 0, errors: 0, events: 0, subscriptionErrors: 0, closes: 0 };
  const errorSamples: string[] = [];
  const fail = (what: string) => {
    counts.errors += 1;
    if (errorSamples.length < 10) errorSamples.push(what.slice(0, 300));
  };

  // 1,000 subscribers, one WebSocket each, spread over the three topics.
  const clients: Client[] = [];
  const perSubscriber = new Array<number>(SUBSCRIBERS).fill(0);
  const topics = ['subscription { messageReceived { body } }', 'subscription { conversationUpdated { phoneNumber unreadCount } }', 'subscription { messageStatusChanged { status } }'];
  for (let i = 0; i < SUBSCRIBERS; i += 1) {
    const client = createClient({
      url: `${url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: auth.authorization },
      retryAttempts: 0,
      on: { closed: () => (counts.closes += 1) },
    });
    clients.push(client);
    client.subscribe(
      { query: topics[i % topics.length]! },
      {
        next: () => {
          counts.events += 1;
          perSubscriber[i]! += 1;
        },
        error: (error) => {
          counts.subscriptionErrors += 1;
          fail(`subscription: ${JSON.stringify(error)}`);
        },
        complete: () => {},
      },
    );
    if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((resolve) => setTimeout(resolve, 2_000));

  const INBOX = `{ conversations(first: 20) { edges { node { phoneNumber unreadCount contact { firstName } lastMessage { body } messages(first: 5) { edges { node { body status } } } } } } }`;
  const SEND = `mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename ... on Error { code } } }`;
  let sid = 0;
  const operations = [
    { weight: 50, run: async () => {
      const res = await fetch(`${url}/graphql`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ query: INBOX }) });
      const body = (await res.json()) as { errors?: unknown };
      counts.graphql += 1;
      if (res.status !== 200 || body.errors) fail(`graphql ${res.status} ${JSON.stringify(body.errors)}`);
    } },
    { weight: 10, run: async () => {
      const res = await fetch(`${url}/api/conversations?unread=true`, { headers: auth });
      await res.arrayBuffer();
      counts.rest += 1;
      if (res.status !== 200) fail(`rest ${res.status}`);
    } },
    { weight: 20, run: async () => {
      const phone = CONTACTS[Math.floor(Math.random() * CONTACTS.length)]!;
      const res = await fetch(`${url}/graphql`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ query: SEND, variables: { input: { phoneNumber: phone, message: `Soak reply ${Date.now()}` } } }) });
      const body = (await res.json()) as { data?: { sendReply?: { __typename: string } }; errors?: unknown };
      counts.send += 1;
      if (body.data?.sendReply?.__typename !== 'SendReplyPayload') fail(`send ${res.status} ${JSON.stringify(body)}`);
    } },
    { weight: 20, run: async () => {
      const params = {
        MessageSid: `SM${Date.now().toString(16)}${(sid++).toString(16).padStart(10, '0')}`.padEnd(34, '0'),
        AccountSid: 'AC00000000000000000000000000000000',
        From: CONTACTS[Math.floor(Math.random() * CONTACTS.length)]!,
        To: inboundNumber,
        Body: `Soak inbound ${sid}, thanks!`,
        NumMedia: '0',
      };
      const signature = twilio.getExpectedTwilioSignature(AUTH, `${PUBLIC}/webhooks/twilio/messages`, params);
      const res = await fetch(`${url}/webhooks/twilio/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
        body: new URLSearchParams(params).toString(),
      });
      await res.text();
      counts.webhook += 1;
      if (res.status !== 200) fail(`webhook ${res.status}`);
    } },
  ];
  const total = operations.reduce((n, op) => n + op.weight, 0);
  const pick = () => {
    let r = Math.random() * total;
    for (const op of operations) if ((r -= op.weight) < 0) return op;
    return operations[0]!;
  };

  const started = Date.now();
  const end = started + MINUTES * 60_000;
  const samples: Array<{ s: number; rssMb: number }> = [];
  const sampler = setInterval(() => samples.push({ s: Math.round((Date.now() - started) / 1000), rssMb: Math.round(rssMb(server.pid!)) }), 5_000);
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (Date.now() < end) {
        try {
          await pick().run();
        } catch (error) {
          fail(`request threw: ${String(error)}`);
        }
      }
    }),
  );
  clearInterval(sampler);
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // last events in flight
  const seconds = (Date.now() - started) / 1000;

  const medianOf = (window: typeof samples) =>
    window.length ? Math.round(median(window.map((sample) => sample.rssMb))) : samples[samples.length - 1]!.rssMb;
  const warmWindow = samples.filter((sample) => sample.s >= seconds / 5 && sample.s < (2 * seconds) / 5);
  const endWindow = samples.filter((sample) => sample.s >= (4 * seconds) / 5);
  const warm = { from: warmWindow[0]?.s ?? 0, to: warmWindow.at(-1)?.s ?? 0, rssMb: medianOf(warmWindow) };
  const last = { from: endWindow[0]?.s ?? 0, to: endWindow.at(-1)?.s ?? 0, rssMb: medianOf(endWindow) };
  const growth = last.rssMb - warm.rssMb;
  const starved = perSubscriber.filter((n) => n === 0).length;
  const closesDuringRun = counts.closes;
  for (const client of clients) await client.dispose();
  server.kill('SIGTERM');
  const exit = await new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
  if (pgliteDir) rmSync(pgliteDir, { recursive: true, force: true });

  const requests = counts.graphql + counts.rest + counts.send + counts.webhook;
  const ok = counts.errors === 0 && starved === 0 && closesDuringRun === 0 && growth <= MAX_GROWTH_MB && exit === 0;
  const report = [
    `# Soak result`,
    ``,
    `Last run: ${new Date().toISOString()} on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ` +
      `${process.env.DATABASE_URL ? 'PostgreSQL' : 'embedded PGlite'}. Command: \`npx tsx bench/soak.ts --minutes ${MINUTES} --subscribers ${SUBSCRIBERS} --workers ${WORKERS}\`.`,
    ``,
    `| | |`,
    `| --- | --- |`,
    `| duration | ${seconds.toFixed(0)} s |`,
    `| requests | ${requests} (${(requests / seconds).toFixed(0)}/s): ${counts.graphql} inbox queries, ${counts.rest} REST lists, ${counts.send} sends, ${counts.webhook} inbound webhooks |`,
    `| errors | ${counts.errors} |`,
    `| subscribers | ${SUBSCRIBERS} over graphql-ws, ${counts.events} events delivered, ${starved} received none, ${closesDuringRun} sockets closed during the run, ${counts.subscriptionErrors} subscription errors |`,
    `| server RSS | median ${warm.rssMb} MB after warm-up (${warm.from}-${warm.to} s) -> median ${last.rssMb} MB at the end (${last.from}-${last.to} s): ` +
      `${growth >= 0 ? '+' : ''}${growth} MB (bound: +${MAX_GROWTH_MB} MB); peak ${Math.max(...samples.map((s) => s.rssMb))} MB |`,
    `| shutdown | SIGTERM with ${SUBSCRIBERS} sockets open: exit code ${exit} |`,
    `| verdict | ${ok ? 'PASS' : 'FAIL'} |`,
    ``,
    `RSS samples (s: MB): ${samples.map((s) => `${s.s}: ${s.rssMb}`).join(', ')}`,
    ...(errorSamples.length ? ['', 'Error samples:', ...errorSamples.map((e) => `- ${e}`)] : []),
    ...(serverErrors.trim() ? ['', 'Server stderr (first lines):', '```', ...serverErrors.split('\n').slice(0, 10), '```'] : []),
    ...(serverErrorLogs.length ? ['', 'Server error log (first lines):', '```', ...serverErrorLogs, '```'] : []),
    ``,
  ].join('\n');
  writeFileSync(join(here, 'SOAK.md'), report);
  console.log(report);
  process.exit(ok ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
