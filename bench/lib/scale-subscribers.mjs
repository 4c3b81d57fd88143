// A share of bench/scale.ts's graphql-ws subscribers, in its own process (forked with IPC) so their CPU is
// counted apart from the load generator's. Each subscriber is its own client (its own socket through
// HAProxy) on `messageReceived`, and records the id of every message it gets. When its socket closes (an
// instance shutting down closes with 1001) it connects again through HAProxy, landing on another
// instance, and resumes with `after:` the cursor of the last message it got: the check at the end then
// shows whether anything was missed or received twice.
// Messages in: connect, probe, check, close. Messages out: connected, probed, checked, closed.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const QUERY = 'subscription Inbound($after: String) { messageReceived(after: $after) { id cursor body } }';
const uuidOf = (globalId) => {
  const decoded = Buffer.from(globalId, 'base64').toString('utf8');
  return decoded.slice(decoded.indexOf(':') + 1);
};

/** @type {{ ids: string[]; probes: Set<string>; cursor: string | null; client: any; reconnects: number; resumed: number; errors: string[]; connected: boolean }[]} */
const subscribers = [];
let settings = null;
let closing = false;
let connectFailures = 0;

function open(subscriber) {
  return new Promise((resolve) => {
    const client = createClient({
      url: settings.url,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${settings.apiToken}`, organizationId: settings.organizationId },
      lazy: false,
      retryAttempts: 0,
      // No ack within 10 s (an instance going away mid-handshake): try again rather than wait forever.
      connectionAckWaitTimeout: 10_000,
      // The connection ack comes after the server authenticated us; the subscription follows on this socket.
      on: { connected: () => ((subscriber.connected = true), resolve(true)) },
    });
    subscriber.client = client;
    let ended = false;
    const again = (why) => {
      if (ended) return;
      ended = true;
      subscriber.connected = false;
      if (closing) return resolve(false);
      if (subscriber.errors.length < 3) subscriber.errors.push(String(why).slice(0, 200));
      resolve(false);
      void client.dispose();
      subscriber.reconnects += 1;
      // graphql-ws's own client waits 1 s plus 300-3000 ms at random before its first retry: a thousand
      // sockets closed at once do not all come back (and replay) in the same moment.
      setTimeout(() => reopen(subscriber), 1000 + 300 + Math.random() * 2700);
    };
    client.subscribe(
      { query: QUERY, variables: { after: subscriber.cursor } },
      {
        next: ({ data, errors }) => {
          if (errors) return again(`errors: ${JSON.stringify(errors)}`);
          const message = data.messageReceived;
          subscriber.ids.push(uuidOf(message.id));
          subscriber.cursor = message.cursor;
          if (message.body.startsWith('probe-')) subscriber.probes.add(message.body);
        },
        error: (error) => again(error?.code ? `closed ${error.code} ${error.reason ?? ''}` : error),
        complete: () => again('completed'),
      },
    );
  });
}

async function reopen(subscriber) {
  if (closing) return;
  if (subscriber.cursor) subscriber.resumed += 1;
  const ok = await open(subscriber);
  if (!ok) connectFailures += 1;
}

process.on('message', async (message) => {
  if (message.type === 'connect') {
    settings = message;
    for (let i = 0; i < message.count; i += 250) {
      const batch = Array.from({ length: Math.min(250, message.count - i) }, () => {
        const subscriber = { ids: [], probes: new Set(), cursor: null, client: null, reconnects: 0, resumed: 0, errors: [], connected: false };
        subscribers.push(subscriber);
        return open(subscriber);
      });
      await Promise.all(batch);
    }
    process.send({ type: 'connected', connected: subscribers.filter((s) => s.connected).length });
  } else if (message.type === 'probe') {
    process.send({ type: 'probed', tag: message.tag, got: subscribers.filter((s) => s.probes.has(message.tag)).length });
  } else if (message.type === 'check') {
    // Every expected message exactly once per subscriber; any id at all twice is a duplicate.
    const expected = new Set(message.expected);
    let complete = 0;
    let missing = 0;
    let doubled = 0;
    let unexpected = 0;
    let received = 0;
    for (const subscriber of subscribers) {
      const seen = new Set();
      let ok = true;
      for (const id of subscriber.ids) {
        received += 1;
        if (seen.has(id)) {
          doubled += 1;
          ok = false;
        }
        seen.add(id);
        if (!expected.has(id) && !message.allowed.includes(id)) unexpected += 1;
      }
      for (const id of expected) {
        if (!seen.has(id)) {
          missing += 1;
          ok = false;
        }
      }
      if (ok) complete += 1;
    }
    process.send({
      type: 'checked',
      subscribers: subscribers.length,
      complete,
      missing,
      doubled,
      unexpected,
      received,
      reconnects: subscribers.reduce((sum, s) => sum + s.reconnects, 0),
      resumed: subscribers.reduce((sum, s) => sum + s.resumed, 0),
      connectFailures,
      errors: subscribers.flatMap((s) => s.errors).slice(0, 5),
    });
  } else if (message.type === 'close') {
    closing = true;
    await Promise.all(subscribers.map((s) => s.client?.dispose()));
    process.send({ type: 'closed' });
  }
});
