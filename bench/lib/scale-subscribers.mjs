// A share of bench/scale.ts's graphql-ws subscribers, in its own process (forked with IPC) so their CPU is
// counted apart from the load generator's. Each subscriber is its own client (its own socket through
// HAProxy) on `messageReceived`, and records the id of every message it gets. When its socket closes (an
// instance shutting down closes with 1001) it connects again through HAProxy, landing on another
// instance, and resumes with `after:` the cursor of the last message it got: the check at the end then
// shows whether anything was missed or received twice.
// Messages in: connect, probe, check, close. Messages out: connected, probed, checked, closed.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

/** A WebSocket that remembers which instance HAProxy sent it to (X-Served-By on the 101 answer). */
class TracedWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.servedBy = '?';
    this.on('upgrade', (response) => (this.servedBy = response.headers['x-served-by'] ?? '?'));
  }
}

const QUERY = 'subscription Inbound($after: String) { messageReceived(after: $after) { id cursor body } }';
const uuidOf = (globalId) => {
  const decoded = Buffer.from(globalId, 'base64').toString('utf8');
  return decoded.slice(decoded.indexOf(':') + 1);
};

/**
 * `history`: what happened to each connection (when, the instance, after which message it resumed, how many
 * messages it brought, how it ended), reported for a subscriber that missed something.
 * @type {{ ids: string[]; probes: Set<string>; cursor: string | null; client: any; reconnects: number; resumed: number; errors: string[]; connected: boolean; history: any[] }[]}
 */
const subscribers = [];
let settings = null;
let closing = false;
let connectFailures = 0;

const started = Date.now();
const since = () => Date.now() - started;

function open(subscriber) {
  const entry = { opened: since(), after: subscriber.cursor ? subscriber.ids.length : null, servedBy: '?', received: 0, ended: null, why: null };
  subscriber.history.push(entry);
  return new Promise((resolve) => {
    const client = createClient({
      url: settings.url,
      webSocketImpl: TracedWebSocket,
      connectionParams: { authorization: `Bearer ${settings.apiToken}`, organizationId: settings.organizationId },
      lazy: false,
      retryAttempts: 0,
      // No ack within 10 s (an instance going away mid-handshake): try again rather than wait forever.
      connectionAckWaitTimeout: 10_000,
      // The subscription's own sink gets the same close (and handles it); graphql-ws would also print it.
      onNonLazyError: () => {},
      // The connection ack comes after the server authenticated us; the subscription follows on this socket.
      on: {
        opened: (socket) => (entry.servedBy = socket.servedBy),
        // acks > 1 would be graphql-ws reconnecting by itself (it does on a close with 1000), resubscribing as before.
        connected: (socket) => ((entry.acks = (entry.acks ?? 0) + 1), (entry.servedBy = socket.servedBy), (subscriber.connected = true), resolve(true)),
        closed: (event) => (entry.closes ??= []).push(event?.code),
      },
    });
    subscriber.client = client;
    let ended = false;
    const again = (why) => {
      if (ended) return;
      ended = true;
      entry.ended = since();
      entry.why = String(why).slice(0, 120);
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
          entry.received += 1;
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

/** [0,1,2,5,6] -> "0-2,5-6" */
function ranges(positions) {
  const parts = [];
  for (let i = 0; i < positions.length; ) {
    let j = i;
    while (j + 1 < positions.length && positions[j + 1] === positions[j] + 1) j += 1;
    parts.push(i === j ? String(positions[i]) : `${positions[i]}-${positions[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

process.on('message', async (message) => {
  if (message.type === 'connect') {
    settings = message;
    for (let i = 0; i < message.count; i += 250) {
      const batch = Array.from({ length: Math.min(250, message.count - i) }, () => {
        const subscriber = { ids: [], probes: new Set(), cursor: null, client: null, reconnects: 0, resumed: 0, errors: [], connected: false, history: [] };
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
    const incomplete = [];
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
      const missed = [];
      message.expected.forEach((id, position) => {
        if (!seen.has(id)) missed.push(position);
      });
      missing += missed.length;
      if (missed.length > 0) ok = false;
      if (ok) complete += 1;
      // Which messages (positions in commit order) and what its connections did, for the first few.
      else if (incomplete.length < 5) {
        incomplete.push({ missed: ranges(missed), received: subscriber.ids.length, history: subscriber.history });
      }
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
      incomplete,
    });
  } else if (message.type === 'close') {
    closing = true;
    await Promise.all(subscribers.map((s) => s.client?.dispose()));
    process.send({ type: 'closed' });
  }
});
