import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { startFakeTwilio, type FakeTwilio } from './helpers/fake-twilio.js';
import { until } from './helpers/realtime.js';

// OpenTelemetry traces exported over OTLP/HTTP to a receiver this test runs: a span per HTTP request,
// GraphQL operation, SQL statement (its text, never its values) and Twilio call, in the caller's trace.

type OtlpValue = { stringValue?: string; intValue?: string | number };
type OtlpSpan = {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: OtlpValue }[];
};

const spans: OtlpSpan[] = [];
let receiver: Server;
let fake: FakeTwilio;
let t: TestApp;
let org: TestOrg;

const attribute = (span: OtlpSpan, key: string) => {
  const value = span.attributes.find((entry) => entry.key === key)?.value;
  return value?.stringValue ?? value?.intValue;
};

/** A fresh W3C trace context, as an upstream proxy or client would send. */
function traceparent() {
  const hex = (bytes: number) => Array.from({ length: bytes }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('');
  const traceId = hex(16);
  const parentId = hex(8);
  return { traceId, parentId, header: `00-${traceId}-${parentId}-01` };
}

async function post(query: string, variables: Record<string, unknown>, header: string) {
  const res = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId, traceparent: header },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: any; errors?: unknown[] };
}

/** The spans of one trace, once the exporter has sent them. */
async function traceOf(traceId: string, atLeast: (found: OtlpSpan[]) => boolean): Promise<OtlpSpan[]> {
  await until(
    async () => {
      await t.deps.tracing!.flush();
      return atLeast(spans.filter((span) => span.traceId === traceId));
    },
    10_000,
    'the spans to be exported',
  );
  return spans.filter((span) => span.traceId === traceId);
}

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.headers['content-type']?.includes('json')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
        for (const resource of body.resourceSpans) for (const scope of resource.scopeSpans) spans.push(...scope.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  fake = await startFakeTwilio();
  t = await createTestApp({
    ...fake.env(),
    PUBLIC_BASE_URL: 'https://gateway.example.com',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
  });
  org = await t.createOrg('Traced org', { credits: 100, phoneNumber: '+14155550100' });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});
beforeEach(() => fake.reset());

describe('tracing', () => {
  it('traces a send from the caller\'s traceparent through GraphQL, SQL and the Twilio call, which carries it on', async () => {
    const contact = await t.createContact(org, { phoneNumber: '+19195550123', isTextable: true });
    const { traceId, parentId, header } = traceparent();
    const secret = 'a body that must not reach any span';
    const sent = await post(
      `mutation Send($input: SendReplyInput!) { sendReply(input: $input) { __typename } }`,
      { input: { phoneNumber: contact.phoneNumber, message: secret } },
      header,
    );
    expect(sent.data?.sendReply.__typename).toBe('SendReplyPayload');
    const found = await traceOf(traceId, (all) => all.some((span) => span.name === 'POST /graphql'));

    const server = found.find((span) => span.name === 'POST /graphql')!;
    expect(server.parentSpanId).toBe(parentId);
    expect(server.kind).toBe(2); // SERVER
    expect(attribute(server, 'http.response.status_code')).toBe(200);
    const operation = found.find((span) => span.name === 'mutation Send')!;
    expect(operation).toBeDefined();
    expect(operation.parentSpanId).toBe(server.spanId);

    const statements = found.filter((span) => attribute(span, 'db.system.name') === 'postgresql');
    expect(statements.length).toBeGreaterThan(0);
    expect(statements.some((span) => /^(insert|update) /.test(span.name))).toBe(true);
    for (const span of statements) {
      expect(String(attribute(span, 'db.query.text'))).not.toContain(secret);
      expect(JSON.stringify(span.attributes)).not.toContain(contact.phoneNumber);
    }

    const call = found.find((span) => span.name === 'twilio messages.create')!;
    expect(call).toBeDefined();
    expect(call.kind).toBe(3); // CLIENT
    // Twilio got the trace context of that call.
    const request = fake.requests.find((entry) => entry.method === 'POST' && entry.path.endsWith('/Messages.json'))!;
    expect(request.traceparent).toMatch(new RegExp(`^00-${traceId}-${call.spanId}-01$`));
  });

  it('nests the SQL of a fast-path query under its GraphQL operation', async () => {
    const inbox = `query TracedInbox { conversations(first: 5) { edges { node { phoneNumber } } } }`;
    await post(inbox, {}, traceparent().header); // Yoga accepts the document first
    const served = t.app.graphql.fastPath.served;
    const { traceId, header } = traceparent();
    expect((await post(inbox, {}, header)).errors).toBeUndefined();
    expect(t.app.graphql.fastPath.served).toBe(served + 1);
    const found = await traceOf(traceId, (all) => all.some((span) => span.name === 'POST /graphql'));
    const operation = found.find((span) => span.name === 'query TracedInbox')!;
    expect(operation.parentSpanId).toBe(found.find((span) => span.name === 'POST /graphql')!.spanId);
    const statements = found.filter((span) => attribute(span, 'db.system.name') === 'postgresql');
    expect(statements.length).toBeGreaterThan(0);
    for (const span of statements) expect(span.parentSpanId).toBe(operation.spanId);
  });

  it('starts a new trace for a request without traceparent', async () => {
    const before = new Set(spans.map((span) => span.traceId));
    const res = await fetch(`${t.url}/health/live`);
    expect(res.status).toBe(200);
    await until(
      async () => {
        await t.deps.tracing!.flush();
        return spans.some((span) => span.name === 'GET /health/live' && !before.has(span.traceId));
      },
      10_000,
      'the span of /health/live',
    );
    const span = spans.find((entry) => entry.name === 'GET /health/live' && !before.has(entry.traceId))!;
    expect(span.parentSpanId ?? '').toBe('');
  });
});
