import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { openSql } from './database.js';
import { SERVER_NODE_FLAGS } from './node-flags.js';
import type { ServerId } from './scenarios.js';

// The servers under measurement: how each is built and started, and the IPC channel through which the
// runner reads what a server served (bench/servers/stats.mjs). Shared by run.ts and wrk.ts.

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const rootDir = join(benchDir, '..');

// Benchmark-only packages live in bench/node_modules; install them on first use.
export function ensureBenchPackages() {
  if (existsSync(join(benchDir, 'node_modules', 'postgraphile')) && existsSync(join(benchDir, 'node_modules', 'autocannon'))) return;
  console.log('Installing bench/ packages (PostGraphile, autocannon): npm --prefix bench ci');
  execFileSync('npm', ['--prefix', benchDir, 'ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
}

/**
 * Servers run as built JavaScript, as `npm start` runs the gateway: the gateway's dist/ (scripts/build.mjs)
 * and the two floors bundled into bench/.build/ (their few imports from src/ inlined). Through tsx's loader
 * every server cost ~15% more CPU per request.
 */
export async function buildServers() {
  execFileSync(process.execPath, [join(rootDir, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const { build } = await import('esbuild');
  await build({
    entryPoints: [join(benchDir, 'servers', 'floor.ts'), join(benchDir, 'servers', 'json-floor.ts')],
    outdir: join(benchDir, '.build'),
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
}

/** The gateway verifies the benchmark's signed Twilio webhooks with this token. */
export const BENCH_TWILIO_AUTH_TOKEN = 'bench-twilio-auth-token';

export type ServerSpec = { id: ServerId; label: string; args: string[]; env: Record<string, string>; port: number };

export function serverSpecs(url: string): ServerSpec[] {
  const common = { DATABASE_URL: url, DATABASE_POOL_SIZE: '10' };
  return [
    {
      id: 'gateway',
      label: 'gateway (Yoga + Pothos + Drizzle)',
      args: [...SERVER_NODE_FLAGS, '--enable-source-maps', join(benchDir, 'servers', 'gateway.mjs')],
      env: {
        ...common,
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: '4100',
        LOG_LEVEL: 'warn',
        SEED_DEMO: 'false',
        // One token makes every request here; a per-token limit would measure the limiter's 429s. It stays
        // on (its per-request cost is part of the gateway) with a ceiling the benchmark never reaches.
        RATE_LIMIT_PER_MINUTE: '1000000000',
        // Webhooks are verified against this token (no account SID: sends stay on the simulated provider).
        TWILIO_AUTH_TOKEN: BENCH_TWILIO_AUTH_TOKEN,
        PUBLIC_BASE_URL: 'http://127.0.0.1:4100',
      },
      port: 4100,
    },
    {
      id: 'floor',
      label: 'floor (node:http + postgres.js, hand-written SQL)',
      args: [...SERVER_NODE_FLAGS, join(benchDir, '.build', 'floor.mjs')],
      env: { ...common, PORT: '4101' },
      port: 4101,
    },
    {
      id: 'pgjson',
      label: 'floor (PostgreSQL builds the JSON: node:http + postgres.js, one statement returns the response body)',
      args: [...SERVER_NODE_FLAGS, join(benchDir, '.build', 'json-floor.mjs')],
      env: { ...common, PORT: '4103' },
      port: 4103,
    },
    {
      id: 'postgraphile',
      label: 'PostGraphile 5 (amber preset)',
      args: [...SERVER_NODE_FLAGS, '--require', join(benchDir, 'servers', 'polyfill.cjs'), join(benchDir, 'servers', 'postgraphile.mjs')],
      env: { ...common, PORT: '4102', GRAPHILE_ENV: 'production', NODE_ENV: 'production' },
      port: 4102,
    },
  ];
}

export type Running = { spec: ServerSpec; child: ChildProcess; output: string[] };

export async function startServer(spec: ServerSpec): Promise<Running> {
  const child = spawn(process.execPath, spec.args, {
    cwd: rootDir,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const output: string[] = [];
  child.stdout!.on('data', (chunk) => output.push(String(chunk)));
  child.stderr!.on('data', (chunk) => output.push(String(chunk)));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${spec.id} exited during start:\n${output.join('')}`);
    try {
      await fetch(`http://127.0.0.1:${spec.port}/`, { signal: AbortSignal.timeout(1000) });
      return { spec, child, output };
    } catch {
      if (Date.now() > deadline) throw new Error(`${spec.id} did not start in 60 s:\n${output.join('')}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

export async function stopServer(running: Running) {
  if (running.child.exitCode !== null) return;
  const exited = new Promise((resolve) => running.child.once('exit', resolve));
  running.child.kill('SIGTERM');
  const timer = setTimeout(() => running.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export type ServerStats = { requests: number; statements: number };

/** Sends an IPC message to the server and waits for its reply of type `replyType`. */
export function ask<T>(running: Running, message: string, replyType: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${running.spec.id} did not answer ${message}`)), 10_000);
    const onMessage = (reply: { type?: string }) => {
      if (reply?.type !== replyType) return;
      clearTimeout(timer);
      running.child.off('message', onMessage);
      resolve(reply as T);
    };
    running.child.on('message', onMessage);
    running.child.send(message);
  });
}

const serverStats = (running: Running) => ask<ServerStats>(running, 'stats', 'stats');

/** Stats once the server has finished what autocannon left in flight (two equal reads 100 ms apart). */
export async function settledStats(running: Running): Promise<ServerStats> {
  let last = await serverStats(running);
  for (let i = 0; i < 100; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const next = await serverStats(running);
    if (next.requests === last.requests && next.statements === last.statements) return next;
    last = next;
  }
  return last;
}

export async function backendPids(sql: ReturnType<typeof openSql>): Promise<number[]> {
  const rows =
    await sql`select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`;
  return rows.map((row) => row.pid as number);
}
