import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createDatabase, type Database } from '../src/db/client.js';
import { assembleDeps, type Deps } from '../src/deps.js';
import { createPgliteDataDir, createTestDatabase, postgresUrl } from './helpers/database.js';
import { connectWs, subscribeWs, until } from './helpers/realtime.js';

// `cli inbound` as an operator runs it: a separate process on the same store, through the same inbound
// path as the Twilio webhook. On PostgreSQL a running gateway's subscribers see it live (the CLI's
// NOTIFY crosses processes); PGlite's store belongs to one process, so there the server opens it after.

const run = promisify(execFile);
let env: Record<string, string>;
let cleanup: () => Promise<void>;

async function cli(...args: string[]) {
  const { stdout } = await run(process.execPath, ['dist/cli.js', ...args, '--json'], { env: { ...process.env, ...env } });
  return JSON.parse(stdout) as Record<string, any>;
}

async function cliFails(...args: string[]) {
  try {
    await cli(...args);
  } catch (error) {
    const failure = error as { code: number; stdout: string };
    return { code: failure.code, json: JSON.parse(failure.stdout) as Record<string, any> };
  }
  throw new Error('expected the command to fail');
}

async function serveStore(): Promise<{ app: App; url: string; database: Database; deps: Deps }> {
  const database = postgresUrl
    ? await createDatabase({ kind: 'postgres', url: env.DATABASE_URL! })
    : await createDatabase({ kind: 'pglite', dataDir: env.DATA_DIR });
  const deps = assembleDeps(loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }), database, pino({ level: 'silent' }));
  const app = buildApp(deps);
  return { app, database, deps, url: await app.start(0, '127.0.0.1') };
}

beforeAll(async () => {
  if (postgresUrl) {
    const database = await createTestDatabase();
    env = { DATABASE_URL: (database as { url?: string }).url!, DATA_DIR: '' };
    cleanup = () => database.close();
  } else {
    const dir = createPgliteDataDir('gw-inbound-cli-');
    env = { DATA_DIR: dir, DATABASE_URL: '' };
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
afterAll(() => cleanup());

describe('cli inbound', { timeout: 120_000 }, () => {
  it('stores an inbound message with its analysis and consent effects, and live subscribers see it', async () => {
    const { organizationId, apiToken } = await cli('org', 'create', '--name', 'Inbound CLI');
    await cli('number', 'add', '--org', organizationId, '--phone', '+19195550100', '--default');

    let server: Awaited<ReturnType<typeof serveStore>> | null = null;
    let live: ReturnType<typeof subscribeWs<any>> | null = null;
    let connection: ReturnType<typeof connectWs> | null = null;
    if (postgresUrl) {
      server = await serveStore();
      connection = connectWs(server.url, { organizationId, apiToken });
      live = subscribeWs(connection, `subscription { messageReceived { body category conversation { phoneNumber } } }`);
      const deps = server.deps;
      await until(() => deps.events.subscriberCount('messageReceived', organizationId) > 0, 10_000, 'subscriber');
    }

    const question = await cli('inbound', '--org', organizationId, '--from', '(212) 555-0003', '--body', 'Are you open on Sunday?');
    expect(question).toMatchObject({ phoneNumber: '+12125550003', category: 'question', requiresResponse: true, isOptedIn: true, unreadCount: 1 });
    const stop = await cli('inbound', '--org', organizationId, '--from', '+12125550003', '--body', 'stop', '--media', 'https://example.com/a.png');
    expect(stop).toMatchObject({ category: 'opt_out', optOutDetected: true, requiresResponse: false, isOptedIn: false, unreadCount: 2 });

    try {
      if (live) {
        const received = await live.waitFor(2, 20_000);
        expect(received.map((r) => r.messageReceived)).toEqual([
          { body: 'Are you open on Sunday?', category: 'question', conversation: { phoneNumber: '+12125550003' } },
          { body: 'stop', category: 'opt_out', conversation: { phoneNumber: '+12125550003' } },
        ]);
      }
      server ??= await serveStore();
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${apiToken}`, 'x-organization-id': organizationId },
        body: JSON.stringify({
          query: `{ conversation(phoneNumber: "+12125550003") { unreadCount contact { isTextable isOptedIn consentEvents { kind keyword } }
            messages(first: 5) { edges { node { body direction mediaUrls } } } } }`,
        }),
      });
      const body = (await res.json()) as { data: any };
      expect(body.data.conversation).toEqual({
        unreadCount: 2,
        contact: { isTextable: true, isOptedIn: false, consentEvents: [{ kind: 'OPT_OUT', keyword: 'STOP' }] },
        messages: {
          edges: [
            { node: { body: 'stop', direction: 'INCOMING', mediaUrls: ['https://example.com/a.png'] } },
            { node: { body: 'Are you open on Sunday?', direction: 'INCOMING', mediaUrls: [] } },
          ],
        },
      });
    } finally {
      await connection?.client.dispose();
      if (server) {
        await server.app.stop(1_000);
        await server.deps.events.close();
        await server.database.close();
      }
    }
  });

  it('fails with a JSON error for an unknown organization, number or sender', async () => {
    const unknownOrg = await cliFails('inbound', '--org', '00000000-0000-0000-0000-000000000000', '--from', '+12125550003', '--body', 'hi');
    expect(unknownOrg.code).toBe(1);
    expect(unknownOrg.json.error.code).toBe('NOT_FOUND');
    const { organizationId } = await cli('org', 'create', '--name', 'No numbers');
    const unknownNumber = await cliFails('inbound', '--org', organizationId, '--to', '+14155550004', '--from', '+12125550003', '--body', 'hi');
    expect(unknownNumber.json.error.code).toBe('NOT_FOUND');
    const badSender = await cliFails('inbound', '--org', organizationId, '--from', '12', '--body', 'hi');
    expect(badSender.json.error.code).toBe('INVALID_PHONE_NUMBER');
  });
});
