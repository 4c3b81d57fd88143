import type { LoadResult } from './scale-load.js';
import type { SubscriberCheck } from './subscriber-fleet.js';

// bench/SCALE.md from one run of bench/scale.ts: the command, machine, method, tables and verdicts.

/** CPU milliseconds by process group; `gateways` per instance. */
export type CpuGroups = { gateways: Record<string, number> } & Record<string, number | Record<string, number>>;

/** What HAProxy did in a window: its counters, its own error answers, and health-check state changes. */
export type ProxyCounters = {
  retries: number;
  redispatches: number;
  connectionErrors: number;
  responseErrors: number;
  /** Failed answers HAProxy generated itself (its HTML error pages), as the clients saw them. */
  proxyAnswers: number;
  /** Server state changes seen (every 250 ms), per server. */
  changes: Record<string, number>;
  /** Samples in which no server was UP. */
  noneUp: number;
};

export const proxyLine = (p: ProxyCounters) =>
  `HAProxy: ${p.retries} retries, ${p.redispatches} redispatches, ${p.connectionErrors} connection errors, ${p.responseErrors} response errors, ` +
  `${p.proxyAnswers} error pages of its own; server state changes ${Object.entries(p.changes).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}` +
  (p.noneUp ? `, no server up in ${p.noneUp} samples` : '');

/** Inbound webhooks only, after an idle stretch: CPU per event net of idle. */
export type EventWindow = {
  idle: CpuGroups;
  idleSeconds: number;
  cpu: CpuGroups;
  seconds: number;
  events: number;
  /** PostgreSQL transactions (statements outside one count one each) in the window, idle ones included. */
  transactions: number;
};

export type PhaseResult = {
  instances: number;
  /** Subscriber sockets HAProxy sent to each instance. */
  spread: Record<string, number>;
  events: EventWindow;
  warmFailed: number;
  load: LoadResult;
  webhooks: { sent: number; failed: number; inWindow: number; p99: number; failures: string[] };
  cpu: CpuGroups;
  connections: Record<string, number>;
  /** Inbound messages stored for the webhooks sent; problems: not stored exactly once. */
  stored: { sent: number; problems: number };
  check: SubscriberCheck;
  proxy: ProxyCounters;
  /** /health/ready answers of 503 because the database ping timed out, in the measured window. */
  readinessFailures: number;
  /** Cores busy during the measured window: every process on the machine, and ours. */
  machineBusyCores: number;
  /** pgbouncer's SHOW POOLS / SHOW SERVERS right after the measured window (empty without it). */
  poolerState: string[];
};

export type RestartResult = {
  ok: boolean;
  load: LoadResult;
  webhooks: { sent: number; failed: number; failures: string[] };
  exits: { name: string; code: number | null; downAfterMs: number; backAfterMs: number }[];
  proxy: ProxyCounters;
  check: SubscriberCheck;
  stored: { sent: number; problems: number };
  readinessFailures: number;
  /** The events-only window again after the restart, when the resumed subscribers each run their own stream. */
  eventsAfter: EventWindow;
  /** The mixed load's fixed rate during the restart (requests per second). */
  rate: number;
};

export type RateLimitResult = {
  ok: boolean;
  limit: number;
  instances: number;
  attempts: number;
  allowed: number;
  limited: number;
  other: number;
  seconds: number;
  spread: Record<string, number>;
};

export type ScaleRun = {
  command: string;
  finishedAt: string;
  wallSeconds: number;
  machine: { cpu: string; cores: number; memoryGiB: number; node: string; postgres: string; haproxy: string };
  settings: Record<string, number | string>;
  phases: PhaseResult[];
  restart: RestartResult;
  limit: RateLimitResult;
  /** Lines about the database topology (direct, pgbouncer, replica) and anything else the run wants said. */
  notes?: string[];
};

const sumGateways = (cpu: CpuGroups) => Object.values(cpu.gateways).reduce((sum, ms) => sum + ms, 0);
const groupsOf = (cpu: CpuGroups) => Object.keys(cpu).filter((key) => key !== 'gateways');
const total = (cpu: CpuGroups) => sumGateways(cpu) + groupsOf(cpu).reduce((sum, key) => sum + (cpu[key] as number), 0);
const us = (ms: number, n: number) => (n > 0 ? ((ms * 1000) / n).toFixed(0) : '-');
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

const storedLine = (stored: { sent: number; problems: number }) =>
  `${stored.sent} inbound messages stored, ${stored.problems === 0 ? 'each webhook once' : `${stored.problems} webhooks not stored exactly once`}`;

function subscriberLine(check: SubscriberCheck, expected: number): string {
  return (
    `${check.complete} of ${check.subscribers} subscribers got all ${expected} messages exactly once ` +
    `(missing ${check.missing}, received twice ${check.doubled}, unknown ${check.unexpected}; ${check.received} deliveries, ` +
    `${check.reconnects} reconnects, ${check.resumed} resumed with after:)`
  );
}

function eventRow(label: string, w: EventWindow, subscribers: string): string {
  const net = (ms: number, idleMs: number) => Math.max(0, ms - (idleMs / w.idleSeconds) * w.seconds);
  const gateways = Object.entries(w.cpu.gateways).map(([name, ms]) => [name, net(ms, w.idle.gateways[name] ?? 0)] as const);
  const each = gateways.map(([name, ms]) => `${name} ${us(ms, w.events)}`).join(', ');
  const other = (group: string) => us(net(w.cpu[group] as number, w.idle[group] as number), w.events);
  return `| ${label} | ${w.events} | ${subscribers} | ${each} | ${us(gateways.reduce((sum, [, ms]) => sum + ms, 0), w.events)} | ${(w.transactions / Math.max(1, w.events)).toFixed(1)} | ${other('PostgreSQL primary')} | ${other('HAProxy')} | ${other('Redis')} | ${other('subscribers')} |`;
}

export function renderScaleReport(run: ScaleRun): string {
  const { phases, restart, limit } = run;
  const groups = groupsOf(phases[0]!.cpu);
  const lines: string[] = [];
  const push = (...more: string[]) => lines.push(...more);
  push(
    '# A measured deployment: 1, 2 and 3 instances behind HAProxy',
    '',
    `Written by \`${run.command}\` (bench/scale.ts) at ${run.finishedAt}, in ${run.wallSeconds} s.`,
    '',
    `Machine: ${run.machine.cores} cores (${run.machine.cpu}), ${run.machine.memoryGiB} GiB, Node ${run.machine.node}, PostgreSQL ${run.machine.postgres}, ${run.machine.haproxy}. ` +
      'Everything (database, Redis, HAProxy, gateways, load generator, subscribers) runs on these same cores, so the figures show ' +
      'where the CPU goes, not what separate machines would do.',
    '',
    '## Method',
    '',
    '- Topology on loopback: PostgreSQL (below), Redis (events, revocations and rate limits shared by the instances), ' +
      'HAProxy (`balance roundrobin`, `option httpchk GET /health/ready`, `inter 500ms fall 2 rise 1`, `retry-on conn-failure empty-response`, ' +
      '`timeout tunnel 1h` for WebSockets) in front of the gateway instances, each `node dist/main.js` as `npm start` runs it, with ' +
      `NODE_ENV=production, DATABASE_POOL_SIZE=10, SHUTDOWN_DELAY_MS=${run.settings.shutdownDelayMs} (more than HAProxy's 2 x 500 ms to mark it down).`,
    ...(run.notes ?? []).map((note) => `- ${note}`),
    `- Dataset: the quick benchmark dataset (${run.settings.dataset}).`,
    `- For each instance count: ${run.settings.subscribers} graphql-ws subscribers of \`messageReceived\` connect through HAProxy (one socket each, ` +
      'so round-robin spreads them) in two client processes; a probe message reaching all of them shows they are subscribed. Then ' +
      `3 s idle, then ${run.settings.eventSeconds} s of inbound webhooks only (${run.settings.webhooksPerSecond}/s): CPU per event. Then the mixed load: ` +
      `autocannon with ${run.settings.connections} connections, a closed loop of inbox reads (45%), thread reads (40%, first page of a ` +
      '20,000-message conversation) and sends (15%, sendReply with an idempotency key, simulated provider), with signed inbound webhooks ' +
      `at a fixed ${run.settings.webhooksPerSecond}/s beside it; ${run.settings.warmupS} s warm-up, ${run.settings.durationS} s measured.`,
    '- Rolling restart (at the largest instance count): subscribers connect again, the same mixed load runs as an open loop at half the ' +
      'throughput one instance fewer managed (a restart is done below saturation: HAProxy\'s checks queue behind the requests), with the webhooks ' +
      'beside it; each instance in turn gets SIGTERM (it answers 503 on /health/ready, keeps serving SHUTDOWN_DELAY_MS, drains, closes ' +
      'WebSockets with 1001), exits, and is started again; the next one follows once HAProxy sees it UP. A subscriber whose socket closes ' +
      'connects again through HAProxy after 1.3-4 s (graphql-ws\'s own retry delay) and subscribes with `after:` the cursor of the last message it got.',
    `- Rate limit: every instance restarted with RATE_LIMIT_PER_MINUTE=${run.limit.limit}, Redis emptied, then ${run.limit.attempts} requests with one token ` +
      'through HAProxy on fresh connections (so round-robin spreads them) within a few seconds.',
    '- Every answer is checked: a GraphQL 200 with `errors`, a send that did not send, a webhook that did not answer 200 is a failed request.',
    '- After the load, the inbound messages stored for the webhooks sent (read from PostgreSQL by MessageSid) are compared with what each subscriber ' +
      'received: every message exactly once, none missing, none twice.',
    '- CPU is read from /proc: user + system time of each process (PostgreSQL: the postmaster, its live backends and the exited ones it reaped). ' +
      'Per request: CPU of the measured window divided by the requests answered in it (the mixed load plus the webhooks).',
    '',
    '## Throughput and latency',
    '',
    '| instances | requests/s (mixed loop) | p50 ms | p99 ms | webhooks in window | failed requests | PostgreSQL connections (peak, active peak) | readiness 503s (ping timed out) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...phases.map(
      (p) =>
        `| ${p.instances} | ${p.load.rps.toFixed(0)} | ${p.load.p50.toFixed(1)} | ${p.load.p99.toFixed(1)} | ${p.webhooks.inWindow} (p99 ${p.webhooks.p99.toFixed(0)} ms) | ` +
        `${p.load.failed + p.warmFailed + p.webhooks.failed} | ${Object.entries(p.connections).map(([k, v]) => `${k} ${v}`).join(', ')} | ${p.readinessFailures} |`,
    ),
    '',
    ...(phases.some((p) => p.poolerState.length)
      ? ['pgbouncer right after each measured window:', '', ...phases.flatMap((p) => p.poolerState.map((line) => `- ${p.instances} instance(s): ${line}`)), '']
      : []),
    '## CPU per request, by process (µs)',
    '',
    `| instances | all processes | gateways (sum) | ${groups.join(' | ')} | cores busy: ours / whole machine (of ${run.machine.cores}) |`,
    `| --- | --- | --- | ${groups.map(() => '---').join(' | ')} | --- |`,
    ...phases.map((p) => {
      const n = p.load.requests + p.webhooks.inWindow;
      const busy = total(p.cpu) / 1000 / p.load.seconds;
      return `| ${p.instances} | ${us(total(p.cpu), n)} | ${us(sumGateways(p.cpu), n)} | ${groups.map((g) => us(p.cpu[g] as number, n)).join(' | ')} | ${busy.toFixed(2)} / ${p.machineBusyCores.toFixed(2)} |`;
    }),
    '',
    'Per gateway instance in the same windows (µs per request of all requests; HAProxy shares them out):',
    '',
    '| instances | ' + phases.at(-1)!.instances + ' columns: CPU per instance |',
    '| --- | --- |',
    ...phases.map((p) => {
      const n = p.load.requests + p.webhooks.inWindow;
      return `| ${p.instances} | ${Object.entries(p.cpu.gateways).map(([name, ms]) => `${name} ${us(ms, n)}`).join(', ')} |`;
    }),
    '',
    '## CPU per event (fan-out)',
    '',
    `Inbound webhooks only, ${run.settings.eventRate}/s for ${run.settings.eventSeconds} s, every one delivered to all ${run.settings.subscribers} subscribers; idle CPU ` +
      '(3 s just before, same processes) subtracted. Every instance receives every event through Redis; subscribers with the same operation share one ' +
      'execution (one read, one serialization per event per instance), a subscriber that resumed with `after:` runs its own.',
    '',
    '| instances | events | subscribers per instance | gateway CPU per event, each instance (µs) | all gateways (µs) | PostgreSQL transactions per event | PostgreSQL primary (µs) | HAProxy (µs) | Redis (µs) | subscribers\' clients (µs) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...phases.map((p) => eventRow(`${p.instances}`, p.events, Object.values(p.spread).join(' / '))),
    eventRow(`${restart.exits.length}, after the rolling restart`, restart.eventsAfter, `${restart.check.resumed} subscribers resumed with after:`),
    '',
    '## Correctness',
    '',
    '| check | result | verdict |',
    '| --- | --- | --- |',
    ...phases.flatMap((p) => [
      `| ${p.instances} instance(s): no request fails | ${p.load.requests} mixed requests (+ ${p.warmFailed} failed in warm-up), ${p.webhooks.sent} webhooks: ${p.load.failed + p.warmFailed + p.webhooks.failed} failed; ${proxyLine(p.proxy)} | ${verdict(p.load.failed + p.warmFailed + p.webhooks.failed === 0)} |`,
      `| ${p.instances} instance(s): every inbound message reaches every subscriber exactly once | ${storedLine(p.stored)}; ${subscriberLine(p.check, p.stored.sent)} | ${verdict(p.check.complete === p.check.subscribers && p.check.doubled === 0 && p.check.unexpected === 0 && p.stored.problems === 0)} |`,
    ]),
    `| rolling restart: zero failed requests at HAProxy | ${restart.load.requests} mixed requests (open loop at ${restart.rate}/s: half of what one instance fewer served) and ${restart.webhooks.sent} webhooks while ${restart.exits.length} instances were restarted one by one: ${restart.load.failed + restart.webhooks.failed} failed; ${proxyLine(restart.proxy)} | ${verdict(restart.load.failed + restart.webhooks.failed === 0)} |`,
    `| rolling restart: subscribers resume on another instance with no gap | ${storedLine(restart.stored)}; ${subscriberLine(restart.check, restart.stored.sent)} | ${verdict(restart.check.complete === restart.check.subscribers && restart.check.doubled === 0 && restart.stored.problems === 0)} |`,
    `| one token's rate limit holds across instances | RATE_LIMIT_PER_MINUTE=${limit.limit} on each of ${limit.instances} instances; ${limit.attempts} requests with one token in ${limit.seconds.toFixed(1)} s, spread ${Object.entries(limit.spread).map(([k, v]) => `${k} ${v}`).join(', ')}: ${limit.allowed} answered 200, ${limit.limited} answered 429, ${limit.other} other (separate in-memory limits would have let up to ${limit.limit * limit.instances} through) | ${verdict(limit.ok)} |`,
    '',
    `Rolling restart, instance by instance (SIGTERM, wait for the exit, start again); /health/ready answered 503 for a timed-out database ping ${restart.readinessFailures} times meanwhile:`,
    '',
    '| instance | exit code | HAProxy marked it DOWN after | UP again after |',
    '| --- | --- | --- | --- |',
    ...restart.exits.map((e) => `| ${e.name} | ${e.code ?? 'none: killed 30 s after SIGTERM'} | ${e.downAfterMs.toFixed(0)} ms | ${e.backAfterMs.toFixed(0)} ms |`),
    '',
  );
  const failures = [...phases.flatMap((p) => [...p.load.failures, ...p.webhooks.failures]), ...restart.load.failures, ...restart.webhooks.failures, ...restart.check.errors.filter((e) => !/closed 1001/.test(e))];
  if (failures.length) push('Failure samples:', '', ...failures.slice(0, 10).map((f) => `- ${f.replaceAll('|', '\\|')}`), '');
  return lines.join('\n');
}
