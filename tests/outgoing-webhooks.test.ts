import { sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRows } from '../src/db/rows.js';
import { changeConsent } from '../src/services/consent.js';
import { WebhookEventJson } from '../src/http/rest/webhook-schemas.js';
import { receiveInbound } from '../src/services/inbound.js';
import { WEBHOOK_EVENT_TYPES as EVENT_TYPES } from '../src/services/webhooks/endpoints.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { until } from './helpers/realtime.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';

// Outgoing webhooks end to end: real loopback receivers that verify every request with `standardwebhooks`,
// the real dispatcher, PGlite or PostgreSQL (DATABASE_URL).

const NUMBER = '+19195550100';
const CREATE = `mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename
    ... on Error { code message }
    ... on CreateWebhookEndpointPayload { secret endpoint { id url events enabled } }
  }
}`;
const DELIVERIES = `query { webhookEndpoints { id deliveries(first: 50) { nodes: edges { node { id eventType status attemptCount attempts { attempt httpStatus error response } } } } } }`;

let t: TestApp;
let org: TestOrg;
const receivers: WebhookReceiver[] = [];

async function receiver(): Promise<WebhookReceiver> {
  const r = await WebhookReceiver.start();
  receivers.push(r);
  return r;
}

async function endpoint(target: TestOrg, r: WebhookReceiver, events: string[], url = r.url) {
  const res = await t.graphql(CREATE, { input: { url, events } }, target);
  const created = res.body.data?.createWebhookEndpoint;
  expect(created?.__typename, JSON.stringify(res.body)).toBe('CreateWebhookEndpointPayload');
  r.secret = created.secret;
  return created as { secret: string; endpoint: { id: string } };
}

const inbound = (target: TestOrg, from: string, body: string) =>
  receiveInbound(t.deps, { organizationId: target.organizationId, from, body, provider: 'cli' });

beforeAll(async () => {
  t = await createTestApp({
    WEBHOOK_ALLOW_INSECURE: 'true',
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    WEBHOOK_RETRY_SCHEDULE: '100ms,200ms,300ms',
    WEBHOOK_POLL_MS: '20',
    SIMULATED_STATUS_DELAY_MS: '20',
  });
  t.deps.webhooks.start();
  org = await t.createOrg('Hooks', { credits: 100, phoneNumber: NUMBER });
});
afterAll(async () => {
  await t?.close();
  for (const r of receivers) await r.close();
});

describe('outgoing webhooks', () => {
  it('creates an endpoint with a whsec_ secret; every event type arrives signed, in the REST shapes', async () => {
    const r = await receiver();
    const created = await endpoint(org, r, ['MESSAGE_RECEIVED', 'MESSAGE_SENT', 'MESSAGE_STATUS_CHANGED', 'CONVERSATION_UPDATED', 'CONTACT_OPTED_OUT', 'CONTACT_OPTED_IN']);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/);
    expect(Buffer.from(created.secret.slice(6), 'base64').length).toBeGreaterThanOrEqual(24);

    const from = '+14155550101';
    await inbound(org, from, 'Hello there');
    await until(() => r.distinct('message.received').length === 1, 10_000, 'message.received');
    const received = r.distinct('message.received')[0]!;
    expect(received.verified).toBe(true);
    expect(received.data).toMatchObject({ direction: 'incoming', message: 'Hello there', status: null, phoneNumber: from, mediaUrls: null });
    expect(received.data.conversationId).toEqual(expect.any(String));
    expect(received.data.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(JSON.parse(received.body).timestamp).toMatch(/Z$/);

    const star = await t.graphql(`mutation { setConversationStarred(phoneNumber: "${from}", starred: true) { isStarred } }`, {}, org);
    expect(star.body.data?.setConversationStarred.isStarred).toBe(true);
    await until(() => r.distinct('conversation.updated').length === 1, 10_000, 'conversation.updated');
    expect(r.distinct('conversation.updated')[0]!.data).toMatchObject({ phoneNumber: from, isStarred: true, status: 'OPEN', assigneeId: null, unreadCount: 1 });

    const sent = await t.graphql(`mutation($input: SendReplyInput!) { sendReply(input: $input) { __typename } }`, { input: { phoneNumber: from, message: 'Hi back' } }, org);
    expect(sent.body.data?.sendReply.__typename, JSON.stringify(sent.body)).toBe('SendReplyPayload');
    await until(() => r.distinct('message.sent').length === 1, 10_000, 'message.sent');
    expect(r.distinct('message.sent')[0]!.data).toMatchObject({ direction: 'outgoing', message: 'Hi back', status: 'sent', phoneNumber: from });
    await until(() => r.distinct('message.status_changed').some((e) => e.data.providerStatus === 'delivered'), 10_000, 'delivered');
    expect(r.distinct('message.status_changed').at(-1)!.data).toMatchObject({ status: 'delivered', message: 'Hi back' });

    await inbound(org, from, 'STOP');
    await until(() => r.distinct('contact.opted_out').length === 1, 10_000, 'opted out');
    expect(r.distinct('contact.opted_out')[0]!.data).toMatchObject({ phoneNumber: from, isOptedIn: false, keyword: 'STOP', source: 'keyword' });
    await inbound(org, from, 'START');
    await until(() => r.distinct('contact.opted_in').length === 1, 10_000, 'opted in');
    // One conversation's events arrive in the order they happened.
    const order = r.distinct().map((e) => (e.type === 'message.received' ? `received:${e.data.message}` : e.type));
    expect(order.indexOf('received:STOP')).toBeLessThan(order.indexOf('contact.opted_out'));
    expect(order.indexOf('contact.opted_out')).toBeLessThan(order.indexOf('received:START'));
    expect(order.indexOf('received:START')).toBeLessThan(order.indexOf('contact.opted_in'));
    expect(r.received.every((e) => e.verified)).toBe(true);
    // Every body matches the published JSON Schema's zod source, and the schema is served.
    for (const e of r.received) {
      const parsed = WebhookEventJson.safeParse(JSON.parse(e.body));
      expect(parsed.success, `${e.body}\n${parsed.error?.message}`).toBe(true);
    }
    const schema = await fetch(`${t.url}/api/webhooks/schema.json`);
    expect(schema.status).toBe(200);
    const document = (await schema.json()) as { $defs: Record<string, unknown> };
    expect(Object.keys(document.$defs).sort()).toEqual([...EVENT_TYPES, 'webhook.test'].sort());
    await t.graphql(`mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename } }`, { id: created.endpoint.id }, org);
  });

  it('a change that rolls back sends nothing; an endpoint of another organization receives nothing', async () => {
    const other = await t.createOrg('Other');
    const mine = await receiver();
    const theirs = await receiver();
    const own = await endpoint(org, mine, ['CONTACT_OPTED_OUT', 'MESSAGE_RECEIVED']);
    await endpoint(other, theirs, ['CONTACT_OPTED_OUT', 'MESSAGE_RECEIVED']);
    const contact = await t.createContact(org, { phoneNumber: '+14155550150' });
    await expect(
      t.db.transaction(async (tx) => {
        await changeConsent(tx, org.organizationId, { contactId: contact.id }, { kind: 'opt_out', keyword: null, messageId: null, source: 'api' });
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    await inbound(org, '+14155550151', 'after the rollback');
    await until(() => mine.distinct('message.received').length === 1, 10_000, 'the committed event');
    await t.deps.webhooks.runNow();
    expect(mine.distinct('contact.opted_out')).toEqual([]);
    expect(theirs.received).toEqual([]);
    await t.graphql(`mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename } }`, { id: own.endpoint.id }, org);
  });

  it('retries with the same webhook-id; order per conversation holds under retries; other conversations are not held back', async () => {
    const r = await receiver();
    const a = '+14155550161';
    const b = '+14155550162';
    // Conversation A's first event fails twice, and until B1 (another conversation) has arrived.
    const firstOfA = () => r.received.find((e) => e.data.phoneNumber === a)?.id;
    r.answer = (request, count) => (request.id === firstOfA() && (count <= 2 || !r.received.some((e) => e.data.message === 'B1')) ? 500 : 200);
    await endpoint(org, r, ['MESSAGE_RECEIVED']);
    await Promise.all([inbound(org, a, 'A1'), inbound(org, a, 'A2'), inbound(org, b, 'B1'), inbound(org, a, 'A3')]);
    await until(() => r.distinct().length === 4 && r.received.filter((e) => e.id === firstOfA()).length === 3, 10_000, 'all delivered');
    await until(() => r.received.at(-1)!.id !== firstOfA(), 10_000, 'the rest of A');
    // The order they happened in: the order the conversation's messages were stored.
    const stored = await rawRows(
      t.db,
      sql`select m.body from messages m join conversations c on c.id = m.conversation_id
          where c.organization_id = ${org.organizationId} and c.phone_number = ${a} order by m.created_at, m.id`,
    );
    const expected = stored.map((row) => row.body as string);
    const attemptsOfFirst = r.received.filter((e) => e.id === firstOfA());
    expect(attemptsOfFirst.map((e) => e.data.message)).toEqual([expected[0], expected[0], expected[0]]);
    const ofA = r.received.filter((e) => e.data.phoneNumber === a).map((e) => e.data.message);
    // The later events of A waited for the first one's success; B1 did not.
    expect(ofA).toEqual([expected[0], expected[0], expected[0], expected[1], expected[2]]);
    const messages = r.received.map((e) => e.data.message);
    expect(messages.indexOf('B1')).toBeLessThan(r.received.lastIndexOf(attemptsOfFirst[2]!));
    expect(attemptsOfFirst.every((e) => e.verified)).toBe(true);

    const list = await t.graphql(DELIVERIES, {}, org);
    expect(list.body.errors).toBeUndefined();
    const endpoints = list.body.data.webhookEndpoints as any[];
    const nodes = endpoints.flatMap((e) => e.deliveries.nodes.map((edge: any) => edge.node)).filter((n: any) => n.id === attemptsOfFirst[0]!.id);
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ status: 'SUCCEEDED', attemptCount: 3 });
    expect(nodes[0].attempts.map((x: any) => x.httpStatus)).toEqual([500, 500, 200]);
    expect(nodes[0].attempts[0]).toMatchObject({ error: 'HTTP 500', response: 'nope' });
  });

  it('a dead endpoint next to a healthy one: the healthy one gets everything, the dead one ends FAILED after the schedule', async () => {
    // Prometheus counts the attempts by outcome (GET /metrics, no METRICS_TOKEN in this app).
    const metric = async (name: string) => {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const before = {
      succeeded: await metric('gateway_webhook_attempts_total{outcome="succeeded"}'),
      retry: await metric('gateway_webhook_attempts_total{outcome="retry"}'),
      failed: await metric('gateway_webhook_attempts_total{outcome="failed"}'),
    };
    const healthy = await receiver();
    const dead = await receiver();
    dead.answer = () => 503;
    await endpoint(org, healthy, ['MESSAGE_RECEIVED']);
    const deadEndpoint = await endpoint(org, dead, ['MESSAGE_RECEIVED']);
    for (let i = 0; i < 5; i += 1) await inbound(org, `+1415555017${i}`, `dead-or-alive ${i}`);
    await until(() => healthy.distinct().filter((e) => e.data.message.startsWith('dead-or-alive')).length === 5, 10_000, 'healthy deliveries');
    // 1 + 3 retries each.
    await until(() => dead.received.length === 20, 10_000, 'the dead endpoint tried 4 times each');
    const page = await t.graphql(
      `query { webhookEndpoints { id deliveries(status: [FAILED]) { edges { node { status attemptCount } } } } }`,
      {},
      org,
    );
    await until(async () => {
      const res = await t.graphql(`query { webhookEndpoints { id deliveries(status: [FAILED]) { edges { node { status attemptCount } } } } }`, {}, org);
      return res.body.data.webhookEndpoints.find((e: any) => e.id === deadEndpoint.endpoint.id).deliveries.edges.length === 5;
    }, 10_000, 'failed deliveries listed');
    expect(page.status).toBe(200);
    await until(async () => (await metric('gateway_webhook_attempts_total{outcome="failed"}')) - before.failed === 5, 10_000, 'failed attempts counted');
    // The healthy endpoint's 5, and those of earlier tests' endpoints still subscribed in this organization.
    expect((await metric('gateway_webhook_attempts_total{outcome="succeeded"}')) - before.succeeded).toBeGreaterThanOrEqual(5);
    expect((await metric('gateway_webhook_attempts_total{outcome="retry"}')) - before.retry).toBe(15);
    expect(await metric('gateway_webhook_attempt_duration_seconds_count')).toBeGreaterThanOrEqual(25);
    expect(await metric('gateway_webhook_deliveries_pending')).toBeGreaterThanOrEqual(0);
  });

  it('rotation: deliveries carry both signatures for 24 hours, each verifying with its secret', async () => {
    const r = await receiver();
    const created = await endpoint(org, r, ['MESSAGE_RECEIVED']);
    const rotated = await t.graphql(
      `mutation($id: ID!) { rotateWebhookSecret(id: $id) { __typename ... on RotateWebhookSecretPayload { secret endpoint { secretRotationEndsAt } } } }`,
      { id: created.endpoint.id },
      org,
    );
    const newSecret = rotated.body.data.rotateWebhookSecret.secret as string;
    expect(newSecret).not.toBe(created.secret);
    await inbound(org, '+14155550181', 'rotated');
    await until(() => r.received.some((e) => e.data.message === 'rotated'), 10_000, 'rotated delivery');
    const event = r.received.find((e) => e.data.message === 'rotated')!;
    expect(event.signature.split(' ')).toHaveLength(2);
    const headers = { 'webhook-id': event.id, 'webhook-timestamp': event.timestamp };
    for (const [secret, signature] of [
      [newSecret, event.signature.split(' ')[0]!],
      [created.secret, event.signature.split(' ')[1]!],
    ]) {
      expect(() => new Webhook(secret!).verify(event.body, { ...headers, 'webhook-signature': signature! })).not.toThrow();
    }
    expect(() => new Webhook(newSecret).verify(event.body, { ...headers, 'webhook-signature': event.signature.split(' ')[1]! })).toThrow();
  });

  it('sendTestWebhook and redeliverWebhookEvent send again, with the same webhook-id for a redelivery', async () => {
    const r = await receiver();
    const created = await endpoint(org, r, ['MESSAGE_RECEIVED']);
    const test = await t.graphql(`mutation($id: ID!) { sendTestWebhook(endpointId: $id) { __typename ... on SendTestWebhookPayload { delivery { id eventType } } } }`, { id: created.endpoint.id }, org);
    const deliveryId = test.body.data.sendTestWebhook.delivery.id;
    await until(() => r.received.some((e) => e.type === 'webhook.test'), 10_000, 'test event');
    expect(r.received[0]).toMatchObject({ id: deliveryId, verified: true, data: { endpointId: created.endpoint.id } });
    const again = await t.graphql(`mutation($id: ID!) { redeliverWebhookEvent(deliveryId: $id) { __typename } }`, { id: deliveryId }, org);
    expect(again.body.data.redeliverWebhookEvent.__typename).toBe('RedeliverWebhookEventPayload');
    await until(() => r.received.length === 2, 10_000, 'redelivery');
    expect(r.received[1]!.id).toBe(deliveryId);
    const missing = await t.graphql(`mutation { redeliverWebhookEvent(deliveryId: "00000000-0000-4000-8000-000000000000") { __typename ... on Error { code } } }`, {}, org);
    expect(missing.body.data.redeliverWebhookEvent).toEqual({ __typename: 'WebhookDeliveryNotFoundError', code: 'WEBHOOK_DELIVERY_NOT_FOUND' });
  });

  it('is for ADMIN and OWNER: an AGENT is FORBIDDEN and changes nothing', async () => {
    const agent = await t.addMember(org, { email: 'agent-hooks@example.com', role: 'agent' });
    const res = await t.graphql(CREATE, { input: { url: 'http://127.0.0.1:9/x', events: ['MESSAGE_RECEIVED'] } }, agent);
    expect(res.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const list = await t.graphql(`{ webhookEndpoints { id } }`, {}, agent);
    expect(list.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});

describe('webhook URL rules (SSRF) without WEBHOOK_ALLOW_INSECURE and WEBHOOK_ALLOW_PRIVATE_NETWORKS', () => {
  let strict: TestApp;
  let strictOrg: TestOrg;
  beforeAll(async () => {
    strict = await createTestApp();
    strictOrg = await strict.createOrg('Strict');
  });
  afterAll(async () => strict?.close());

  it.each([
    ['http://example.com/hooks', 'https'],
    ['https://localhost/hooks', '127.0.0.1'],
    ['https://127.0.0.1/hooks', '127.0.0.1'],
    ['https://10.1.2.3/hooks', 'not a public address'],
    ['https://169.254.169.254/latest/meta-data', 'not a public address'],
    ['https://[::1]/hooks', 'not a public address'],
    ['https://[fd00::1]/hooks', 'not a public address'],
    ['https://[::ffff:127.0.0.1]/hooks', 'not a public address'],
    ['not a url', 'absolute URL'],
  ])('refuses %s with INVALID_WEBHOOK_URL', async (url, reason) => {
    const res = await strict.graphql(CREATE, { input: { url, events: ['MESSAGE_RECEIVED'] } }, strictOrg);
    const error = res.body.errors?.[0];
    expect(error?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', errorCode: 'INVALID_WEBHOOK_URL' });
    expect(error?.message).toContain(reason);
    const list = await strict.graphql(`{ webhookEndpoints { id } }`, {}, strictOrg);
    expect(list.body.data.webhookEndpoints).toEqual([]);
  });

  it('checks the address again at each attempt: an endpoint saved while allowed is refused when it resolves to loopback', async () => {
    const r = await receiver();
    // Saved directly (as if its name had resolved to a public address then); now it resolves to 127.0.0.1.
    const { webhookEndpoints } = await import('../src/db/webhook-tables.js');
    await strict.db.insert(webhookEndpoints).values({
      organizationId: strictOrg.organizationId,
      id: '00000000-0000-7000-8000-000000000001',
      url: r.url.replace('http://127.0.0.1', 'https://localhost'),
      eventTypes: ['message.received'],
      secret: 'whsec_' + Buffer.alloc(32, 1).toString('base64'),
    });
    await strict.createOrg('unused');
    await receiveInbound(strict.deps, { organizationId: strictOrg.organizationId, from: '+14155550191', body: 'rebinding', provider: 'cli' });
    await strict.deps.webhooks.runNow();
    const res = await strict.graphql(`{ webhookEndpoints { deliveries { edges { node { status attempts { httpStatus error } } } } } }`, {}, strictOrg);
    expect(res.body.errors).toBeUndefined();
    const delivery = res.body.data.webhookEndpoints[0].deliveries.edges[0].node;
    expect(delivery.attempts[0]).toMatchObject({ httpStatus: null });
    expect(delivery.attempts[0].error).toContain('not a public address');
    expect(r.received).toEqual([]);
  });
});

describe('an endpoint failing every attempt for WEBHOOK_DISABLE_AFTER_MS', () => {
  let app: TestApp;
  let owner: TestOrg;
  beforeAll(async () => {
    app = await createTestApp({
      WEBHOOK_ALLOW_INSECURE: 'true',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      WEBHOOK_RETRY_SCHEDULE: '300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms',
      WEBHOOK_DISABLE_AFTER_MS: '1000',
      WEBHOOK_POLL_MS: '20',
    });
    app.deps.webhooks.start();
    owner = await app.createOrg('Disabled');
  });
  afterAll(async () => app?.close());

  it('is disabled with a reason; re-enabling it resumes delivery of what waited', async () => {
    const r = await receiver();
    r.answer = () => 500;
    const res = await app.graphql(CREATE, { input: { url: r.url, events: ['MESSAGE_RECEIVED'] } }, owner);
    r.secret = res.body.data.createWebhookEndpoint.secret;
    const id = res.body.data.createWebhookEndpoint.endpoint.id;
    await receiveInbound(app.deps, { organizationId: owner.organizationId, from: '+14155550199', body: 'waiting', provider: 'cli' });
    const state = async () => (await app.graphql(`{ webhookEndpoints { enabled disabledReason } }`, {}, owner)).body.data.webhookEndpoints[0];
    await until(async () => (await state()).enabled === false, 10_000, 'disabled');
    expect((await state()).disabledReason).toMatch(/Every delivery attempt failed/);
    const tried = r.received.length;
    expect(tried).toBeGreaterThanOrEqual(2);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await app.deps.webhooks.runNow();
    // Disabled: no more attempts.
    expect(r.received.length).toBe(tried);

    r.answer = () => 200;
    const enabled = await app.graphql(
      `mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: { enabled: true }) { __typename ... on UpdateWebhookEndpointPayload { endpoint { enabled disabledReason } } } }`,
      { id },
      owner,
    );
    expect(enabled.body.data.updateWebhookEndpoint.endpoint).toEqual({ enabled: true, disabledReason: null });
    await until(() => r.received.length === tried + 1, 10_000, 'delivered after re-enabling');
    expect(r.received.at(-1)).toMatchObject({ verified: true, id: r.received[0]!.id, data: { message: 'waiting' } });
  });
});
