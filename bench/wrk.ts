import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchDatabaseUrl, openSql } from './lib/database.js';
import { deepMessageCursor, readDatasetInfo } from './lib/dataset.js';
import { median } from './lib/report.js';
import { cpuDelta, cpuMs, cpuOfAll } from './lib/process-stats.js';
import { requestFor, type HttpRequest, type ScenarioContext, type ScenarioId, type ServerId } from './lib/scenarios.js';
import { backendPids, buildServers, serverSpecs, settledStats, startServer, stopServer } from './lib/servers.js';

// npm run bench:wrk [-- --servers gateway,floor,pgjson] [--scenarios Q2] [--rounds 3] [--duration 10] [--connections 50]
// The read scenarios under wrk (a C load generator, one thread: it takes less of the 2 cores than autocannon
// in the runner's process), each server alone, the order reversed every other round. Prints the medians of
// req/s and of server and DB CPU per request, counted as `npm run bench` counts them. Needs the dataset
// `npm run bench:data` loads; writes nothing to the database.

const { values } = parseArgs({
  options: {
    servers: { type: 'string', default: 'gateway,floor,pgjson' },
    scenarios: { type: 'string', default: 'Q2' },
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
  },
});
const serverIds = values.servers!.split(',') as ServerId[];
const scenarioIds = values.scenarios!.split(',') as ScenarioId[];
const rounds = Number(values.rounds);

type Sample = { server: ServerId; scenario: ScenarioId; rps: number; p50: number; p99: number; cpu: number; db: number; errors: number };

const MS_PER_UNIT: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };
const milliseconds = (text: string | undefined) => {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text ?? '');
  return match ? Number(match[1]) * MS_PER_UNIT[match[2]!]! : NaN;
};

/** One wrk run; the request's method, headers and body go through a Lua script (long brackets: no escaping). */
function wrk(port: number, request: HttpRequest, seconds: number, dir: string) {
  const script = join(dir, 'request.lua');
  const headers = Object.entries(request.headers).map(([name, value]) => `wrk.headers[ [==[${name}]==] ] = [==[${value}]==]`);
  writeFileSync(
    script,
    [`wrk.method = "${request.method}"`, ...(request.body ? [`wrk.body = [==[${request.body}]==]`] : []), ...headers].join('\n'),
  );
  const output = execFileSync(
    'wrk',
    ['-t1', `-c${values.connections}`, `-d${seconds}s`, '--latency', '-s', script, `http://127.0.0.1:${port}${request.path}`],
    { encoding: 'utf8' },
  );
  const field = (pattern: RegExp) => pattern.exec(output)?.[1];
  return {
    rps: Number(field(/Requests\/sec:\s+([\d.]+)/)),
    p50: milliseconds(field(/^\s+50%\s+(\S+)/m)),
    p99: milliseconds(field(/^\s+99%\s+(\S+)/m)),
    errors: Number(field(/Non-2xx or 3xx responses:\s+(\d+)/) ?? 0) + Number(field(/Socket errors:.*timeout (\d+)/) ?? 0),
  };
}

async function main() {
  const url = benchDatabaseUrl();
  const sql = openSql(url);
  const dataset = await readDatasetInfo(sql);
  if (!dataset) throw new Error('No benchmark dataset in DATABASE_URL: run npm run bench:data first.');
  await buildServers();
  const ctx: ScenarioContext = {
    organizationId: dataset.organizationId,
    apiToken: dataset.apiToken,
    phoneNumber: dataset.bigConversationPhone,
    deepCursor: (await deepMessageCursor(sql, dataset)).cursor,
  };
  const specs = serverSpecs(url).filter((spec) => serverIds.includes(spec.id));
  const samples: Sample[] = [];
  const dir = mkdtempSync(join(os.tmpdir(), 'bench-wrk-'));
  try {
    for (let round = 0; round < rounds; round += 1) {
      for (const spec of round % 2 === 0 ? specs : [...specs].reverse()) {
        const running = await startServer(spec);
        try {
          for (const scenario of scenarioIds) {
            const request = requestFor(spec.id, scenario, ctx);
            if (!request) continue;
            const answer = await fetch(`http://127.0.0.1:${spec.port}${request.path}`, {
              method: request.method,
              headers: request.headers,
              body: request.body,
            });
            const text = await answer.text();
            if (answer.status !== 200 || text.includes('"errors"'))
              throw new Error(`${spec.id}/${scenario}: HTTP ${answer.status} ${text.slice(0, 300)}`);
            wrk(spec.port, request, Number(values.warmup), dir);
            const pids = await backendPids(sql);
            const statsBefore = await settledStats(running);
            const [cpuBefore, dbBefore] = [cpuMs(running.child.pid!)!, cpuOfAll(pids)];
            const result = wrk(spec.port, request, Number(values.duration), dir);
            const statsAfter = await settledStats(running);
            const cpuAfter = cpuMs(running.child.pid!)!;
            const dbAfter = cpuOfAll([...new Set([...pids, ...(await backendPids(sql))])]);
            const served = statsAfter.requests - statsBefore.requests;
            const sample = {
              server: spec.id,
              scenario,
              ...result,
              cpu: ((cpuAfter - cpuBefore) * 1000) / served,
              db: (cpuDelta(dbBefore, dbAfter) * 1000) / served,
            };
            samples.push(sample);
            console.log(
              `round ${round + 1} ${spec.id.padEnd(8)} ${scenario.padEnd(4)} ${sample.rps.toFixed(0).padStart(6)} req/s  p50 ${sample.p50.toFixed(1)} ms  ` +
                `p99 ${sample.p99.toFixed(1)} ms  server ${sample.cpu.toFixed(0)} µs/req  db ${sample.db.toFixed(0)} µs/req${sample.errors ? `  ERRORS ${sample.errors}` : ''}`,
            );
          }
        } finally {
          await stopServer(running);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await sql.end();
  }

  const int = (n: number) => Math.round(n).toLocaleString('en-US');
  console.log(
    '\n| scenario | server | req/s | p50 ms | p99 ms | server CPU µs/req | DB CPU µs/req | server + DB µs/req | errors | req/s per round |',
  );
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const scenario of scenarioIds) {
    for (const spec of specs) {
      const list = samples.filter((s) => s.server === spec.id && s.scenario === scenario);
      if (list.length === 0) continue;
      const pick = (f: (s: Sample) => number) => median(list.map(f));
      console.log(
        `| ${scenario} | ${spec.id} | ${int(pick((s) => s.rps))} | ${pick((s) => s.p50).toFixed(1)} | ${pick((s) => s.p99).toFixed(1)} | ${int(pick((s) => s.cpu))} | ` +
          `${int(pick((s) => s.db))} | ${int(pick((s) => s.cpu + s.db))} | ${list.reduce((n, s) => n + s.errors, 0)} | ${list.map((s) => int(s.rps)).join(', ')} |`,
      );
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
