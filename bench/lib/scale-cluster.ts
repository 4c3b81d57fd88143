import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { SERVER_NODE_FLAGS } from './node-flags.js';

// The moving parts of bench/scale.ts on loopback: Redis, HAProxy in front of the gateway instances, the
// instances themselves (the build in dist/, as `npm start` runs it), and CPU time of whole process trees
// read from /proc. Every process here is a child of the runner, stopped by its own `stop()`.

const TICKS_PER_SECOND = 100;

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces). */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * CPU milliseconds of a process and all its children, including children that already exited (their time
 * is added to the parent's cutime/cstime when it reaps them): PostgreSQL backends come and go.
 */
export function treeCpuMs(rootPid: number): number {
  const own = statFields(rootPid);
  if (!own) return 0;
  // utime, stime, cutime, cstime are fields 14-17 of stat: indexes 11-14 after the name.
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    // ppid is field 4: index 1 after the name.
    if (fields && Number(fields[1]) === rootPid) ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** CPU milliseconds of this process's own threads (not its children). */
export function ownCpuMs(pid: number): number {
  const fields = statFields(pid);
  return fields ? ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND : 0;
}

export { freePort } from '../../tests/helpers/free-port.js';

/** Our own child processes named `name` (for those a helper starts without telling its pid). */
export function childPidsNamed(name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (comm === name && Number(statFields(Number(entry))?.[1]) === process.pid) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 15_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

export type Service = { url: string; pid: number; stop(): Promise<void> };

export async function startRedis(port: number): Promise<Service> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await until('redis-server to listen', 10_000, () => portOpen(port));
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid!, stop: async () => void (await stopChild(child)) };
}

export type HaproxyServer = { name: string; port: number };

export type Haproxy = Service & {
  /** A runtime API command on the admin socket (`enable server gateways/gw2`, `show stat`). */
  command(line: string): Promise<string>;
  /** Per server: its state (UP, DOWN, MAINT, ...) and its counters from `show stat`. */
  servers(): Promise<Map<string, { status: string; sessions: number; current: number }>>;
  /** The backend's retry, redispatch and error counters (`show stat`). */
  failures(): Promise<{ retries: number; redispatches: number; connectionErrors: number; responseErrors: number }>;
};

/**
 * HAProxy config for the gateways (HAProxy 2.6). Retrying (`retry-on`) resends a request HAProxy already
 * gave to a server that closed the connection without answering: safe here only because every POST the
 * load makes is idempotent (sendReply carries an idempotencyKey; inbound webhooks are deduplicated on
 * MessageSid). `response-timeout` is left out: a slow answer is no reason to run a request twice.
 */
export function haproxyConfig(options: { port: number; socket: string; servers: HaproxyServer[]; enabled: number }): string {
  return [
    'global',
    // Two descriptors per connection (client and server side) must fit under this machine's open-file limit.
    '  maxconn 8000',
    `  stats socket ${options.socket} mode 600 level admin`,
    '',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 10s',
    // A check's own timeout defaults to `inter` (500 ms): under full load a busy instance answered later than
    // that, was marked down, and with every instance busy HAProxy had no server left.
    '  timeout check 3s',
    // WebSockets (graphql-ws) stay open for the whole run.
    '  timeout tunnel 1h',
    '  option redispatch',
    '  retries 3',
    '  retry-on conn-failure empty-response',
    '',
    'frontend gateway',
    `  bind 127.0.0.1:${options.port}`,
    '  default_backend gateways',
    '',
    'backend gateways',
    '  balance roundrobin',
    '  option httpchk GET /health/ready',
    '  http-check expect status 200',
    // Which instance answered (on a WebSocket's 101 too): subscribers record where each of their connections went.
    '  http-response set-header X-Served-By %s',
    // Down after two failed checks 500 ms apart; up again after one good one.
    '  default-server inter 500ms fall 2 rise 1',
    ...options.servers.map((server, index) => `  server ${server.name} 127.0.0.1:${server.port} check${index < options.enabled ? '' : ' disabled'}`),
    '',
  ].join('\n');
}

export async function startHaproxy(dir: string, port: number, servers: HaproxyServer[], enabled: number): Promise<Haproxy> {
  const socket = join(dir, 'haproxy.sock');
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, haproxyConfig({ port, socket, servers, enabled }));
  const check = spawn('haproxy', ['-c', '-q', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let checkOutput = '';
  check.stdout!.on('data', (chunk) => (checkOutput += chunk));
  check.stderr!.on('data', (chunk) => (checkOutput += chunk));
  const valid = await new Promise<number | null>((resolve) => check.once('exit', resolve));
  if (valid !== 0) throw new Error(`haproxy -c rejected ${file}:\n${checkOutput}`);
  const child = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  await until('haproxy to listen', 10_000, () => {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`);
    return portOpen(port);
  });
  const command = (line: string) =>
    new Promise<string>((resolve, reject) => {
      const connection = connect(socket);
      let answer = '';
      connection.on('data', (chunk) => (answer += chunk));
      connection.once('error', reject);
      connection.once('end', () => resolve(answer));
      connection.write(`${line}\n`);
    });
  const stats = async () => {
    const text = await command('show stat');
    const [header, ...rows] = text.trim().split('\n');
    const names = header!.replace(/^# /, '').split(',');
    return rows.map((row) => Object.fromEntries(row.split(',').map((value, index) => [names[index], value])) as Record<string, string>);
  };
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    command,
    async servers() {
      const result = new Map<string, { status: string; sessions: number; current: number }>();
      for (const row of await stats()) {
        if (row.pxname === 'gateways' && row.svname !== 'BACKEND') result.set(row.svname!, { status: row.status!, sessions: Number(row.stot), current: Number(row.scur) });
      }
      return result;
    },
    async failures() {
      const rows = await stats();
      const backend = rows.find((row) => row.pxname === 'gateways' && row.svname === 'BACKEND')!;
      return {
        retries: Number(backend.wretr || 0),
        redispatches: Number(backend.wredis || 0),
        connectionErrors: Number(backend.econ || 0),
        responseErrors: Number(backend.eresp || 0),
      };
    },
    stop: async () => void (await stopChild(child, 'SIGTERM', 5_000)),
  };
}

export type GatewayInstance = {
  name: string;
  port: number;
  pid(): number;
  /** Starts the process and waits until /health/ready answers 200. */
  start(env?: Record<string, string>): Promise<void>;
  /** SIGTERM, then waits for the exit; resolves to the exit code. */
  stop(): Promise<number | null>;
  running(): boolean;
  /** The last lines the process printed (to explain a failure). */
  output(): string;
  /** Times /health/ready answered 503 because the database ping did not answer (its warning in the log), over all its runs. */
  readinessFailures(): number;
};

/** `logDir`: each run's whole output is appended to <logDir>/<name>.log too. */
export function gatewayInstance(root: string, name: string, port: number, baseEnv: Record<string, string>, logDir?: string): GatewayInstance {
  let child: ChildProcess | null = null;
  let runs = 0;
  let output = '';
  let readinessFailures = 0;
  return {
    name,
    readinessFailures: () => readinessFailures,
    port,
    pid: () => child?.pid ?? 0,
    running: () => child !== null && child.exitCode === null && child.signalCode === null,
    output: () => output,
    async start(env = {}) {
      output = '';
      runs += 1;
      const logFile = logDir ? join(logDir, `${name}.log`) : null;
      if (logFile) appendFileSync(logFile, `\n===== ${name} run ${runs}, started ${new Date().toISOString()}\n`);
      const started = spawn(process.execPath, [...SERVER_NODE_FLAGS, '--enable-source-maps', 'dist/main.js'], {
        cwd: root,
        env: { ...baseEnv, ...env, PORT: String(port), HOST: '127.0.0.1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = started;
      const keep = (chunk: Buffer) => {
        readinessFailures += String(chunk).split('readiness check failed').length - 1;
        output = (output + chunk).slice(-8000);
        if (logFile) appendFileSync(logFile, chunk);
      };
      started.stdout!.on('data', keep);
      started.stderr!.on('data', keep);
      await until(`${name} to be ready`, 60_000, async () => {
        if (started.exitCode !== null) throw new Error(`${name} exited during start:\n${output}`);
        try {
          return (await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2_000) })).status === 200;
        } catch {
          return false;
        }
      });
    },
    async stop() {
      if (!child) return null;
      return stopChild(child, 'SIGTERM', 30_000);
    },
  };
}

/** Waits until HAProxy reports each named server in the wanted state (UP, or DOWN/MAINT). */
export async function waitForServers(haproxy: Haproxy, names: string[], state: 'UP' | 'DOWN', timeoutMs = 15_000): Promise<void> {
  await until(`HAProxy to see ${names.join(', ')} ${state}`, timeoutMs, async () => {
    const servers = await haproxy.servers();
    return names.every((name) => {
      const status = servers.get(name)?.status ?? '';
      return state === 'UP' ? status.startsWith('UP') : !status.startsWith('UP');
    });
  });
}

/**
 * Watches HAProxy's view of the servers while a window runs (every 250 ms): stop() returns, per server, how
 * often its state changed (a flapping health check shows here) and whether any sample had no server UP.
 */
export function watchServers(haproxy: Haproxy) {
  const last = new Map<string, string>();
  const changes: Record<string, number> = {};
  let noneUp = 0;
  const timer = setInterval(() => {
    void haproxy
      .servers()
      .then((servers) => {
        let up = 0;
        for (const [name, { status }] of servers) {
          if (status === 'MAINT') continue;
          if (status.startsWith('UP')) up += 1;
          const previous = last.get(name);
          if (previous !== undefined && previous !== status) changes[name] = (changes[name] ?? 0) + 1;
          last.set(name, status);
        }
        if (up === 0) noneUp += 1;
      })
      .catch(() => {});
  }, 250);
  return () => (clearInterval(timer), { changes, noneUp });
}

/** CPU time of the whole machine (every process, ours and others'), busy and total, from /proc/stat. */
export function machineCpuMs(): { busy: number; total: number } {
  const [cpu] = readFileSync('/proc/stat', 'utf8').split('\n');
  const ticks = cpu!.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((sum, n) => sum + n, 0);
  // idle and iowait are the 4th and 5th columns.
  const busy = total - ticks[3]! - ticks[4]!;
  return { busy: (busy * 1000) / TICKS_PER_SECOND, total: (total * 1000) / TICKS_PER_SECOND };
}
