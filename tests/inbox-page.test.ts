import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postInbound, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE_URL } from './helpers/realtime.js';
import { createServerStore, freePort, startServerProcess, type ServerProcess, type ServerStore } from './helpers/server-process.js';

// The inbox page (src/web/) end to end: the real server process (dist/main.js, demo seeded, development mode)
// serving the Vite build, driven by playwright-core in Debian's Chromium (`apt-get install -y chromium`;
// .ci/run installs it when missing). One browser for the file, a fresh context (empty localStorage) per test.
// Screenshots go to INBOX_SCREENSHOTS_DIR when set (docs/screenshots for the README), else a temporary folder.

const root = join(import.meta.dirname, '..');
const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Headless and offline: without the background-networking flags Chromium dials Google's hosts at every start.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const shots = process.env.INBOX_SCREENSHOTS_DIR ? join(root, process.env.INBOX_SCREENSHOTS_DIR) : mkdtempSync(join(tmpdir(), 'inbox-shots-'));

let store: ServerStore;
let dataDir: string;
let env: Record<string, string>;
let port: number;
let server: ServerProcess;
let browser: Browser;
let demo: { organizationId: string; apiToken: string };
let orgNumber: string;
const consoleErrors: string[] = [];

async function gql<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${demo.apiToken}`, 'x-organization-id': demo.organizationId },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data: T; errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

type Row = { phoneNumber: string; contact: { isOptedIn: boolean; isTextable: boolean | null } | null };
async function conversations(): Promise<Row[]> {
  const data = await gql(`{ conversations(first: 50) { edges { node { phoneNumber contact { isOptedIn isTextable } } } } }`);
  return data.conversations.edges.map((edge: { node: Row }) => edge.node);
}
const textable = async () => (await conversations()).filter((c) => c.contact?.isOptedIn && c.contact.isTextable);

let contexts: BrowserContext[] = [];
async function openPage(path = '/', viewport = { width: 1440, height: 900 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (error) => consoleErrors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    // The demo's media live on example.org (the machine is offline); a stopping server resets requests in
    // flight (or closes them unanswered) and then refuses connections (the restart test).
    if (/net::ERR_NAME_NOT_RESOLVED|net::ERR_CONNECTION_REFUSED|net::ERR_CONNECTION_RESET|net::ERR_EMPTY_RESPONSE|WebSocket connection to/.test(text)) return;
    consoleErrors.push(text);
  });
  await page.goto(server.url + path);
  return page;
}

const bubbles = (page: Page, body: string) => page.locator('[data-testid=messages] li.bubble', { hasText: body });
const listPhones = (page: Page) => page.locator('[data-testid=conversation-list] li').evaluateAll((items) => items.map((li) => li.getAttribute('data-phone')));
/** A filter's badge, once conversationCounts has answered. */
async function badge(page: Page, key: string): Promise<number> {
  await page.waitForFunction((k) => /^\d+$/.test(document.querySelector(`[data-testid=count-${k}]`)?.textContent ?? ''), key);
  return Number(await page.getByTestId(`count-${key}`).textContent());
}
const waitLive = (page: Page) => page.waitForFunction(() => document.querySelector('[data-testid=connection]')?.textContent === 'Live');

beforeAll(async () => {
  // The page's own build (global setup builds the server only).
  await run(process.execPath, [join(root, 'scripts', 'build-web.mjs')], { cwd: root });
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium`);
  store = await createServerStore();
  dataDir = store.env.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'inbox-demo-')); // where demo-credentials.json goes
  port = await freePort();
  env = {
    ...store.env, DATA_DIR: dataDir, NODE_ENV: 'development', SEED_DEMO: 'true', TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
    PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL, RATE_LIMIT_PER_MINUTE: '0', SIMULATED_STATUS_DELAY_MS: '200',
  };
  server = await startServerProcess(env, port);
  demo = JSON.parse(readFileSync(join(dataDir, 'demo-credentials.json'), 'utf8'));
  orgNumber = (await gql(`{ organization { defaultPhoneNumber { phoneNumber } } }`)).organization.defaultPhoneNumber.phoneNumber;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  mkdirSync(shots, { recursive: true });
}, 120_000);

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  if (server && server.child.exitCode === null) {
    server.child.kill('SIGTERM');
    await server.exited;
  }
  await store?.destroy();
  if (!store?.env.DATA_DIR && dataDir) rmSync(dataDir, { recursive: true, force: true });
  if (!process.env.INBOX_SCREENSHOTS_DIR) rmSync(shots, { recursive: true, force: true });
});

describe('the inbox page in Chromium', () => {
  it('serves the page with its CSP and immutable assets, and hands the demo credentials to it outside production only', async () => {
    const index = await fetch(`${server.url}/inbox/%2B19195550100`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    expect(html).toContain(`"apiToken":"${demo.apiToken}"`);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1];
    const script = await fetch(server.url + asset);
    expect(script.headers.get('cache-control')).toContain('immutable');
    // The quality bar: at most 200 KB of JavaScript gzipped.
    expect(gzipSync(Buffer.from(await script.arrayBuffer())).length).toBeLessThan(200 * 1024);
    expect((await fetch(`${server.url}/assets/../main.js`)).status).toBe(404);
  });

  it('opens signed in as the demo owner and renders the inbox; signing out asks for a token', async () => {
    const page = await openPage('/');
    await waitLive(page);
    await page.locator('[data-testid=conversation-list] li').first().waitFor();
    const all = await badge(page, 'all');
    expect(all).toBeGreaterThan(0);
    await page.waitForFunction((n) => document.querySelector('[data-testid=conversation-list]')?.getAttribute('data-count') === String(n), all);
    await page.waitForFunction(() => document.querySelector('.topbar .who')?.textContent?.includes('OWNER · ') || document.querySelector('.topbar .who')?.textContent?.includes('· OWNER'));
    await page.screenshot({ path: join(shots, 'inbox.png') });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    // A token typed in is checked, kept in localStorage and survives a reload.
    await page.getByLabel('API token').fill(demo.apiToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('[data-testid=conversation-list] li').first().waitFor();
    expect(await page.evaluate(() => localStorage.getItem('conversations-gateway.session'))).toContain(demo.apiToken);
  });

  it('narrows the list with a filter whose badge matches', async () => {
    const page = await openPage('/');
    await page.locator('[data-testid=conversation-list] li').first().waitFor();
    const all = await badge(page, 'all');
    const unread = await badge(page, 'unread');
    expect(unread).toBeGreaterThan(0);
    expect(unread).toBeLessThan(all);
    await page.locator('[data-filter=unread]').click();
    await page.waitForFunction((n) => document.querySelector('[data-testid=conversation-list]')?.getAttribute('data-count') === String(n), unread);
    const badges = await page.locator('[data-testid=conversation-list] .unread-count').count();
    expect(badges).toBe(unread); // every row shown is unread
  });

  it('sends a reply with a live preview, shows it at once, and its ticks reach delivered', async () => {
    const [target] = await textable();
    const page = await openPage(`/inbox/${encodeURIComponent(target.phoneNumber)}`);
    await page.locator('[data-testid=messages] li').first().waitFor();
    const body = `Thanks for writing, see you at ${Date.now()}`;
    await page.getByLabel('Reply', { exact: true }).fill(body);
    await page.waitForFunction(() => /1 segment · GSM-7 · 1 credit/.test(document.querySelector('[data-testid=preview]')?.textContent ?? ''));
    await page.screenshot({ path: join(shots, 'composer.png') });
    await page.getByLabel('Reply', { exact: true }).press('Enter');
    await bubbles(page, body).waitFor();
    await page.waitForFunction((text) => [...document.querySelectorAll('li.bubble')].some((li) => li.textContent!.includes(text) && li.getAttribute('data-status') === 'DELIVERED'), body);
    expect(await bubbles(page, body).count()).toBe(1);
    expect(await bubbles(page, body).getByTestId('ticks').getAttribute('aria-label')).toBe('delivered');
    await page.screenshot({ path: join(shots, 'thread.png') });
    const stored = await gql(`query($p: String!) { conversation(phoneNumber: $p) { messages(first: 5) { edges { node { body } } } } }`, { p: target.phoneNumber });
    expect(stored.conversation.messages.edges.filter((e: any) => e.node.body === body)).toHaveLength(1);
  });

  it('shows an inbound webhook in the open thread and moves its conversation to the top', async () => {
    const candidates = await textable();
    const target = candidates[candidates.length - 1];
    const page = await openPage(`/inbox/${encodeURIComponent(target.phoneNumber)}`);
    await waitLive(page);
    await page.locator('[data-testid=messages] li').first().waitFor();
    expect((await listPhones(page))[0]).not.toBe(target.phoneNumber);
    const body = `Is the hall open tonight? ${Date.now()}`;
    expect((await postInbound(server.url, orgNumber, target.phoneNumber, body)).status).toBe(200);
    await bubbles(page, body).waitFor();
    await page.waitForFunction((phone) => document.querySelector('[data-testid=conversation-list] li')?.getAttribute('data-phone') === phone, target.phoneNumber);
    expect(await bubbles(page, body).count()).toBe(1);
  });

  it('shows status and assignment changes made by another client live', async () => {
    const [, target] = await textable();
    const page = await openPage(`/inbox/${encodeURIComponent(target.phoneNumber)}`);
    await waitLive(page);
    await page.getByTestId('status').waitFor();
    const { organization } = await gql(`{ organization { members { user { id name } } } }`);
    const member = organization.members[organization.members.length - 1].user;
    await gql(`mutation($p: String!) { setConversationStatus(phoneNumber: $p, status: PENDING) { status } }`, { p: target.phoneNumber });
    await page.waitForFunction(() => (document.querySelector('[data-testid=status]') as HTMLSelectElement).value === 'PENDING');
    await gql(`mutation($p: String!, $u: ID) { assignConversation(phoneNumber: $p, userId: $u) { id } }`, { p: target.phoneNumber, u: member.id });
    await page.waitForFunction((id) => (document.querySelector('[data-testid=assignee]') as HTMLSelectElement).value === id, member.id);
  });

  it('shows why a send to an opted-out contact is refused', async () => {
    const phone = '+19195550177';
    await postInbound(server.url, orgNumber, phone, 'STOP');
    const page = await openPage(`/inbox/${encodeURIComponent(phone)}`);
    await page.locator('.composer .warning').waitFor();
    await page.getByLabel('Reply', { exact: true }).fill('Are you still there?');
    await page.getByLabel('Reply', { exact: true }).press('Enter');
    const error = await page.getByTestId('send-error').textContent();
    expect(error).toContain('opted out');
    const stored = await gql(`query($p: String!) { conversation(phoneNumber: $p) { messages(first: 5) { edges { node { direction } } } } }`, { p: phone });
    expect(stored.conversation.messages.edges.every((e: any) => e.node.direction === 'INCOMING')).toBe(true);
  });

  it('is readable at 360 px: the list, then the thread with a way back', async () => {
    const [target] = await textable();
    const page = await openPage('/', { width: 360, height: 740 });
    await page.locator('[data-testid=conversation-list] li').first().waitFor();
    await page.locator(`[data-testid=conversation-list] li[data-phone="${target.phoneNumber}"] button`).click();
    await page.getByLabel('Back to the list').waitFor();
    expect(await page.locator('.list-pane').isVisible()).toBe(false);
    await page.screenshot({ path: join(shots, 'narrow.png') });
    await page.getByLabel('Back to the list').click();
    await page.locator('[data-testid=conversation-list]').waitFor();
  });

  it('survives a server restart: "Reconnecting…", then every message of the gap exactly once', async () => {
    const candidates = await textable();
    const target = candidates[Math.floor(candidates.length / 2)];
    const page = await openPage(`/inbox/${encodeURIComponent(target.phoneNumber)}`);
    await waitLive(page);
    const stamp = Date.now();
    await postInbound(server.url, orgNumber, target.phoneNumber, `before the gap ${stamp}`);
    await bubbles(page, `before the gap ${stamp}`).waitFor();

    server.child.kill('SIGTERM');
    await server.exited;
    await page.waitForFunction(() => document.querySelector('[data-testid=connection]')?.textContent === 'Reconnecting…');
    // Messages that arrive while no server runs: the CLI stores them through the webhook's own path.
    const cliEnv: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined && key !== 'DATABASE_URL') cliEnv[key] = value;
    for (const n of [1, 2]) {
      await run(process.execPath, ['dist/cli.js', 'inbound', '--org', demo.organizationId, '--from', target.phoneNumber, '--body', `in the gap ${n} ${stamp}`], {
        cwd: root, env: { ...cliEnv, ...env, LOG_LEVEL: 'warn' },
      });
    }
    server = await startServerProcess(env, port);
    await waitLive(page);
    for (const n of [1, 2]) await bubbles(page, `in the gap ${n} ${stamp}`).waitFor();
    await postInbound(server.url, orgNumber, target.phoneNumber, `after the gap ${stamp}`);
    await bubbles(page, `after the gap ${stamp}`).waitFor();
    for (const body of ['before the gap', 'in the gap 1', 'in the gap 2', 'after the gap']) {
      expect(await bubbles(page, `${body} ${stamp}`).count(), body).toBe(1);
    }
    // The list caught up too: this conversation is on top.
    await page.waitForFunction(
      (phone) => document.querySelector('[data-testid=conversation-list] li')?.getAttribute('data-phone') === phone,
      target.phoneNumber,
      { timeout: 30_000 },
    );
  }, 120_000); // a stop, two CLI runs and a start of the real process

  it('labels every control, and a keyboard alone reaches the composer and sends', async () => {
    const [target] = await textable();
    const page = await openPage(`/inbox/${encodeURIComponent(target.phoneNumber)}`);
    await page.locator('[data-testid=messages] li').first().waitFor();
    await waitLive(page);
    // Every visible control has an accessible name: a <label>, aria-label(ledby), a title, or (buttons) its text.
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('button, input, select, textarea')]
        .filter((el) => (el as HTMLElement).offsetParent !== null && (el as HTMLInputElement).type !== 'hidden')
        .filter((el) => {
          const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.getAttribute('title');
          const labelled = (el as HTMLInputElement).labels && (el as HTMLInputElement).labels!.length > 0;
          const text = el.tagName === 'BUTTON' && (el.textContent ?? '').trim().length > 0;
          return !(named || labelled || text);
        })
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    expect(unlabelled).toEqual([]);
    // Tab from the top of the page until the reply box has focus, then type and send with Enter.
    await page.locator('body').click({ position: { x: 1, y: 1 } });
    let reached = false;
    for (let i = 0; i < 150 && !reached; i += 1) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.getAttribute('aria-label') === 'Reply' || (document.activeElement as HTMLTextAreaElement | null)?.labels?.[0]?.textContent?.trim() === 'Reply');
    }
    expect(reached).toBe(true);
    const body = `Typed without a mouse ${Date.now()}`;
    await page.keyboard.type(body);
    await page.keyboard.press('Enter');
    await bubbles(page, body).waitFor();
    expect(await bubbles(page, body).count()).toBe(1);
  });

  it('logged no console errors on any page', () => {
    expect(consoleErrors).toEqual([]);
  });
});
