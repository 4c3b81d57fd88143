import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase } from '../src/db/client.js';
import { createDemoOrganization } from '../src/services/demo.js';
import { startPgbouncer } from '../tests/helpers/pgbouncer.js';
import { benchDatabaseUrl, prepareDatabase } from './lib/database.js';

// One read-heavy GraphQL query (the inbox: conversations with their last messages), measured against the
// same gateway build and database twice: straight to PostgreSQL (statements prepared), and through
// pgbouncer in transaction mode (DATABASE_DIRECT_URL set: no prepared statements). pgbouncer gets as many
// server connections as the gateway's pool, so what differs is the pooler's hop and the unprepared statements;
// a third run, pooled mode pointed at PostgreSQL itself, tells the two apart.
// Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_pooler_bench flock /tmp/bench.lock npx tsx bench/pooler.ts

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
    pool: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
  },
});
const rootDir = join(import.meta.dirname, '..');
const pool = Number(values.pool);
const INBOX = `query Inbox { conversations(first: 20) { edges { node { id phoneNumber unreadCount lastMessageAt
  contact { firstName lastName } lastMessage { body direction createdAt }
  messages(first: 5) { edges { node { body direction status createdAt } } } } } } }`;

type Autocannon = (options: Record<string, unknown>) => Promise<{
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}>;
const requireFromBench = createRequire(join(rootDir, 'bench', 'package.json'));
let autocannon: Autocannon;
try {
  autocannon = requireFromBench('autocannon') as Autocannon;
} catch {
  throw new Error('autocannon is missing: npm --prefix bench ci');
}

const url = benchDatabaseUrl();
await prepareDatabase(url);
execFileSync(process.execPath, [join(rootDir, 'scripts', 'build.mjs')], { stdio: 'inherit' });
const database = await createDatabase({ kind: 'postgres', url, poolSize: 2 });
const demo = await createDemoOrganization(database.db, { contacts: 200, messages: 4000 }).finally(() => database.close());
const target = new URL(url);
const bouncer = await startPgbouncer({ serverUrl: url, defaultPoolSize: pool, users: [decodeURIComponent(target.username) || 'postgres'] });
const pooledUrl = bouncer.urlFor(decodeURIComponent(target.pathname.slice(1)));

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

async function startGateway(env: Record<string, string>, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--max-semi-space-size=64', join(rootDir, 'dist', 'main.js')], {
    cwd: rootDir,
    env: { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), SEED_DEMO: 'false', RATE_LIMIT_PER_MINUTE: '0', DATABASE_POOL_SIZE: String(pool), ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 200))) {
    if (child.exitCode !== null) throw new Error('the gateway exited during start');
    if (await fetch(`http://127.0.0.1:${port}/health/ready`).then((res) => res.ok, () => false)) return child;
  }
  throw new Error('the gateway did not start in 60 s');
}

const MODES = [
  ['direct (prepared)', { DATABASE_URL: url }],
  // Pooled mode pointed at PostgreSQL itself: the cost of unprepared statements alone, without the hop.
  ['direct, prepare: false', { DATABASE_URL: url, DATABASE_DIRECT_URL: url }],
  ['pgbouncer (transaction mode, prepare: false)', { DATABASE_URL: pooledUrl, DATABASE_DIRECT_URL: url }],
] as const;
type Run = { rate: number; p50: number; p99: number; errors: number };
const runs = new Map<string, Run[]>(MODES.map(([label]) => [label, []]));
try {
  // Every other round in reverse order, so neither path always runs on a warmer database.
  for (let round = 0; round < Number(values.rounds); round += 1) {
    for (const [label, env] of round % 2 === 0 ? MODES : [...MODES].reverse()) {
      const port = await freePort();
      const child = await startGateway(env, port);
      const options = {
        url: `http://127.0.0.1:${port}/graphql`,
        method: 'POST',
        connections: Number(values.connections),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${demo.apiToken}`, 'x-organization-id': demo.organizationId },
        body: JSON.stringify({ query: INBOX, operationName: 'Inbox' }),
      };
      await autocannon({ ...options, duration: Number(values.warmup) });
      const result = await autocannon({ ...options, duration: Number(values.duration) });
      runs.get(label)!.push({ rate: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.non2xx + result.errors });
      console.log(`round ${round + 1}, ${label}: ${Math.round(result.requests.average)} requests/s`);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }
} finally {
  await bouncer.stop();
}
const median = (numbers: number[]) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)]!;
const results = [...runs].map(([label, measured]) => {
  const of = (key: keyof Run) => median(measured.map((run) => run[key]));
  return `| ${label} | ${Math.round(of('rate'))} | ${of('p50')} | ${of('p99')} | ${measured.reduce((sum, run) => sum + run.errors, 0)} |`;
});
console.log(`\nInbox query, ${values.connections} connections, ${values.duration} s, pool ${pool} (pgbouncer default_pool_size ${pool}), medians of ${values.rounds} rounds\n`);
console.log('| path | requests/s | p50 ms | p99 ms | errors |\n| --- | --- | --- | --- | --- |');
console.log(results.join('\n'));
