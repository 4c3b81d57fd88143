import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { nextFrame, nextHead } from '../src/http/graphql-ws.js';
import { receiveInbound } from '../src/services/inbound.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { until } from './helpers/realtime.js';

// Shared subscription results are written to each member's connection as ready-made frames
// (src/http/graphql-ws.ts nextFrame), next to the frames ws itself writes on the same connection. They
// must be the bytes ws would write, and no connection may negotiate an extension that would change them.

type FrameOptions = { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean };
// ws's framing code; not in @types/ws, but exported by ws itself.
const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };

const wsFrame = (message: Buffer) => Buffer.concat(Sender.frame(message, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: false }));

describe('nextFrame', () => {
  const head = nextHead('3f2c9a4e-0d6b-4c61-9a57-1b0f0c3e7d21');
  // Around each length encoding of RFC 6455 §5.2 (7-bit, 16-bit, 64-bit), counting head and closing brace.
  const overhead = head.length + 1;
  const lengths = [overhead + 2, 125, 126, 127, 65_535, 65_536, 200_000].map((total) => total - overhead);

  it.each(lengths)('is the frame ws writes for the same message (payload of %i bytes)', (size) => {
    const payload = Buffer.from(JSON.stringify('x'.repeat(size - 2)));
    const message = Buffer.concat([head, payload, Buffer.from('}')]);
    expect(nextFrame(head, payload).equals(wsFrame(message))).toBe(true);
  });
});

describe('a shared subscription over a real connection', () => {
  const NUMBER = '+15005550006';
  let t: TestApp;
  let acme: TestOrg;

  beforeAll(async () => {
    t = await createTestApp();
    acme = await t.createOrg('Acme', { phoneNumber: NUMBER });
  });
  afterAll(() => t.close());

  /** A graphql-transport-ws client on ws, offering permessage-deflate as ws clients (and browsers) do. */
  async function member(id: string) {
    const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { perMessageDeflate: true });
    const received: unknown[] = [];
    const closes: number[] = [];
    socket.on('message', (data) => received.push(JSON.parse(String(data))));
    socket.on('close', (code) => closes.push(code));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${acme.apiToken}`, organizationId: acme.organizationId } }));
    await until(() => received.some((message) => (message as { type: string }).type === 'connection_ack'), 10_000, 'connection_ack');
    socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query: 'subscription { messageReceived { body } }' } }));
    return { socket, received, closes };
  }

  it('negotiates no extension, and every member reads the shared frames as ws frames of graphql-ws messages', async () => {
    const first = await member('first');
    const second = await member('second');
    expect(first.socket.extensions).toBe('');
    expect(second.socket.extensions).toBe('');
    // Two members of one group: the group's stream is uncounted, each member counts once.
    await until(() => t.deps.events.subscriberCount('messageReceived', acme.organizationId) === 2, 10_000, 'both members');

    const long = 'a long message '.repeat(20); // a 16-bit frame length
    await receiveInbound(t.deps, { to: NUMBER, from: '+19195550100', body: 'hi', provider: 'twilio', providerMessageId: 'SMframes00000000000000000000000001' });
    await receiveInbound(t.deps, { to: NUMBER, from: '+19195550100', body: long, provider: 'twilio', providerMessageId: 'SMframes00000000000000000000000002' });
    for (const [id, { received }] of [['first', first], ['second', second]] as const) {
      await until(() => received.length >= 3, 10_000, `two results for ${id}`);
      expect(received.slice(1)).toEqual([
        { id, type: 'next', payload: { data: { messageReceived: { body: 'hi' } } } },
        { id, type: 'next', payload: { data: { messageReceived: { body: long } } } },
      ]);
    }
    first.socket.close();
    second.socket.close();
    await until(() => first.closes.length + second.closes.length === 2, 10_000, 'both to close');
    expect([...first.closes, ...second.closes]).toEqual([1005, 1005]);
  });
});
