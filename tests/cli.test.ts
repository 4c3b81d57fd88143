import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { assembleDeps } from '../src/deps.js';
import { createTestDatabase, postgresUrl } from './helpers/database.js';

// The operator CLI as an operator runs it: a separate process on the same store, JSON on stdout.

const run = promisify(execFile);
let env: Record<string, string>;
let cleanup: () => Promise<void>;

// The build tests/global-setup.ts made (the same src/cli.ts, without tsx compiling it at every start);
// the first command runs exactly as the README writes it.
async function cli(...args: string[]) {
  const { stdout, stderr } = await run(process.execPath, ['dist/cli.js', ...args, '--json'], {
    env: { ...process.env, ...env, LOG_LEVEL: 'info' },
  });
  return { json: JSON.parse(stdout) as Record<string, any>, stdout, stderr };
}

async function cliAsReadme(...args: string[]) {
  const { stdout, stderr } = await run('npm', ['run', '-s', 'cli', '--', ...args, '--json'], {
    env: { ...process.env, ...env, LOG_LEVEL: 'info' },
  });
  return { json: JSON.parse(stdout) as Record<string, any>, stdout, stderr };
}

async function cliFails(...args: string[]) {
  try {
    await cli(...args);
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, json: JSON.parse(failure.stdout), stderr: failure.stderr };
  }
  throw new Error('expected the command to fail');
}

/** Opens the CLI's store in this process (after the CLI exited) and serves it. */
async function serveStore(): Promise<{ app: App; url: string; database: Database }> {
  const database = postgresUrl
    ? await createDatabase({ kind: 'postgres', url: env.DATABASE_URL! })
    : await createDatabase({ kind: 'pglite', dataDir: env.DATA_DIR });
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' });
  const app = buildApp(assembleDeps(config, database, pino({ level: 'silent' })));
  return { app, database, url: await app.start(0, '127.0.0.1') };
}

beforeAll(async () => {
  if (postgresUrl) {
    const database = await createTestDatabase();
    env = { DATABASE_URL: database.url!, DATA_DIR: '' };
    cleanup = () => database.close();
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'gw-cli-'));
    env = { DATA_DIR: dir, DATABASE_URL: '' };
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
afterAll(() => cleanup());

// Each command is a fresh process opening the store: allow for slow, busy machines.
describe('cli', { timeout: 120_000 }, () => {
  let organizationId: string;
  let apiToken: string;
  let extraToken: string;

  it('creates an organization, a number, a contact and a token, printing only JSON on stdout', async () => {
    const org = await cliAsReadme('org', 'create', '--name', 'CLI Org', '--credits', '75', '--timezone', 'America/Chicago');
    expect(org.stdout.trim().split('\n')).toHaveLength(1);
    expect(org.json).toEqual({ organizationId: expect.any(String), apiToken: expect.stringMatching(/^cgw_/) });
    ({ organizationId, apiToken } = org.json as { organizationId: string; apiToken: string });

    const number = await cli('number', 'add', '--org', organizationId, '--phone', '(919) 555-0100', '--default');
    expect(number.json).toMatchObject({ phoneNumberId: expect.any(String), phoneNumber: '+19195550100' });
    const contact = await cli('contact', 'add', '--org', organizationId, '--phone', '919.555.1234', '--first', 'Jane', '--last', 'Smith', '--textable', 'pending');
    expect(contact.json).toMatchObject({ contactId: expect.any(String) });
    const token = await cli('token', 'create', '--org', organizationId);
    expect(token.json.apiToken).toMatch(/^cgw_/);
    extraToken = token.json.apiToken;
  });

  let agentId: string;
  let agentToken: string;
  let secondAgentToken: string;

  it('adds a user with a role and a token that acts as them; token create --user issues another', async () => {
    const user = await cli('user', 'create', '--org', organizationId, '--email', 'Casey@cli.example.com', '--name', 'Casey', '--role', 'agent');
    expect(user.json).toEqual({ userId: expect.any(String), apiToken: expect.stringMatching(/^cgw_/), tokenId: expect.any(String) });
    agentId = user.json.userId;
    agentToken = user.json.apiToken;
    const again = await cliFails('user', 'create', '--org', organizationId, '--email', 'casey@CLI.example.com', '--role', 'admin');
    expect(again.json.error.code).toBe('MEMBER_ALREADY_EXISTS');
    const badRole = await cliFails('user', 'create', '--org', organizationId, '--email', 'x@cli.example.com', '--role', 'boss');
    expect(badRole.json.error.code).toBe('BAD_USER_INPUT');
    const second = await cli('token', 'create', '--org', organizationId, '--user', agentId, '--name', 'second device');
    secondAgentToken = second.json.apiToken;
    const stranger = await cliFails('token', 'create', '--org', organizationId, '--user', '00000000-0000-4000-8000-000000000000');
    expect(stranger.json.error.code).toBe('MEMBER_NOT_FOUND');
  });

  it('fails with a JSON error and a non-zero exit for bad input', async () => {
    const unknownOrg = await cliFails('contact', 'add', '--org', '00000000-0000-0000-0000-000000000000', '--phone', '+19195551234');
    expect(unknownOrg.code).toBe(1);
    expect(unknownOrg.json.error.code).toBe('NOT_FOUND');
    const badPhone = await cliFails('number', 'add', '--org', organizationId, '--phone', '12');
    expect(badPhone.json.error.code).toBe('INVALID_PHONE_NUMBER');
    const badZone = await cliFails('org', 'create', '--name', 'X', '--timezone', 'Mars/Olympus');
    expect(badZone.json.error.code).toBe('BAD_USER_INPUT');
  });

  it('generates a demo organization with a varied, deterministic inbox', async () => {
    const demo = await cli('demo', '--seed', '7');
    expect(demo.json).toMatchObject({ organizationId: expect.any(String), apiToken: expect.stringMatching(/^cgw_/) });
    const again = await cli('demo', '--seed', '7');
    expect(again.json.organizationId).not.toBe(demo.json.organizationId);

    const { app, url, database } = await serveStore();
    try {
      const ask = async (creds: { organizationId: string; apiToken: string }, query: string) => {
        const res = await fetch(`${url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${creds.apiToken}`, 'x-organization-id': creds.organizationId },
          body: JSON.stringify({ query }),
        });
        const body = (await res.json()) as { data: any; errors?: unknown };
        expect(body.errors).toBeUndefined();
        return body.data;
      };
      // The demo has 22 conversations of at most 60 messages: one page of each, within the cost limit.
      const INBOX = `{ organization { credits phoneNumbers { isDefault } } conversations(first: 30, filter: { includeArchived: true }) { edges { node {
        phoneNumber unreadCount isArchived isStarred lastMessage { direction body } contact { firstName lastName }
        messages(first: 100) { edges { node { direction body } } pageInfo { hasNextPage } } } } } }`;
      const first = await ask(demo.json as any, INBOX);
      const second = await ask(again.json as any, INBOX);
      expect(first.organization.credits).toBe(1000);
      expect(first.organization.phoneNumbers).toEqual([{ isDefault: true }]);
      const nodes = first.conversations.edges.map((e: any) => e.node);
      expect(nodes.length).toBeGreaterThanOrEqual(20);
      expect(nodes.every((n: any) => n.contact?.firstName && n.contact?.lastName)).toBe(true);
      expect(Math.max(...nodes.map((n: any) => n.messages.edges.length))).toBeGreaterThanOrEqual(40);
      expect(nodes.every((n: any) => !n.messages.pageInfo.hasNextPage)).toBe(true);
      expect(nodes.some((n: any) => n.unreadCount > 0)).toBe(true);
      expect(nodes.some((n: any) => n.lastMessage.direction === 'INCOMING')).toBe(true);
      expect(nodes.some((n: any) => n.lastMessage.direction === 'OUTGOING')).toBe(true);
      expect(nodes.some((n: any) => n.isArchived)).toBe(true);
      expect(nodes.some((n: any) => n.isStarred)).toBe(true);
      const directions = nodes.flatMap((n: any) => n.messages.edges.map((e: any) => e.node.direction));
      expect(new Set(directions)).toEqual(new Set(['INCOMING', 'OUTGOING']));
      // Same seed, same inbox (contents; ids and the organization differ).
      const shape = (data: any) => data.conversations.edges.map((e: any) => [e.node.phoneNumber, e.node.messages.edges.map((m: any) => m.node.body)]);
      expect(shape(second)).toEqual(shape(first));

      // The CLI-made organization and both of its tokens work against the server.
      for (const token of [apiToken, extraToken]) {
        const org = await ask({ organizationId, apiToken: token }, '{ organization { name timezone credits phoneNumbers { phoneNumber isDefault } } }');
        expect(org.organization).toEqual({
          name: 'CLI Org',
          timezone: 'America/Chicago',
          credits: 75,
          phoneNumbers: [{ phoneNumber: '+19195550100', isDefault: true }],
        });
      }

      // The demo's team: its token acts as the OWNER; two AGENTs work mixed statuses and assignments, all four
      // statuses in the default (unarchived) inbox.
      const team = await ask(demo.json as any, `{ viewer { role user { name } } organization { members { role user { name } } }
        conversations(first: 30) { edges { node { status waitingSince assignee { name } lastMessage { direction } } } } }`);
      expect(team.viewer).toEqual({ role: 'OWNER', user: { name: 'Dana Whitfield' } });
      expect(team.organization.members.map((m: any) => m.role)).toEqual(['OWNER', 'AGENT', 'AGENT']);
      const threads = team.conversations.edges.map((e: any) => e.node);
      expect(new Set(threads.map((n: any) => n.status))).toEqual(new Set(['OPEN', 'PENDING', 'SNOOZED', 'RESOLVED']));
      expect(new Set(threads.map((n: any) => n.assignee?.name ?? null)).size).toBe(4);
      for (const thread of threads) expect(thread.waitingSince === null).toBe(thread.lastMessage.direction === 'OUTGOING');

      // `user create` and `token create --user`: tokens that act as that person.
      const viewerOf = (token: string) => ask({ organizationId, apiToken: token }, '{ viewer { role user { uuid email name } } }');
      expect((await viewerOf(agentToken)).viewer).toEqual({ role: 'AGENT', user: { uuid: agentId, email: 'Casey@cli.example.com', name: 'Casey' } });
      expect((await viewerOf(secondAgentToken)).viewer.user.uuid).toBe(agentId);
    } finally {
      await app.stop(1_000);
      await database.close();
    }
  });
});
