import { randomUUID } from 'node:crypto';
import type { WriteTarget } from './dataset.js';
import { percentile } from './percentile.js';
import { GATEWAY_Q1, GATEWAY_Q2, GATEWAY_Q4, INBOUND_WEBHOOK_PATH } from './scenarios.js';

// bench/scale.ts's load: a closed loop of inbox reads, thread reads and sends (autocannon, `connections`
// at a time) and, beside it, inbound webhooks at a fixed rate (each one fans out to every subscriber, so
// its rate stays the same whatever the throughput). Every answer is checked, not only its status: a
// GraphQL 200 with `errors`, or a send that did not send, is a failed request.

export type Target = WriteTarget;

type Operation = {
  name: 'inbox' | 'thread' | 'send';
  weight: number;
  request(): { method: 'POST'; path: string; headers: Record<string, string>; body: string };
  ok(status: number, body: string): boolean;
};

export type LoadPlan = {
  reader: { organizationId: string; apiToken: string; threadPhone: string };
  /** Where sends go, in turn. */
  sendTargets: Target[];
};

const json = { 'content-type': 'application/json', accept: 'application/json' };

export function operations(plan: LoadPlan): Operation[] {
  const readerHeaders = { ...json, authorization: `Bearer ${plan.reader.apiToken}`, 'x-organization-id': plan.reader.organizationId };
  let turn = 0;
  return [
    {
      name: 'inbox',
      weight: 45,
      request: () => ({ method: 'POST', path: '/graphql', headers: readerHeaders, body: JSON.stringify({ query: GATEWAY_Q1 }) }),
      ok: (status, body) => status === 200 && body.startsWith('{"data":{"conversations":{') && !body.includes('"errors"'),
    },
    {
      name: 'thread',
      weight: 40,
      request: () => ({
        method: 'POST',
        path: '/graphql',
        headers: readerHeaders,
        body: JSON.stringify({ query: GATEWAY_Q2, variables: { phoneNumber: plan.reader.threadPhone } }),
      }),
      ok: (status, body) => status === 200 && body.startsWith('{"data":{"conversation":{') && !body.includes('"errors"'),
    },
    {
      name: 'send',
      weight: 15,
      request: () => {
        const target = plan.sendTargets[turn++ % plan.sendTargets.length]!;
        // The key makes a retry (HAProxy's retry-on, a client's) return the first result instead of sending twice.
        const input = { phoneNumber: target.contactPhone, message: 'Thanks! Doors open at 5:30, see you Thursday.', idempotencyKey: randomUUID() };
        return {
          method: 'POST',
          path: '/graphql',
          headers: { ...json, authorization: `Bearer ${target.apiToken}`, 'x-organization-id': target.organizationId },
          body: JSON.stringify({ query: GATEWAY_Q4, variables: { input } }),
        };
      },
      ok: (status, body) => status === 200 && body.includes('"__typename":"SendReplyPayload"'),
    },
  ];
}

export type LoadResult = {
  seconds: number;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  byOperation: Record<string, number>;
  failed: number;
  /** Failed answers HAProxy gave itself (no server available, or a server's connection lost past its retries). */
  proxyAnswers: number;
  failures: string[];
};

/** HAProxy's own error pages are HTML; the gateway answers JSON. */
const fromProxy = (body: string) => body.startsWith('<html>');

type AutocannonRun = Promise<{ requests: { total: number }; duration: number; errors: number; timeouts: number; non2xx: number }> & {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): unknown;
};
export type Autocannon = (options: Record<string, unknown>) => AutocannonRun;

/** The closed loop through `url` for `seconds` (or until `stopWhen`); every answer is checked. */
export async function runMixedLoad(
  autocannon: Autocannon,
  options: { url: string; connections: number; seconds: number; plan: LoadPlan; stopWhen?: Promise<unknown>; overallRate?: number },
): Promise<LoadResult> {
  const ops = operations(options.plan);
  const total = ops.reduce((sum, op) => sum + op.weight, 0);
  const byOperation: Record<string, number> = {};
  const failures: string[] = [];
  let failed = 0;
  let proxyAnswers = 0;
  const latencies: number[] = [];
  const run = autocannon({
    url: options.url,
    connections: options.connections,
    pipelining: 1,
    duration: options.seconds,
    // A request that takes longer than this counts as failed.
    timeout: 20,
    // An open loop at this many requests per second (all connections together) instead of as fast as answered.
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
    requests: [
      {
        setupRequest: (request: Record<string, unknown>, context: Record<string, unknown>) => {
          let roll = Math.random() * total;
          const op = ops.find((candidate) => (roll -= candidate.weight) < 0) ?? ops[0]!;
          context.op = op;
          return { ...request, ...op.request() };
        },
        onResponse: (status: number, body: string, context: { op: Operation }) => {
          byOperation[context.op.name] = (byOperation[context.op.name] ?? 0) + 1;
          if (!context.op.ok(status, body)) {
            failed += 1;
            if (fromProxy(body)) proxyAnswers += 1;
            if (failures.length < 10) failures.push(`${context.op.name}: ${status} ${body.slice(0, 300)}`);
          }
        },
      },
    ],
  });
  run.on('response', (_client, _status, _bytes, ms) => latencies.push(ms));
  // The rolling restart runs the load until the restarts are done, not for a fixed time.
  void options.stopWhen?.then(() => (run as unknown as { stop(): void }).stop());
  const result = await run;
  const transportFailures = result.errors + result.timeouts;
  if (transportFailures && failures.length < 10) failures.push(`${result.errors} connection errors, ${result.timeouts} timeouts`);
  return {
    seconds: result.duration,
    requests: result.requests.total,
    rps: result.requests.total / result.duration,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    byOperation,
    failed: failed + transportFailures,
    proxyAnswers,
    failures,
  };
}

/** Signed inbound webhooks at `perSecond` through HAProxy, from the organization's contacts in turn. */
export function startWebhooks(options: {
  url: string;
  perSecond: number;
  targets: Target[];
  sign: (url: string, params: Record<string, string>) => string;
  publicBaseUrl: string;
  label: string;
}) {
  const run = `${Date.now().toString(16)}${options.label}`;
  let sequence = 0;
  const sids: string[] = [];
  /** Every MessageSid sent, answered or not: a webhook whose answer was lost may still have been stored. */
  const attempted: string[] = [];
  const failures: string[] = [];
  let failed = 0;
  let proxyAnswers = 0;
  let answered = 0;
  const inFlight = new Set<Promise<void>>();
  const latencies: number[] = [];
  const sendOne = (body: string) => {
    sequence += 1;
    const target = options.targets[sequence % options.targets.length]!;
    const sid = `SM${run}${String(sequence).padStart(32 - run.length, '0')}`;
    attempted.push(sid);
    const params = { MessageSid: sid, AccountSid: 'AC00000000000000000000000000000000', From: target.contactPhone, To: target.sendingNumber, Body: body, NumMedia: '0' };
    const started = performance.now();
    const done = fetch(`${options.url}${INBOUND_WEBHOOK_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': options.sign(options.publicBaseUrl + INBOUND_WEBHOOK_PATH, params) },
      body: new URLSearchParams(params).toString(),
      signal: AbortSignal.timeout(20_000),
    })
      .then(async (response) => {
        const text = await response.text();
        answered += 1;
        latencies.push(performance.now() - started);
        if (response.status === 200) sids.push(sid);
        else {
          failed += 1;
          if (fromProxy(text)) proxyAnswers += 1;
          if (failures.length < 10) failures.push(`webhook ${response.status} ${text.slice(0, 200)}`);
        }
      })
      .catch((error: unknown) => {
        failed += 1;
        if (failures.length < 10) failures.push(`webhook threw ${String(error)}`);
      });
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
    return { sid, done };
  };
  let timer: NodeJS.Timeout | null = null;
  let sent = 0;
  let startedAt = 0;
  return {
    /** One webhook now (the probes); resolves once it is answered, with its MessageSid. */
    async once(body: string) {
      const { sid, done } = sendOne(body);
      await done;
      return sid;
    },
    start(perSecond = options.perSecond) {
      startedAt = performance.now();
      sent = 0;
      // Paced by the clock, not by answers: a slow answer does not slow the rate.
      timer = setInterval(() => {
        const due = Math.floor(((performance.now() - startedAt) / 1000) * perSecond);
        while (sent < due) {
          sent += 1;
          sendOne(`Inbound ${options.label} ${sent}: thanks, see you there!`);
        }
      }, 20);
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      await Promise.all([...inFlight]);
    },
    stats: () => ({ sids: [...sids], attempted: [...attempted], answered, failed, proxyAnswers, failures: [...failures], p99: percentile(latencies, 99) }),
  };
}
