// One share of Q6's subscribers, in its own thread (bench/lib/subscriptions.ts starts one per core): real
// subscribers are separate clients, and one thread receiving every copy of an event made the runner's own
// per-message work (~30 µs) the last subscriber's latency. Each subscriber is a graphql-ws client over
// `ws`. Times are absolute (timeOrigin + now) so the main thread can compare them with its send times.
// Messages in: { type: 'watch', tag } (report when every subscriber here got it), { type: 'times', tags }.
// Messages out: { type: 'connected', connected }, { type: 'done', tag }, { type: 'times', times }.
import { parentPort, workerData } from 'node:worker_threads';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const { port, apiToken, organizationId, subscribers, query } = workerData;
const now = () => performance.timeOrigin + performance.now();
/** Deliveries per tag, and the receive times of every delivery (kept per tag for the paced events). */
const received = new Map();
const times = new Map();
const watched = new Set();
let connected = 0;
const clients = [];

function deliver(tag) {
  const count = (received.get(tag) ?? 0) + 1;
  received.set(tag, count);
  let list = times.get(tag);
  if (!list) times.set(tag, (list = []));
  list.push(now());
  if (count >= connected && watched.delete(tag)) parentPort.postMessage({ type: 'done', tag });
}

parentPort.on('message', (message) => {
  if (message.type === 'watch') {
    if ((received.get(message.tag) ?? 0) >= connected) parentPort.postMessage({ type: 'done', tag: message.tag });
    else watched.add(message.tag);
  } else if (message.type === 'times') {
    parentPort.postMessage({ type: 'times', times: message.tags.map((tag) => times.get(tag) ?? []), received: message.tags.map((tag) => received.get(tag) ?? 0) });
  } else if (message.type === 'close') {
    Promise.all(clients.map((client) => client.dispose())).then(() => parentPort.postMessage({ type: 'closed' }));
  }
});

for (let i = 0; i < subscribers; i += 250) {
  await Promise.all(
    Array.from({ length: Math.min(250, subscribers - i) }, () => {
      const client = createClient({
        url: `ws://127.0.0.1:${port}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${apiToken}`, organizationId },
        lazy: false,
        retryAttempts: 0,
      });
      clients.push(client);
      return new Promise((resolve) => {
        client.on('connected', () => {
          connected += 1;
          resolve();
        });
        client.on('error', () => resolve());
        client.subscribe(
          { query },
          {
            next: ({ data }) => {
              const tag = data?.messageReceived.body;
              if (tag) deliver(tag);
            },
            error: () => {},
            complete: () => {},
          },
        );
      });
    }),
  );
}
parentPort.postMessage({ type: 'connected', connected });
