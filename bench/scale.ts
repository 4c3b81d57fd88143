import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import twilio from 'twilio';
import { prepareDatabase } from './lib/database.js';
import { checkDataset, loadDataset, QUICK_DATASET, writeTargets } from './lib/dataset.js';
import { freePort, gatewayInstance, ownCpuMs, sleep, startHaproxy, startRedis, waitForServers, watchServers, machineCpuMs, type GatewayInstance, type Haproxy, type Service } from './lib/scale-cluster.js';
import { runMixedLoad, startWebhooks, type Autocannon, type LoadPlan, type Target } from './lib/scale-load.js';
import { renderScaleReport, type CpuGroups, type EventWindow, type ProxyCounters, type PhaseResult, type RateLimitResult, type RestartResult, type ScaleRun } from './lib/scale-report.js';
import { startDatabase, type DatabaseTopology } from './lib/scale-database.js';
import { connectSubscribers, type SubscriberFleet } from './lib/subscriber-fleet.js';

// npm run bench:scale [-- --quick] [--instances 1,2,3] [--duration S] [--subscribers N] [--connections N] [--logs DIR --log-level info]
// A measured multi-instance deployment on loopback: PostgreSQL, Redis, HAProxy (round-robin, health
// checks on /health/ready) in front of 1, then 2, then 3 gateway instances, under a mixed load with
// graphql-ws subscribers spread over the instances; then a rolling restart under load and a shared rate
// limit. Checks correctness (every inbound message reaches every subscriber exactly once, no request
// fails) and measures cost (throughput, p99, CPU per request of every process, CPU per event per
// instance, PostgreSQL connections). Writes bench/SCALE.md.

const benchDir = dirname(fileURLToPath(import.meta.url));
const rootDir = join(benchDir, '..');
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    instances: { type: 'string', default: '1,2,3' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    'event-seconds': { type: 'string' },
    subscribers: { type: 'string' },
    connections: { type: 'string', default: '16' },
    'webhooks-per-second': { type: 'string', default: '2' },
    'event-rate': { type: 'string', default: '5' },
    'rate-limit': { type: 'string', default: '120' },
    pooler: { type: 'string', default: 'pgbouncer' },
    replica: { type: 'string', default: 'on' },
    'pgbouncer-pool-size': { type: 'string', default: '10' },
    output: { type: 'string', default: join(benchDir, 'SCALE.md') },
    // Diagnosis: every instance's whole output to <logs>/<name>.log, at this LOG_LEVEL (default warn).
    logs: { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
const quick = values.quick!;
const instanceCounts = values.instances!.split(',').map(Number);
const maxInstances = Math.max(...instanceCounts);
const durationS = Number(values.duration ?? (quick ? 5 : 15));
const warmupS = Number(values.warmup ?? (quick ? 2 : 5));
const eventSeconds = Number(values['event-seconds'] ?? (quick ? 4 : 10));
const subscriberCount = Number(values.subscribers ?? (quick ? 200 : 1000));
const connections = Number(values.connections);
/** Inbound webhooks per second beside the mixed load and during the rolling restart. */
const webhooksPerSecond = Number(values['webhooks-per-second']);
/** Inbound webhooks per second in the events-only windows (CPU per event). */
const eventRate = Number(values['event-rate']);
const rateLimit = Number(values['rate-limit']);
const TWILIO_AUTH_TOKEN = 'scale-twilio-auth-token';
const METRICS_TOKEN = 'scale-metrics-token-0000000000';
/** Longer than HAProxy's inter x fall (500 ms x 2), so it has stopped sending new requests before the drain. */
const SHUTDOWN_DELAY_MS = 3_000;
const log = (line: string) => console.log(`[scale ${new Date().toISOString().slice(11, 19)}] ${line}`);

/** Everything started, in start order; stopped in reverse on exit or interrupt. */
const cleanups: (() => Promise<unknown>)[] = [];
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const step of cleanups.reverse()) await step().catch((error: unknown) => console.error('cleanup:', error));
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().then(() => process.exit(143)));

type Cluster = {
  database: DatabaseTopology;
  /** The primary itself: the correctness checks read what was stored there. */
  primarySql: postgres.Sql;
  redis: Service;
  haproxy: Haproxy;
  instances: GatewayInstance[];
  /** The subscriber processes of the moment (their CPU is a group of its own). */
  fleetPids: number[];
};

function cpuSnapshot(cluster: Cluster): CpuGroups {
  const gateways: Record<string, number> = {};
  for (const instance of cluster.instances) if (instance.running()) gateways[instance.name] = ownCpuMs(instance.pid());
  return {
    gateways,
    ...cluster.database.cpu(),
    HAProxy: ownCpuMs(cluster.haproxy.pid),
    Redis: ownCpuMs(cluster.redis.pid),
    'load generator': ownCpuMs(process.pid),
    subscribers: cluster.fleetPids.reduce((sum, pid) => sum + ownCpuMs(pid), 0),
  };
}

function cpuDelta(before: CpuGroups, after: CpuGroups): CpuGroups {
  const gateways: Record<string, number> = {};
  for (const [name, ms] of Object.entries(after.gateways)) gateways[name] = ms - (before.gateways[name] ?? 0);
  const result: CpuGroups = { gateways };
  for (const key of Object.keys(after)) if (key !== 'gateways') result[key] = (after[key] as number) - ((before[key] as number | undefined) ?? 0);
  return result;
}

/** Subscribers connected through HAProxy, and subscribed: a probe message reached every one of them. */
async function subscribe(cluster: Cluster, webhooks: ReturnType<typeof startWebhooks>, org: { organizationId: string; apiToken: string }) {
  const fleet = await connectSubscribers({
    url: `${cluster.haproxy.url.replace('http', 'ws')}/graphql`,
    apiToken: org.apiToken,
    organizationId: org.organizationId,
    subscribers: subscriberCount,
    processes: 2,
  });
  if (fleet.connected !== subscriberCount) throw new Error(`only ${fleet.connected} of ${subscriberCount} subscribers connected`);
  const probes: string[] = [];
  for (let attempt = 0; ; attempt += 1) {
    const tag = `probe-${Date.now()}-${attempt}`;
    probes.push(await webhooks.once(tag));
    const deadline = Date.now() + 10_000;
    let got = 0;
    while (Date.now() < deadline && (got = await fleet.probe(tag)) < subscriberCount) await sleep(200);
    if (got === subscriberCount) break;
    if (attempt === 4) throw new Error(`after 5 probes only ${got} of ${subscriberCount} subscribers hear messages`);
  }
  return { fleet, probes };
}

/**
 * Ids of the messages stored for the webhooks sent (every attempt: one whose answer was lost may still have
 * been stored), and how many were not stored exactly once: an answered one stored 0 or 2+ times, any stored twice.
 */
async function storedIds(sql: postgres.Sql, answered: string[], attempted: string[]): Promise<{ ids: string[]; problems: number }> {
  if (attempted.length === 0) return { ids: [], problems: 0 };
  // In commit order (inbound messages of an organization commit in (created_at, id) order), so a gap reads as a range.
  const rows = await sql`select id, provider_message_id from messages where provider_message_id in ${sql(attempted)} order by created_at, id`;
  const bySid = new Map<string, number>();
  for (const row of rows) bySid.set(row.provider_message_id as string, (bySid.get(row.provider_message_id as string) ?? 0) + 1);
  const problems = [...bySid.values()].filter((n) => n > 1).length + answered.filter((sid) => !bySid.has(sid)).length;
  return { ids: rows.map((row) => row.id as string), problems };
}

/**
 * Waits until every subscriber has every stored message (or 20 s), then checks exactly-once. The stored
 * messages are read again each time: a webhook the client gave up on may still be stored after it.
 */
async function settleAndCheck(fleet: SubscriberFleet, stored: () => Promise<{ ids: string[]; problems: number }>, allowed: string[]) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const expected = await stored();
    const check = await fleet.check(expected.ids, allowed);
    if ((check.missing === 0 && check.unexpected === 0) || Date.now() > deadline) {
      for (const subscriber of check.incomplete) log(`  incomplete subscriber (of ${expected.ids.length} messages): ${JSON.stringify(subscriber)}`);
      return { check, stored: expected };
    }
    await sleep(500);
  }
}

/** Transactions committed or rolled back in the database so far (each statement outside one is one). */
async function transactions(sql: postgres.Sql): Promise<number> {
  const [row] = await sql`select (xact_commit + xact_rollback)::float8 as n from pg_stat_database where datname = current_database()`;
  return row!.n as number;
}

/**
 * Idle for 3 s, then inbound webhooks only at `eventRate` for `eventSeconds`: CPU by process group in both,
 * so the cost per event can be taken net of what the instances spend idle.
 */
async function eventWindow(cluster: Cluster, webhooks: ReturnType<typeof startWebhooks>): Promise<EventWindow> {
  let before = cpuSnapshot(cluster);
  await sleep(3_000);
  const idle = cpuDelta(before, cpuSnapshot(cluster));
  const sentBefore = webhooks.stats().sids.length;
  const xactsBefore = await transactions(cluster.primarySql);
  before = cpuSnapshot(cluster);
  const started = performance.now();
  webhooks.start(eventRate);
  await sleep(eventSeconds * 1000);
  await webhooks.stop();
  await sleep(1_000); // the last fan-out
  const cpu = cpuDelta(before, cpuSnapshot(cluster));
  const seconds = (performance.now() - started) / 1000;
  // Backends report their counts within a second of going idle.
  await sleep(1_000);
  const xacts = (await transactions(cluster.primarySql)) - xactsBefore;
  return { idle, idleSeconds: 3, cpu, seconds, events: webhooks.stats().sids.length - sentBefore, transactions: xacts };
}

/** HAProxy's counters and server states over a window; stop() takes the clients' count of its own error pages. */
async function proxyWindow(haproxy: Haproxy) {
  const before = await haproxy.failures();
  const stopWatching = watchServers(haproxy);
  return async (proxyAnswers: number): Promise<ProxyCounters> => {
    const { changes, noneUp } = stopWatching();
    const after = await haproxy.failures();
    return {
      retries: after.retries - before.retries,
      redispatches: after.redispatches - before.redispatches,
      connectionErrors: after.connectionErrors - before.connectionErrors,
      responseErrors: after.responseErrors - before.responseErrors,
      proxyAnswers,
      changes,
      noneUp,
    };
  };
}

async function perServer(haproxy: Haproxy): Promise<Record<string, { status: string; sessions: number }>> {
  return Object.fromEntries([...(await haproxy.servers())].map(([name, s]) => [name, { status: s.status, sessions: s.sessions }]));
}

async function main() {
  const started = Date.now();
  const requireFromBench = createRequire(join(benchDir, 'package.json'));
  const autocannon = requireFromBench('autocannon') as Autocannon;
  log('Building dist/ (scripts/build.mjs)');
  execFileSync(process.execPath, [join(rootDir, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const dir = mkdtempSync(join(os.tmpdir(), 'gw-scale-'));
  if (values.logs) mkdirSync(values.logs, { recursive: true });
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));

  log('Starting PostgreSQL (private cluster) and loading the quick dataset');
  const database = await startDatabase({ database: 'gw_scale', pgbouncer: values.pooler === 'pgbouncer', replica: values.replica === 'on', pgbouncerPoolSize: Number(values['pgbouncer-pool-size']) });
  cleanups.push(() => database.destroy());
  const url = database.directUrl;
  await prepareDatabase(url);
  const primarySql = postgres(url, { max: 2, onnotice: () => {} });
  cleanups.push(() => primarySql.end());
  const dataset = await loadDataset(primarySql, QUICK_DATASET, () => {});
  await checkDataset(primarySql, QUICK_DATASET);
  await primarySql.unsafe('vacuum (analyze)');
  log(`Dataset loaded in ${dataset.loadSeconds}s (${dataset.messages} messages)`);
  await database.startReadersAndPooler();
  log(database.describe().join(' '));
  const [pgVersion] = await primarySql`select current_setting('server_version') as version, current_setting('max_connections') as max`;

  // Writers: organization 1 receives the inbound webhooks (its subscribers count them), sends go to the others.
  const targets: Target[] = await writeTargets(primarySql, dataset);
  const inboundOrg = targets[0]!.organizationId;
  const inboundTargets = targets.filter((target) => target.organizationId === inboundOrg);
  const plan: LoadPlan = {
    reader: { organizationId: dataset.organizationId, apiToken: dataset.apiToken, threadPhone: dataset.bigConversationPhone },
    sendTargets: targets.filter((target) => target.organizationId !== inboundOrg),
  };

  const redis = await startRedis(await freePort());
  cleanups.push(() => redis.stop());
  const haproxyPort = await freePort();
  const publicBaseUrl = `http://127.0.0.1:${haproxyPort}`;
  const ports = await Promise.all(Array.from({ length: maxInstances }, () => freePort()));
  const baseEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !/^(DATABASE_|REDIS_URL|PORT$|HOST$)/.test(key)) baseEnv[key] = value;
  Object.assign(baseEnv, {
    NODE_ENV: 'production',
    LOG_LEVEL: values['log-level']!,
    SEED_DEMO: 'false',
    ...database.gatewayEnv,
    DATABASE_POOL_SIZE: '10',
    REDIS_URL: redis.url,
    PUBLIC_BASE_URL: publicBaseUrl,
    TWILIO_AUTH_TOKEN,
    METRICS_TOKEN,
    // The load's tokens are not to be limited; the rate-limit phase restarts the instances with its own.
    RATE_LIMIT_PER_MINUTE: '1000000000',
    SHUTDOWN_DELAY_MS: String(SHUTDOWN_DELAY_MS),
  });
  const instances = ports.map((port, index) => gatewayInstance(rootDir, `gw${index + 1}`, port, baseEnv, values.logs));
  cleanups.push(() => Promise.all(instances.map((instance) => instance.stop())));
  log(`Starting ${instances[0]!.name} and HAProxy`);
  await instances[0]!.start();
  const haproxy = await startHaproxy(dir, haproxyPort, instances.map((instance) => ({ name: instance.name, port: instance.port })), 1);
  cleanups.push(() => haproxy.stop());
  const cluster: Cluster = { database, primarySql, redis, haproxy, instances, fleetPids: [] };
  const sign = (target: string, params: Record<string, string>) => twilio.getExpectedTwilioSignature(TWILIO_AUTH_TOKEN, target, params);
  const webhooksFor = (label: string) => startWebhooks({ url: haproxy.url, perSecond: webhooksPerSecond, targets: inboundTargets, sign, publicBaseUrl, label });

  const phases: PhaseResult[] = [];
  const readinessFailures = () => instances.reduce((sum, instance) => sum + instance.readinessFailures(), 0);
  for (const count of instanceCounts) {
    for (const instance of instances.slice(0, count)) {
      if (!instance.running()) await instance.start();
      await haproxy.command(`enable server gateways/${instance.name}`);
    }
    for (const instance of instances.slice(count)) await haproxy.command(`disable server gateways/${instance.name}`);
    await waitForServers(haproxy, instances.slice(0, count).map((instance) => instance.name), 'UP');
    log(`${count} instance(s) up: connecting ${subscriberCount} subscribers through HAProxy`);
    const sessionsBefore = await perServer(haproxy);
    const webhooks = webhooksFor(`p${count}`);
    const { fleet, probes } = await subscribe(cluster, webhooks, { organizationId: inboundOrg, apiToken: inboundTargets[0]!.apiToken });
    cluster.fleetPids = fleet.pids();
    const sessionsAfter = await perServer(haproxy);
    const spread = Object.fromEntries(instances.slice(0, count).map((i) => [i.name, sessionsAfter[i.name]!.sessions - (sessionsBefore[i.name]?.sessions ?? 0)]));

    log(`  events only: ${eventRate}/s for ${eventSeconds} s`);
    const events = await eventWindow(cluster, webhooks);

    log(`  mixed load: ${connections} connections, warm-up ${warmupS} s, measured ${durationS} s, webhooks ${webhooksPerSecond}/s`);
    webhooks.start();
    const warm = await runMixedLoad(autocannon, { url: haproxy.url, connections, seconds: warmupS, plan });
    const hookBefore = webhooks.stats();
    const stopProxyWindow = await proxyWindow(haproxy);
    const answeredBefore = webhooks.stats().answered;
    const before = cpuSnapshot(cluster);
    const machineBefore = machineCpuMs();
    const readinessBefore = readinessFailures();
    const stopSampling = database.sampleConnections();
    const load = await runMixedLoad(autocannon, { url: haproxy.url, connections, seconds: durationS, plan });
    const cpu = cpuDelta(before, cpuSnapshot(cluster));
    const machineAfter = machineCpuMs();
    const readinessInWindow = readinessFailures() - readinessBefore;
    const peakConnections = stopSampling();
    const poolerState = await database.poolerState();
    const webhooksInWindow = webhooks.stats().answered - answeredBefore;
    await webhooks.stop();
    const hook = webhooks.stats();
    const proxy = await stopProxyWindow(load.proxyAnswers + hook.proxyAnswers - hookBefore.proxyAnswers);
    const loadSids = hook.sids.filter((sid) => !probes.includes(sid));
    const probeIds = (await storedIds(primarySql, probes, probes)).ids;
    const { check, stored } = await settleAndCheck(fleet, () => storedIds(primarySql, loadSids, hook.attempted.filter((sid) => !probes.includes(sid))), probeIds);
    await fleet.close();
    cluster.fleetPids = [];
    const result: PhaseResult = {
      instances: count,
      spread,
      events,
      warmFailed: warm.failed,
      load,
      webhooks: { sent: hook.sids.length - probes.length + hook.failed, failed: hook.failed, inWindow: webhooksInWindow, p99: hook.p99, failures: hook.failures },
      cpu,
      connections: peakConnections,
      stored: { sent: stored.ids.length, problems: stored.problems },
      check,
      proxy,
      readinessFailures: readinessInWindow,
      poolerState,
      machineBusyCores: ((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total)) * os.cpus().length,
    };
    phases.push(result);
    log(
      `  ${count} instance(s): ${load.rps.toFixed(0)} req/s p99 ${load.p99.toFixed(1)} ms, failed ${load.failed + warm.failed + hook.failed}; ` +
        `subscribers ${check.complete}/${check.subscribers} complete, missing ${check.missing}, doubled ${check.doubled}`,
    );
  }

  // The restart runs at half of what one instance fewer managed: a rolling restart is done below saturation
  // (HAProxy's checks wait in the same queue as the requests; at saturation they time out and it takes every
  // instance out), and while one instance is away the others must carry its share.
  const fewer = phases.find((phase) => phase.instances === maxInstances - 1) ?? phases[0]!;
  const restartRate = Math.max(10, Math.round(fewer.load.rps / 2));
  const restart = await rollingRestart(cluster, autocannon, plan, webhooksFor, inboundTargets[0]!, restartRate);
  const limit = await rateLimitPhase(cluster, plan);
  await cleanup();

  const run: ScaleRun = {
    command: `npm run bench:scale${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    finishedAt: new Date().toISOString(),
    wallSeconds: Math.round((Date.now() - started) / 1000),
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version, postgres: pgVersion!.version as string, haproxy: execFileSync('haproxy', ['-v']).toString().split('\n')[0]! },
    settings: { durationS, warmupS, eventSeconds, eventRate, subscribers: subscriberCount, connections, webhooksPerSecond, rateLimit, shutdownDelayMs: SHUTDOWN_DELAY_MS, dataset: `${dataset.messages} messages, ${dataset.organizations} organizations, ${dataset.conversations} conversations` },
    phases,
    restart,
    limit,
    notes: database.describe(),
  };
  writeFileSync(values.output!, renderScaleReport(run));
  log(`Wrote ${values.output} in ${run.wallSeconds} s`);
  const ok = phases.every((p) => p.load.failed === 0 && p.warmFailed === 0 && p.webhooks.failed === 0 && p.check.complete === p.check.subscribers && p.check.doubled === 0 && p.stored.problems === 0) && restart.ok && limit.ok;
  process.exit(ok ? 0 : 1);
}

/** The primary's sessions that are not idle (what they run, what they wait for) and pgbouncer's pools. */
async function describeDatabaseWork(cluster: Cluster): Promise<string[]> {
  const rows = await cluster.primarySql`
    select pid, application_name, state, wait_event_type, wait_event, now() - xact_start as in_xact, now() - query_start as in_query, left(query, 200) as query
    from pg_stat_activity where backend_type = 'client backend' and state <> 'idle' and pid <> pg_backend_pid()`;
  return [...rows.map((row) => JSON.stringify(row)), ...(await cluster.database.poolerState())];
}

/** SIGTERM each instance in turn under load, start it again; subscribers move to the others and resume. */
async function rollingRestart(
  cluster: Cluster,
  autocannon: Autocannon,
  plan: LoadPlan,
  webhooksFor: (label: string) => ReturnType<typeof startWebhooks>,
  inbound: Target,
  rate: number,
): Promise<RestartResult> {
  const running = cluster.instances.filter((instance) => instance.running());
  log(`Rolling restart of ${running.length} instances under load (${rate} requests/s, webhooks ${webhooksPerSecond}/s)`);
  const webhooks = webhooksFor('rr');
  const { fleet, probes } = await subscribe(cluster, webhooks, { organizationId: inbound.organizationId, apiToken: inbound.apiToken });
  cluster.fleetPids = fleet.pids();
  const stopProxyWindow = await proxyWindow(cluster.haproxy);
  const readinessFailures = () => cluster.instances.reduce((sum, instance) => sum + instance.readinessFailures(), 0);
  const readinessBefore = readinessFailures();
  webhooks.start();
  let finish!: () => void;
  const restartsDone = new Promise<void>((resolve) => (finish = resolve));
  const loadDone = runMixedLoad(autocannon, { url: cluster.haproxy.url, connections, seconds: 600, plan, stopWhen: restartsDone, overallRate: rate });
  const exits: { name: string; code: number | null; downAfterMs: number; backAfterMs: number }[] = [];
  try {
    await sleep(2_000);
    for (const instance of running) {
      const t0 = performance.now();
      const exited = instance.stop();
      await waitForServers(cluster.haproxy, [instance.name], 'DOWN');
      const downAfterMs = performance.now() - t0;
      // Still running 10 s after SIGTERM: what the database is doing for it, to explain a hang.
      const late = setTimeout(() => void describeDatabaseWork(cluster).then((lines) => log(`  ${instance.name} still running 10 s after SIGTERM; database work:\n${lines.join('\n')}`)), 10_000);
      const code = await exited;
      clearTimeout(late);
      await instance.start();
      await waitForServers(cluster.haproxy, [instance.name], 'UP');
      // null: still running 30 s after SIGTERM, so killed: what it printed last says where it hung.
      if (code === null) log(`  ${instance.name} did not exit within 30 s of SIGTERM; its last output:\n${instance.output().slice(-2000)}`);
      exits.push({ name: instance.name, code, downAfterMs, backAfterMs: performance.now() - t0 });
      log(`  ${instance.name}: exit ${code}, DOWN in HAProxy after ${downAfterMs.toFixed(0)} ms, UP again after ${(performance.now() - t0).toFixed(0)} ms`);
      await sleep(1_000);
    }
    await sleep(1_000);
  } finally {
    finish();
  }
  const load = await loadDone;
  await webhooks.stop();
  const hook = webhooks.stats();
  const proxy = await stopProxyWindow(load.proxyAnswers + hook.proxyAnswers);
  const loadSids = hook.sids.filter((sid) => !probes.includes(sid));
  const { check, stored } = await settleAndCheck(
    fleet,
    () => storedIds(cluster.primarySql, loadSids, hook.attempted.filter((sid) => !probes.includes(sid))),
    (await storedIds(cluster.primarySql, probes, probes)).ids,
  );
  // Subscribers that resumed with after: replay on their own stream, outside the shared execution: what an event costs now.
  log(`  events only after the restart: ${eventRate}/s for ${eventSeconds} s`);
  const eventsAfter = await eventWindow(cluster, webhooks);
  await fleet.close();
  cluster.fleetPids = [];
  const ok =
    load.failed === 0 && hook.failed === 0 && stored.problems === 0 && exits.every((exit) => exit.code === 0) &&
    check.complete === check.subscribers && check.doubled === 0 && check.missing === 0;
  log(`  restart: ${load.requests} requests, ${load.failed} failed; subscribers ${check.complete}/${check.subscribers} complete, ${check.reconnects} reconnects`);
  return { ok, load, webhooks: { sent: loadSids.length + hook.failed, failed: hook.failed, failures: hook.failures }, exits, proxy, check, stored: { sent: stored.ids.length, problems: stored.problems }, readinessFailures: readinessFailures() - readinessBefore, eventsAfter, rate };
}

/** One token, RATE_LIMIT_PER_MINUTE = limit on every instance, 3 x limit requests through HAProxy. */
async function rateLimitPhase(cluster: Cluster, plan: LoadPlan): Promise<RateLimitResult> {
  const running = cluster.instances.filter((instance) => instance.running());
  log(`Rate limit: ${running.length} instances with RATE_LIMIT_PER_MINUTE=${rateLimit}`);
  for (const instance of running) await instance.stop();
  // Windows of the load's own requests (same token) would count against the new limit.
  const client = new Redis(cluster.redis.url);
  await client.flushall();
  await client.quit();
  for (const instance of running) await instance.start({ RATE_LIMIT_PER_MINUTE: String(rateLimit) });
  await waitForServers(cluster.haproxy, running.map((instance) => instance.name), 'UP');
  const sessionsBefore = await perServer(cluster.haproxy);
  const statuses = new Map<number, number>();
  const attempts = rateLimit * running.length;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${plan.reader.apiToken}`, 'x-organization-id': plan.reader.organizationId };
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < attempts) {
        next += 1;
        // A fresh connection each time (no keep-alive), so HAProxy's round-robin spreads them over the instances.
        const response = await fetch(`${cluster.haproxy.url}/graphql`, { method: 'POST', headers: { ...headers, connection: 'close' }, body: JSON.stringify({ query: '{ __typename }' }) });
        await response.text();
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const sessionsAfter = await perServer(cluster.haproxy);
  const spread = Object.fromEntries(running.map((i) => [i.name, sessionsAfter[i.name]!.sessions - (sessionsBefore[i.name]?.sessions ?? 0)]));
  const allowed = statuses.get(200) ?? 0;
  const limited = statuses.get(429) ?? 0;
  return { ok: allowed === rateLimit && limited === attempts - rateLimit, limit: rateLimit, instances: running.length, attempts, allowed, limited, other: attempts - allowed - limited, seconds, spread };
}

main().catch(async (error) => {
  console.error(error);
  await cleanup();
  process.exit(1);
});
