import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isDeepStrictEqual } from 'node:util';
import twilio from 'twilio';
import { benchDatabaseUrl, openSql, prepareDatabase } from './lib/database.js';
import { assertBenchDatabase, checkDataset, deepMessageCursor, FULL_DATASET, loadDataset, QUICK_DATASET, readDatasetInfo, sameDataset, writeTargets, type DatasetInfo } from './lib/dataset.js';
import { percentile } from './lib/percentile.js';
import { cpuDelta, cpuMs, cpuOfAll, sampleRss } from './lib/process-stats.js';
import { INBOUND_WEBHOOK_PATH, inboundWebhooks, POSTGRAPHILE_Q2, requestFor, SCENARIOS, TEAM_SCENARIOS, WRITE_SCENARIOS, type HttpRequest, type ScenarioContext, type ScenarioId, type ServerId } from './lib/scenarios.js';
import { checkTeamAnswer } from './lib/team-checks.js';
import { summarizeProfile } from './lib/profile-summary.js';
import { ask, backendPids, BENCH_TWILIO_AUTH_TOKEN, buildServers, ensureBenchPackages, serverSpecs, settledStats, startServer, stopServer } from './lib/servers.js';
import { measureSubscriptions, type SubscriptionResult } from './lib/subscriptions.js';
import { renderReport, type Measurement, type RunInfo } from './lib/report.js';

// npm run bench [-- --quick] [--rounds N] [--duration S] [--connections N] [--reload]
// Loads the dataset if DATABASE_URL does not hold it yet, then measures each server alone (start it,
// warm up, measure every scenario, stop it), alternating the order of servers between rounds, and
// writes bench/RESULTS.md with the medians.

const benchDir = dirname(fileURLToPath(import.meta.url));
const rootDir = join(benchDir, '..');

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string', default: '50' },
    reload: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    scenarios: { type: 'string', default: 'Q1,Q2,Q3,REST,Q1M,Q1W,QC,Q4,Q5,Q6' },
    subscribers: { type: 'string' },
    force: { type: 'boolean', default: false },
    servers: { type: 'string', default: 'gateway,floor,pgjson,postgraphile' },
    output: { type: 'string', default: join(benchDir, 'RESULTS.md') },
  },
});
const quick = values.quick!;
const rounds = Number(values.rounds ?? (quick ? 2 : 3));
const durationS = Number(values.duration ?? (quick ? 2 : 10));
const warmupS = Number(values.warmup ?? (quick ? 1 : 3));
const connections = Number(values.connections);
const serverIds = values.servers!.split(',') as ServerId[];
const scenarioIds = values.scenarios!.split(',') as ScenarioId[];
const subscriberCounts = (values.subscribers ?? (quick ? '100,500' : '1000,5000')).split(',').map(Number);
const log = (line: string) => console.log(line);
/** The tables the write scenarios (Q4, Q5) write, vacuumed before each round and each write scenario. */
const WRITTEN_TABLES = 'organizations, contacts, conversations, messages, message_status_events';

type AutocannonResult = {
  requests: { total: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
};
/** A run: awaitable, and an emitter of 'response' (client, status, bytes, milliseconds) for each answer. */
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult> & {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): unknown;
};

async function send(port: number, request: HttpRequest): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${request.path}`, { method: request.method, headers: request.headers, body: request.body });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: reported as is */
  }
  return { status: response.status, body, text };
}

/** The big conversation's messages in GraphQL order, as the gateway's page lists them (bodies only). */
const bodiesOf = (body: any, path: 'conversation' | 'conversations'): unknown =>
  path === 'conversation'
    ? body?.data?.conversation?.messages?.edges?.map((edge: any) => [edge.node.body, new Date(edge.node.createdAt).toISOString()])
    : body?.data?.conversations?.edges?.map((edge: any) => [edge.node.phoneNumber, edge.node.messages.edges.map((m: any) => m.node.body)]);

async function main() {
  const url = benchDatabaseUrl();
  ensureBenchPackages();
  await buildServers();
  if (values.profile) mkdirSync(join(benchDir, 'profiles'), { recursive: true });
  const requireFromBench = createRequire(join(benchDir, 'package.json'));
  const autocannon = requireFromBench('autocannon') as Autocannon;
  const started = Date.now();

  await prepareDatabase(url);
  const sql = openSql(url);
  const wanted = { ...(quick ? QUICK_DATASET : FULL_DATASET) };
  let info: DatasetInfo | null = await readDatasetInfo(sql);
  if (values.reload || !sameDataset(info, wanted)) {
    await assertBenchDatabase(sql, values.force!);
    log(`Loading the ${quick ? 'quick' : 'full'} dataset...`);
    info = await loadDataset(sql, wanted, log);
    await checkDataset(sql, wanted);
    log(`Dataset loaded in ${info.loadSeconds}s`);
  } else {
    log(`Dataset already loaded (${info!.messages.toLocaleString('en-US')} messages, seed ${info!.seed}).`);
  }
  const dataset = info!;
  const deep = await deepMessageCursor(sql, dataset);
  const ctx: ScenarioContext = {
    organizationId: dataset.organizationId,
    apiToken: dataset.apiToken,
    agentToken: dataset.agentToken,
    phoneNumber: dataset.bigConversationPhone,
    deepCursor: deep.cursor,
  };
  const [pgVersion] = await sql`select current_setting('server_version') as version`;
  // Writes go to every organization but the readers' one, interleaved across organizations.
  const targets = await writeTargets(sql, dataset, 2000);
  if (targets.length > 0) {
    ctx.writer = {
      targets,
      twilioAuthToken: BENCH_TWILIO_AUTH_TOKEN,
      publicBaseUrl: 'http://127.0.0.1:4100',
      sign: (authToken, url, params) => twilio.getExpectedTwilioSignature(authToken, url, params),
    };
  }

  const specs = serverSpecs(url).filter((spec) => serverIds.includes(spec.id));
  const measurements: Measurement[] = [];
  const checks: string[] = [];
  const notes: string[] = [];
  const reference = new Map<ScenarioId, { body: any; text: string }>();
  const subscriptionResults: (SubscriptionResult & { round: number })[] = [];
  const skipped = new Set<string>();

  for (let round = 0; round < rounds; round += 1) {
    const order = round % 2 === 0 ? specs : [...specs].reverse();
    // Q4/Q5 rewrite conversations and messages; where autovacuum is off (as on this machine kind) the dead
    // row versions of earlier runs and rounds would slow every later measurement, so each round starts clean.
    await sql.unsafe(`vacuum (analyze) ${WRITTEN_TABLES}`);
    for (const spec of order) {
      log(`Round ${round + 1}/${rounds}: ${spec.id}`);
      const running = await startServer(spec);
      try {
        if (spec.id === 'postgraphile' && !ctx.postgraphileDeepCursor) {
          const probe = await send(spec.port, {
            method: 'POST',
            path: '/graphql',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ query: POSTGRAPHILE_Q2, variables: { org: ctx.organizationId, phoneNumber: ctx.phoneNumber, offset: deep.depth - 1, first: 1 } }),
          });
          ctx.postgraphileDeepCursor = probe.body?.data?.conversation?.messages?.edges?.[0]?.cursor;
        }
        for (const scenario of (Object.keys(SCENARIOS) as ScenarioId[]).filter((x) => scenarioIds.includes(x))) {
          const request = requestFor(spec.id, scenario, ctx);
          if (!request) continue;
          const key = `${spec.id}/${scenario}`;
          if (skipped.has(key)) continue;
          // And each write scenario starts clean too: Q4's ~20,000 dead conversation and message versions
          // cost the Q5 measured right after it ~25% more PostgreSQL CPU per webhook.
          if (WRITE_SCENARIOS.includes(scenario)) await sql.unsafe(`vacuum (analyze) ${WRITTEN_TABLES}`);
          // Correctness first: a fast wrong answer is no result.
          const answer = await send(spec.port, request);
          if (answer.status !== 200 || answer.body?.errors) {
            const why = `${key}: HTTP ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
            if (scenario === 'REST' && answer.status === 404) {
              notes.push(`REST scenario not measured: the gateway answered 404 (route not there yet). TODO: rerun when it exists.`);
              skipped.add(key);
              continue;
            }
            throw new Error(`wrong answer from ${why}`);
          }
          if (scenario === 'Q4' && answer.body?.data?.sendReply?.__typename !== 'SendReplyPayload') {
            throw new Error(`sendReply did not send: ${JSON.stringify(answer.body).slice(0, 300)}`);
          }
          if (scenario === 'Q5') {
            const sid = new URLSearchParams(request.body).get('MessageSid');
            const [stored] = await sql`select count(*)::int as n from messages where provider_message_id = ${sid}`;
            if (stored!.n !== 1) throw new Error(`the inbound webhook answered ${answer.status} but stored ${stored!.n} messages`);
          }
          if (round === 0 && (scenario === 'Q4' || scenario === 'Q5')) {
            checks.push(
              scenario === 'Q4'
                ? `Q4: sendReply answered ${answer.body.data.sendReply.__typename} (${answer.body.data.sendReply.segments} segment, ${answer.body.data.sendReply.creditsCharged} credit)`
                : 'Q5: a signed inbound webhook answered 200 and stored exactly one message',
            );
          } else if (round === 0 && TEAM_SCENARIOS.includes(scenario)) {
            checks.push(await checkTeamAnswer(sql, scenario, { organizationId: dataset.organizationId, agentUserId: dataset.agentUserId }, answer.body));
          } else if (round === 0) {
            if (spec.id === 'gateway') reference.set(scenario, answer);
            const ref = reference.get(scenario);
            if (scenario === 'REST' && spec.id === 'gateway') checks.push(`REST: ${answer.body?.messages?.length} messages, timezone ${answer.body?.timezone}`);
            if ((spec.id === 'floor' || spec.id === 'pgjson') && ref) {
              const same = isDeepStrictEqual(ref.body, answer.body);
              const bytes = ref.text === answer.text ? 'and byte for byte' : 'not byte for byte';
              checks.push(`${scenario}: ${spec.id}'s response ${same ? `is the same JSON as the gateway's (deep-equal, ${bytes})` : "DIFFERS from the gateway's"}`);
              if (!same) throw new Error(`${spec.id} and gateway disagree on ${scenario}`);
            }
            if (spec.id === 'postgraphile' && ref && scenario !== 'REST') {
              const path = scenario === 'Q1' ? 'conversations' : 'conversation';
              const same = isDeepStrictEqual(bodiesOf(ref.body, path), bodiesOf(answer.body, path));
              checks.push(`${scenario}: PostGraphile returns ${same ? 'the same' : 'DIFFERENT'} ${scenario === 'Q1' ? 'conversations and messages' : 'messages'} in the same order as the gateway`);
              if (!same) throw new Error(`PostGraphile and gateway disagree on ${scenario}`);
            }
          }

          const options = {
            url: `http://127.0.0.1:${spec.port}${request.path}`,
            method: request.method,
            headers: request.headers,
            body: request.body,
            connections,
            pipelining: 1,
            ...(request.next
              ? {
                  requests: [
                    {
                      method: request.method,
                      path: request.path,
                      setupRequest: (req: Record<string, any>) => {
                        const next = request.next!();
                        return { ...req, body: next.body, headers: { ...req.headers, ...next.headers } };
                      },
                    },
                  ],
                }
              : {}),
          };
          await autocannon({ ...options, duration: warmupS });
          const pids = await backendPids(sql);
          const statsBefore = await settledStats(running);
          const dbBefore = cpuOfAll(pids);
          const cpuBefore = cpuMs(running.child.pid!)!;
          const profileFile = values.profile && round === 0 ? join(benchDir, 'profiles', `${spec.id}-${scenario}.cpuprofile`) : null;
          if (profileFile) await ask(running, 'profile:start', 'profile:started');
          const stopRss = sampleRss(running.child.pid!);
          // Latency from every 2xx response's own time (fractional ms): autocannon's histogram keeps whole
          // milliseconds, a 7% step at Q2's ~13 ms, too coarse for Q3's within-10% target.
          const latencies: number[] = [];
          const measured = autocannon({ ...options, duration: durationS });
          measured.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
            if (status >= 200 && status < 300) latencies.push(ms);
          });
          const result = await measured;
          const rss = stopRss();
          if (profileFile) {
            await ask(running, `profile:stop ${profileFile}`, 'profile:stopped');
            log(summarizeProfile(profileFile, 12).replace(/^/gm, '      '));
          }
          // Per-request figures divide by the requests the server finished in the same window.
          const statsAfter = await settledStats(running);
          const cpuAfter = cpuMs(running.child.pid!)!;
          const dbAfter = cpuOfAll([...new Set([...pids, ...(await backendPids(sql))])]);
          const served = statsAfter.requests - statsBefore.requests;
          measurements.push({
            round,
            server: spec.id,
            scenario,
            rps: result.requests.total / result.duration,
            p50: percentile(latencies, 50),
            p99: percentile(latencies, 99),
            cpuUsPerRequest: ((cpuAfter - cpuBefore) * 1000) / served,
            dbCpuUsPerRequest: (cpuDelta(dbBefore, dbAfter) * 1000) / served,
            statementsPerRequest: (statsAfter.statements - statsBefore.statements) / served,
            rssMiB: rss / 1024 / 1024,
            errors: result.errors + result.timeouts + result.non2xx,
          });
          const m = measurements.at(-1)!;
          log(
            `  ${scenario.padEnd(4)} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50.toFixed(1)} ms  p99 ${m.p99.toFixed(1)} ms  ` +
              `cpu ${m.cpuUsPerRequest.toFixed(0)} µs/req  db ${m.dbCpuUsPerRequest.toFixed(0)} µs/req  sql ${m.statementsPerRequest.toFixed(2)}/req  rss ${m.rssMiB.toFixed(0)} MiB` +
              (m.errors ? `  ERRORS ${m.errors}` : ''),
          );
          // Say what the server said about failed requests (autocannon only counts them).
          if (m.errors) log(running.output.join('').split('\n').slice(-5).join('\n').replace(/^/gm, '      | '));
        }
        // Quick mode measures subscriptions in its first round only, to stay within its two minutes.
        if (spec.id === 'gateway' && scenarioIds.includes('Q6' as ScenarioId) && ctx.writer && (!quick || round === 0)) {
          const target = ctx.writer.targets[0]!;
          const webhook = inboundWebhooks(ctx.writer);
          // One signed inbound text per event; its body is the tag subscribers report back.
          const publish = async (tag: string) => {
            const response = await fetch(`http://127.0.0.1:${spec.port}${INBOUND_WEBHOOK_PATH}`, { method: 'POST', ...webhook(target, tag) });
            await response.text();
            if (response.status !== 200) throw new Error(`Q6 publish answered ${response.status}`);
          };
          for (const subscribers of subscriberCounts) {
            const result = await measureSubscriptions({
              port: spec.port,
              pid: running.child.pid!,
              subscribers,
              target,
              publish,
              collectGarbage: () => ask(running, 'gc', 'gc:done'),
              warmupEvents: quick ? 1 : 3,
              // Every subscriber's latency of every event is a sample, but a slow event slows all of its own:
              // 30 events keep one unlucky event (a collection, another process) from being the whole p99.
              pacedEvents: quick ? 5 : 30,
              burstEvents: quick ? 3 : 10,
              log,
            });
            subscriptionResults.push({ round, ...result });
            log(
              `  Q6 ${String(subscribers).padStart(5)} subscribers: ${result.connected} connected in ${result.connectSeconds.toFixed(1)} s, ` +
                `${result.rssPerSubscriberKiB.toFixed(1)} KiB each, latency p50 ${result.latencyP50.toFixed(0)} ms p99 ${result.latencyP99.toFixed(0)} ms, ` +
                `${result.deliveredPerSecond.toFixed(0)} delivered/s (${result.delivered}/${result.expected})`,
            );
          }
        }
      } finally {
        await stopServer(running);
      }
    }
  }
  await sql.end();

  const run: RunInfo = {
    quick,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    finishedAt: new Date().toISOString(),
    wallSeconds: Math.round((Date.now() - started) / 1000),
    rounds,
    durationS,
    warmupS,
    connections,
    depth: deep.depth,
    servers: specs.map((spec) => ({ id: spec.id, label: spec.label })),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
      os: `${os.type()} ${os.release()}`,
      node: process.version,
      postgres: pgVersion!.version as string,
    },
    versions: packageVersions(),
    dataset,
    checks,
    notes,
  };
  writeFileSync(values.output!, renderReport(run, measurements, subscriptionResults, readFileSync(join(benchDir, 'optimizations.md'), 'utf8')));
  log(`Wrote ${values.output} in ${run.wallSeconds}s.`);
}

function packageVersions(): Record<string, string> {
  const version = (dir: string, name: string) => {
    try {
      return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version as string;
    } catch {
      return 'not installed';
    }
  };
  const result: Record<string, string> = {};
  for (const name of ['graphql', 'graphql-yoga', '@pothos/core', 'drizzle-orm', 'postgres', 'graphql-jit', '@envelop/graphql-jit']) {
    const v = version(rootDir, name);
    if (v !== 'not installed') result[name] = v;
  }
  for (const name of ['postgraphile', 'grafast', 'pg', 'autocannon']) result[name] = version(benchDir, name);
  return result;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
