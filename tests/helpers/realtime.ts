import { createClient, type Client } from 'graphql-ws';
import twilio from 'twilio';
import WebSocket from 'ws';
import type { TestOrg } from './app.js';

// Real clients for the realtime surface: Twilio-signed webhook posts, the graphql-ws client over a real
// WebSocket, and Server-Sent Events over fetch.

export const TEST_AUTH_TOKEN = 'twilio-test-auth-token-0123456789';
export const TEST_PUBLIC_BASE_URL = 'https://gateway.example.com';

export type Form = Record<string, string | string[]>;

function encodeForm(params: Form): string {
  const form = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) for (const v of [value].flat()) form.append(key, v);
  return form.toString();
}

/**
 * Posts a webhook to the app at `baseUrl` as Twilio would, signed with the SDK over the public URL
 * (`publicBaseUrl` + path + query). `signature` overrides the header; `body` overrides the posted form.
 */
export async function postTwilio(
  baseUrl: string,
  pathAndQuery: string,
  params: Form,
  options: { authToken?: string; publicBaseUrl?: string; signature?: string | null; body?: string } = {},
) {
  const signature =
    options.signature === undefined
      ? twilio.getExpectedTwilioSignature(options.authToken ?? TEST_AUTH_TOKEN, (options.publicBaseUrl ?? TEST_PUBLIC_BASE_URL) + pathAndQuery, params)
      : options.signature;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (signature !== null) headers['x-twilio-signature'] = signature;
  const response = await fetch(baseUrl + pathAndQuery, { method: 'POST', headers, body: options.body ?? encodeForm(params) });
  const text = await response.text();
  return { status: response.status, text, contentType: response.headers.get('content-type') };
}

let sid = 0;
/** A fresh Twilio-looking MessageSid. */
export const nextSid = (prefix = 'SM') => `${prefix}${Date.now().toString(16)}${(sid++).toString(16).padStart(8, '0')}`.padEnd(34, '0');

/** An inbound SMS webhook form. */
export function inboundForm(to: string, from: string, body: string, extra: Form = {}): Form {
  return { MessageSid: nextSid(), AccountSid: 'AC00000000000000000000000000000000', From: from, To: to, Body: body, NumMedia: '0', ...extra };
}

export const postInbound = (baseUrl: string, to: string, from: string, body: string, extra: Form = {}) =>
  postTwilio(baseUrl, '/webhooks/twilio/messages', inboundForm(to, from, body, extra));

export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Results of one subscription, collected as they arrive. */
export class Collector<T = any> {
  readonly data: T[] = [];
  readonly errors: unknown[] = [];
  completed = false;

  push(result: { data?: unknown; errors?: unknown }) {
    if (result.errors) this.errors.push(...(result.errors as unknown[]));
    if (result.data) this.data.push(result.data as T);
  }

  async waitFor(count: number, timeoutMs = 10_000): Promise<T[]> {
    await until(() => this.data.length >= count || this.errors.length > 0, timeoutMs, `${count} subscription results (have ${this.data.length})`);
    if (this.errors.length > 0) throw new Error(`subscription errors: ${JSON.stringify(this.errors)}`);
    return this.data.slice(0, count);
  }

  async waitForError(timeoutMs = 10_000) {
    await until(() => this.errors.length > 0, timeoutMs, 'a subscription error');
    return this.errors[0] as { message: string; extensions?: Record<string, any> };
  }
}

export type WsConnection = { client: Client; closes: Array<{ code: number; reason: string }>; messages: string[] };

/** A graphql-ws client authenticated in connection_init, as a browser dashboard would be. */
export function connectWs(
  baseUrl: string,
  connectionParams: Record<string, unknown> | TestOrg,
  options: { retryAttempts?: number; retryWaitMs?: number } = {},
): WsConnection {
  const params =
    'apiToken' in connectionParams
      ? { authorization: `Bearer ${connectionParams.apiToken}`, organizationId: connectionParams.organizationId }
      : connectionParams;
  const closes: WsConnection['closes'] = [];
  const messages: string[] = [];
  const client = createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: params,
    retryAttempts: options.retryAttempts ?? 0,
    retryWait: async () => new Promise((resolve) => setTimeout(resolve, options.retryWaitMs ?? 100)),
    // Also retry when the connection itself fails (server restarting), not only on close codes.
    shouldRetry: () => true,
    lazy: true,
    on: {
      closed: (event) => closes.push({ code: (event as { code: number }).code, reason: String((event as { reason: unknown }).reason) }),
      message: (message) => messages.push(message.type),
    },
  });
  return { client, closes, messages };
}

export function subscribeWs<T = any>(
  connection: WsConnection,
  query: string,
  variables: Record<string, unknown> = {},
  onNext?: (data: T) => void,
) {
  const collector = new Collector<T>();
  const unsubscribe = connection.client.subscribe(
    { query, variables },
    {
      next: (result) => {
        collector.push(result);
        if (result.data) onNext?.(result.data as T);
      },
      // A close event (a failed connection) is not JSON-friendly: keep its code and reason.
      error: (error) => collector.errors.push(error instanceof Error || !('code' in (error as object)) ? error : { code: (error as { code: number }).code, reason: String((error as { reason?: unknown }).reason) }),
      complete: () => (collector.completed = true),
    },
  );
  return Object.assign(collector, { unsubscribe });
}

/** A subscription over Server-Sent Events (Yoga's built-in transport), with the same headers as HTTP. */
export async function subscribeSse<T = any>(baseUrl: string, org: TestOrg, query: string, variables: Record<string, unknown> = {}) {
  const collector = new Collector<T>();
  const controller = new AbortController();
  const url = `${baseUrl}/graphql?query=${encodeURIComponent(query)}&variables=${encodeURIComponent(JSON.stringify(variables))}`;
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${org.apiToken}`, 'x-organization-id': org.organizationId },
    signal: controller.signal,
  });
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (event === 'complete') collector.completed = true;
          else if (data) collector.push(JSON.parse(data));
        }
      }
    } catch {
      // aborted by close()
    }
    collector.completed = true;
  })();
  return Object.assign(collector, {
    status: response.status,
    contentType: response.headers.get('content-type'),
    async close() {
      controller.abort();
      await reading;
    },
  });
}
