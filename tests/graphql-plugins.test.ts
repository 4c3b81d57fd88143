import { createYoga, type Plugin } from 'graphql-yoga';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphqlHandler } from '../src/http/graphql.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

// The fast path answers requests without Yoga's plugin chain, so every plugin Yoga runs must be declared
// with what the fast path does about it (src/http/graphql-plugins.ts). These tests fail when Yoga runs a
// plugin that is neither Yoga's own nor declared, and check what the shared guards and compile cache give.

let t: TestApp;
let acme: TestOrg;

// What Envelop runs, plugins added by plugins included (Yoga keeps it as `plugins` after building Envelop).
const pluginsOf = (yoga: object) => (yoga as unknown as { plugins: Plugin[] }).plugins;

/** Plugins a plugin adds for itself when Envelop starts it (graphql-armor adds one per protection). */
function addedBy(plugin: Plugin): Plugin[] {
  const added: Plugin[] = [];
  plugin.onPluginInit?.({
    plugins: [],
    addPlugin: (child: Plugin) => added.push(child, ...addedBy(child)),
    setSchema: () => {},
    registerContextErrorHandler: () => {},
  } as never);
  return added;
}

/** How many plugins `yoga` runs beyond Yoga's own and the declared ones (and those they add). */
function undeclaredPlugins(handler: GraphqlHandler, yoga: object = handler): number {
  const { options, plugins } = handler.construction;
  // Yoga's own plugins, for the same options: what a Yoga built with no plugins of ours runs.
  const own = pluginsOf(createYoga({ ...options, plugins: [] } as never)).length;
  const declared = new Set(plugins.flatMap(({ plugin }) => [plugin, ...addedBy(plugin)]));
  const running = pluginsOf(yoga);
  for (const plugin of declared) expect(running).toContain(plugin);
  return running.filter((plugin) => !declared.has(plugin)).length - own;
}

async function get(query: string, operationName: string) {
  const url = `${t.url}/graphql?${new URLSearchParams({ query, operationName })}`;
  const response = await fetch(url, {
    headers: { accept: 'application/json', authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': acme.organizationId },
  });
  return (await response.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
}

async function post(body: unknown) {
  const response = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': acme.organizationId },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as { data?: unknown; errors?: { extensions?: Record<string, unknown> }[] } };
}

beforeAll(async () => {
  t = await createTestApp({ GRAPHQL_MAX_COST: '2000' });
  acme = await t.createOrg('Acme');
  await t.createContact(acme, { phoneNumber: '+19195551234', firstName: 'Jane', lastName: 'Smith', isTextable: true });
  await t.addMessage(acme, { phoneNumber: '+19195551234', direction: 'incoming', body: 'hello' });
});

afterAll(async () => {
  await t?.close();
});

describe('the plugins Yoga runs', () => {
  it('are Yoga\'s own and the declared ones, each declared with what the fast path does about it', () => {
    const handler = t.app.graphql;
    expect(undeclaredPlugins(handler)).toBe(0);
    const parts = Object.fromEntries(handler.construction.plugins.map((declared) => [declared.name, declared.fastPath]));
    expect(parts).toMatchObject({
      'rate-limit': 'before-both',
      'operation-guards': 'runs-guards',
      'compiled-execution': 'execution',
      'fast-path': 'feeds-fast-path',
    });
  });

  it('an undeclared plugin added to Yoga is caught', () => {
    const handler = t.app.graphql;
    const { options } = handler.construction;
    const audit: Plugin = { onExecute() {} };
    const withAudit = createYoga({ ...options, plugins: [...options.plugins, audit] } as never);
    expect(undeclaredPlugins(handler, withAudit)).toBe(1);
  });
});

describe('one compile cache', () => {
  it('runs the operation asked for in a document with several, on Yoga\'s path and the fast path', async () => {
    const document = `query Org { organization { name } }
      query Threads { conversations(first: 1) { edges { node { phoneNumber } } } }`;
    // GET is Yoga's path: the second use of a document is compiled, and compiled per operation.
    for (const operationName of ['Org', 'Org', 'Threads', 'Threads', 'Org']) {
      const answer = await get(document, operationName);
      expect(answer.errors).toBeUndefined();
      expect(Object.keys(answer.data ?? {})).toEqual([operationName === 'Org' ? 'organization' : 'conversations']);
    }
    const served = t.app.graphql.fastPath.served;
    for (const operationName of ['Threads', 'Org', 'Threads', 'Org']) {
      const answer = await post({ query: document, operationName });
      expect(answer.body.errors).toBeUndefined();
      expect(Object.keys((answer.body.data ?? {}) as object)).toEqual([operationName === 'Org' ? 'organization' : 'conversations']);
    }
    expect(t.app.graphql.fastPath.served).toBeGreaterThan(served);
  });
});

describe('one list of operation guards', () => {
  it('refuses the same cost on both paths, and a cheaper page of the same document runs on the fast path', async () => {
    const query = `query Page($first: Int) { conversations(first: $first) { edges { node { phoneNumber
      messages(first: 20) { edges { node { id body direction status createdAt } } } } } } }`;
    const cheap = await post({ query, variables: { first: 1 } });
    expect(cheap.status).toBe(200);
    const served = t.app.graphql.fastPath.served;
    // 200 conversations x 20 messages: over GRAPHQL_MAX_COST, whether Yoga or the fast path sees it first.
    for (let i = 0; i < 2; i += 1) {
      const expensive = await post({ query, variables: { first: 200 } });
      expect(expensive.status).toBe(400);
      expect(expensive.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'cost' });
    }
    expect(t.app.graphql.fastPath.served).toBe(served);
    // The refusal was not cached as the document's answer: a cheap page still runs, on the fast path.
    expect((await post({ query, variables: { first: 1 } })).status).toBe(200);
    expect(t.app.graphql.fastPath.served).toBe(served + 1);
  });

  it('a cost it could not price (bad variables) is priced again on the next request, not waved through', async () => {
    const query = `query Priced($first: Int, $phone: String!) { conversation(phoneNumber: $phone) { phoneNumber }
      conversations(first: $first) { edges { node { messages(first: 20) { edges { node { id body } } } } } } }`;
    const bad = await post({ query, variables: { first: 200, phone: 5 } });
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
    const expensive = await post({ query, variables: { first: 200, phone: '+19195551234' } });
    expect(expensive.status).toBe(400);
    expect(expensive.body.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX' });
  });
});
