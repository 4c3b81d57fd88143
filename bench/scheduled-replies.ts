import { parseArgs } from 'node:util';
import pino from 'pino';
import postgres from 'postgres';
import { loadConfig } from '../src/config.js';
import { createDatabase } from '../src/db/client.js';
import { assembleDeps, closeDeps, type Deps } from '../src/deps.js';
import { addPhoneNumber, createOrganization } from '../src/services/organizations.js';
import { scheduleReply } from '../src/services/replies/index.js';
import { benchDatabaseUrl } from './lib/database.js';

// npx tsx bench/scheduled-replies.ts [--replies 10000] [--instances 1]
// Issue 17's figure: N replies scheduled for the same second all go out, each exactly once. DATABASE_URL
// names a PostgreSQL server; the run uses (drops and recreates) the database gw_bench_scheduled on it.
// The replies are scheduled through the service (an hour ahead), then all moved to one due second three
// seconds ahead (as a burst scheduled for that second would be); the instances' job runners send them through
// the simulated provider, whose send() is counted per message to check exactly once.

const { values } = parseArgs({
  options: { replies: { type: 'string', default: '10000' }, instances: { type: 'string', default: '1' } },
});
const replies = Number(values.replies);
const instances = Number(values.instances);

const server = new URL(benchDatabaseUrl());
server.pathname = '/postgres';
const url = new URL(server);
url.pathname = '/gw_bench_scheduled';
const admin = postgres(server.toString(), { max: 1, onnotice: () => {} });
await admin.unsafe('drop database if exists gw_bench_scheduled with (force)');
await admin.unsafe('create database gw_bench_scheduled');
await admin.end();

const config = loadConfig({ DATABASE_URL: url.toString(), LOG_LEVEL: 'warn', JOB_POLL_MS: '200', SIMULATED_STATUS_DELAY_MS: '1000', SEED_DEMO: 'false' });
const logger = pino({ level: 'warn' });
const all: Deps[] = [];
for (let i = 0; i < instances; i += 1) {
  const database = await createDatabase({ kind: 'postgres', url: url.toString(), poolSize: config.databasePoolSize });
  if (i === 0) await database.migrate();
  all.push(assembleDeps(config, database, logger));
}
const [first] = all as [Deps];

const org = await createOrganization(first.db, { name: 'Burst', credits: replies * 2 });
await addPhoneNumber(first.db, org.organizationId, { phoneNumber: '+19195550100', isDefault: true });
const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
await sql`insert into contacts (organization_id, phone_number, first_name, is_textable)
  select ${org.organizationId}, '+1415' || lpad((2000000 + g)::text, 7, '0'), 'Contact ' || g, true from generate_series(1, ${replies}) g`;
const phones = (await sql`select phone_number from contacts where organization_id = ${org.organizationId} order by phone_number`).map((r) => r.phone_number as string);

const started = Date.now();
const later = new Date(Date.now() + 3600_000);
let next = 0;
await Promise.all(
  Array.from({ length: 50 }, async () => {
    while (next < phones.length) {
      const phoneNumber = phones[next++]!;
      const outcome = await scheduleReply(first, org.organizationId, { phoneNumber, message: `Your table is ready, ${phoneNumber}` }, later);
      if (!outcome.ok) throw outcome.error;
    }
  }),
);
const scheduleSeconds = (Date.now() - started) / 1000;

// Count every provider call, per message.
const sends = new Map<string, number>();
for (const deps of all) {
  const send = deps.sms.send.bind(deps.sms);
  deps.sms.send = (message) => {
    sends.set(message.messageId, (sends.get(message.messageId) ?? 0) + 1);
    return send(message);
  };
}

// All due in the same second, three seconds from now.
const [{ due }] = await sql`select date_trunc('second', now() + interval '3 seconds') as due`;
await sql`update messages set send_at = ${due}, created_at = ${due} where organization_id = ${org.organizationId} and status = 'scheduled'`;
await sql`update jobs set run_at = ${due} where queue = 'scheduled_reply'`;
for (const deps of all) deps.jobs.start();

const dueAt = (due as Date).getTime();
let sent = 0;
let failed = 0;
const deadline = dueAt + 120_000;
while (Date.now() < deadline) {
  const [row] = await sql`select count(*) filter (where provider_message_id is not null)::int as sent, count(*) filter (where status = 'failed')::int as failed
    from messages where organization_id = ${org.organizationId}`;
  sent = row!.sent;
  failed = row!.failed;
  if (sent + failed >= replies) break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const allOutSeconds = (Date.now() - dueAt) / 1000;
await new Promise((resolve) => setTimeout(resolve, 1000));
const twice = [...sends.values()].filter((count) => count > 1).length;
const [{ credits }] = await sql`select credits from organizations where id = ${org.organizationId}`;
const [{ jobsLeft }] = await sql`select count(*)::int as "jobsLeft" from jobs`;
const perInstance = all.map((deps) => deps.jobs.ran);

console.log(`scheduled ${replies} replies in ${scheduleSeconds.toFixed(1)} s (${Math.round(replies / scheduleSeconds)}/s, 50 at a time, through scheduleReply)`);
console.log(`all due at ${new Date(dueAt).toISOString()}; ${sent} sent, ${failed} failed, ${allOutSeconds.toFixed(1)} s after the due second`);
console.log(`provider calls: ${[...sends.values()].reduce((a, b) => a + b, 0)} for ${sends.size} messages; sent twice: ${twice}`);
console.log(`credits left: ${credits} (of ${replies * 2}); jobs left: ${jobsLeft}; jobs run per instance: ${perInstance.join(', ')}`);
const ok = sent === replies && failed === 0 && twice === 0 && sends.size === replies && Number(credits) === replies && Number(jobsLeft) === 0;
console.log(ok ? 'OK: every reply went out exactly once' : 'NOT OK');

await sql.end();
for (const deps of all) await closeDeps(deps);
process.exit(ok ? 0 : 1);
