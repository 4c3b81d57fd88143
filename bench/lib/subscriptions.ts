import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { rssBytes } from './process-stats.js';

// Q6: N graphql-ws subscribers of `messageReceived` in one organization, fed by signed inbound webhooks.
// Publish-to-receive latency is from the moment the webhook request is sent to the moment a subscriber
// gets the message (so it includes ingest and the commit); memory per subscriber is the server's RSS
// growth while the subscribers connect, divided by their number.

export type SubscriptionTarget = { organizationId: string; apiToken: string; sendingNumber: string; contactPhone: string };

export type SubscriptionResult = {
  subscribers: number;
  connected: number;
  connectSeconds: number;
  rssPerSubscriberKiB: number;
  /** Paced publishing: one event at a time, the next after every subscriber got the previous (or a timeout). */
  pacedEvents: number;
  latencyP50: number;
  latencyP99: number;
  /** A burst of events published together: deliveries per second until the last one arrived. */
  deliveredPerSecond: number;
  delivered: number;
  expected: number;
};

type Publish = (body: string) => Promise<void>;

const SUBSCRIPTION = 'subscription { messageReceived { id body } }';
const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

export async function measureSubscriptions(options: {
  port: number;
  pid: number;
  subscribers: number;
  target: SubscriptionTarget;
  publish: Publish;
  /** Paced events published first and not timed, as the HTTP scenarios warm up before they measure. */
  warmupEvents: number;
  pacedEvents: number;
  burstEvents: number;
  log: (line: string) => void;
}): Promise<SubscriptionResult> {
  const { port, pid, subscribers, target, publish } = options;
  const clients: Client[] = [];
  const disposers: (() => void)[] = [];
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const received = new Map<string, number>();
  let onDelivery: (() => void) | null = null;

  const rssBefore = rssBytes(pid) ?? 0;
  const connectStarted = performance.now();
  let connected = 0;
  try {
    for (let i = 0; i < subscribers; i += 250) {
      const batch = Array.from({ length: Math.min(250, subscribers - i) }, () => {
        const client = createClient({
          url: `ws://127.0.0.1:${port}/graphql`,
          webSocketImpl: WebSocket,
          connectionParams: { authorization: `Bearer ${target.apiToken}`, organizationId: target.organizationId },
          lazy: false,
          retryAttempts: 0,
        });
        clients.push(client);
        return new Promise<void>((resolve) => {
          const stopConnected = client.on('connected', () => {
            connected += 1;
            resolve();
          });
          const stopError = client.on('error', () => resolve());
          disposers.push(stopConnected, stopError);
          disposers.push(
            client.subscribe<{ messageReceived: { id: string; body: string } }>(
              { query: SUBSCRIPTION },
              {
                next: ({ data }) => {
                  const tag = data?.messageReceived.body;
                  if (!tag) return;
                  const sent = sentAt.get(tag);
                  if (sent !== undefined) latencies.push(performance.now() - sent);
                  received.set(tag, (received.get(tag) ?? 0) + 1);
                  onDelivery?.();
                },
                error: () => {},
                complete: () => {},
              },
            ),
          );
        });
      });
      await Promise.all(batch);
    }
    const connectSeconds = (performance.now() - connectStarted) / 1000;

    // Subscriptions register asynchronously after connecting: probe until every subscriber hears one.
    const waitFor = (tag: string, count: number, timeoutMs: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done() {
          clearTimeout(timer);
          onDelivery = null;
          resolve();
        }
        onDelivery = () => {
          if ((received.get(tag) ?? 0) >= count) done();
        };
        onDelivery();
      });
    for (let probe = 0; probe < 5; probe += 1) {
      const tag = `probe-${Date.now()}-${probe}`;
      await publish(tag);
      await waitFor(tag, connected, 10_000);
      if ((received.get(tag) ?? 0) >= connected) break;
    }
    const rssAfter = rssBytes(pid) ?? rssBefore;

    // The first events after a thousand connections arrive were consistently the slowest (the server's and
    // the runner's collectors and compilers still settling): 40-76 ms where later ones took 20-35.
    for (let event = 0; event < options.warmupEvents; event += 1) {
      const tag = `warmup-${Date.now()}-${event}`;
      await publish(tag);
      await waitFor(tag, connected, 10_000);
    }
    latencies.length = 0;
    for (let event = 0; event < options.pacedEvents; event += 1) {
      const tag = `paced-${Date.now()}-${event}`;
      sentAt.set(tag, performance.now());
      await publish(tag);
      await waitFor(tag, connected, 10_000);
    }
    const paced = [...latencies];

    const burstStarted = performance.now();
    const tags = Array.from({ length: options.burstEvents }, (_, event) => `burst-${Date.now()}-${event}`);
    const all = tags.length * connected;
    const count = () => tags.reduce((sum, tag) => sum + (received.get(tag) ?? 0), 0);
    const finished = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        onDelivery = null;
        resolve();
      }, 60_000);
      onDelivery = () => {
        if (count() >= all) {
          clearTimeout(timer);
          onDelivery = null;
          resolve();
        }
      };
    });
    await Promise.all(
      tags.map((tag) => {
        sentAt.set(tag, performance.now());
        return publish(tag);
      }),
    );
    await finished;
    const delivered = count();
    const burstSeconds = (performance.now() - burstStarted) / 1000;

    return {
      subscribers,
      connected,
      connectSeconds,
      rssPerSubscriberKiB: (rssAfter - rssBefore) / 1024 / Math.max(1, connected),
      pacedEvents: options.pacedEvents,
      latencyP50: percentile(paced, 50),
      latencyP99: percentile(paced, 99),
      deliveredPerSecond: delivered / burstSeconds,
      delivered,
      expected: all,
    };
  } finally {
    for (const dispose of disposers) dispose();
    await Promise.all(clients.map((client) => client.dispose()));
  }
}
