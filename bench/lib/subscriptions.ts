import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { percentile } from './percentile.js';
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

export async function measureSubscriptions(options: {
  port: number;
  pid: number;
  subscribers: number;
  target: SubscriptionTarget;
  publish: Publish;
  /** Paced events published first and not timed, as the HTTP scenarios warm up before they measure. */
  /** A full garbage collection in the server: memory is read after one, before and after connecting. */
  collectGarbage: () => Promise<void>;
  warmupEvents: number;
  pacedEvents: number;
  burstEvents: number;
  log: (line: string) => void;
}): Promise<SubscriptionResult> {
  const { port, pid, subscribers, target, publish } = options;
  // Subscribers are split over one worker thread per core (subscriber-worker.mjs): they are separate
  // clients, and one thread receiving every copy made the runner's own work per message the latency.
  const threads = Math.max(1, Math.min(os.availableParallelism(), subscribers));
  const workers: Worker[] = [];
  const waiting = new Map<string, { left: number; resolve: () => void }>();
  const now = () => performance.timeOrigin + performance.now();
  const sentAt = new Map<string, number>();

  // RSS after a full collection on both sides: otherwise the young generation's garbage (up to its 64 MB
  // semi-spaces) came and went between the two readings, and the difference ranged from -74 to +46 KiB.
  const settledRss = async () => {
    await options.collectGarbage();
    await new Promise((resolve) => setTimeout(resolve, 300));
    return rssBytes(pid);
  };
  const rssBefore = (await settledRss()) ?? 0;
  const connectStarted = performance.now();
  let connected = 0;
  try {
    const counts = await Promise.all(
      Array.from({ length: threads }, (_, index) => {
        const share = Math.floor(subscribers / threads) + (index < subscribers % threads ? 1 : 0);
        const worker = new Worker(new URL('./subscriber-worker.mjs', import.meta.url), {
          workerData: { port, apiToken: target.apiToken, organizationId: target.organizationId, subscribers: share, query: SUBSCRIPTION },
        });
        workers.push(worker);
        worker.on('message', (message: { type: string; tag?: string }) => {
          if (message.type !== 'done') return;
          const wait = waiting.get(message.tag!);
          if (wait && --wait.left === 0) wait.resolve();
        });
        return new Promise<number>((resolve, reject) => {
          const onConnected = (message: { type: string; connected?: number }) => {
            if (message.type !== 'connected') return;
            worker.off('message', onConnected);
            resolve(message.connected!);
          };
          worker.on('message', onConnected);
          worker.once('error', reject);
        });
      }),
    );
    connected = counts.reduce((sum, count) => sum + count, 0);
    const connectSeconds = (performance.now() - connectStarted) / 1000;

    /** Resolves once every worker's subscribers all got `tag` (or after the timeout). */
    const everyoneGot = (tag: string, timeoutMs: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(finish, timeoutMs);
        function finish() {
          clearTimeout(timer);
          waiting.delete(tag);
          resolve();
        }
        waiting.set(tag, { left: workers.length, resolve: finish });
        for (const worker of workers) worker.postMessage({ type: 'watch', tag });
      });
    const ask = <T>(worker: Worker, request: Record<string, unknown>, type: string) =>
      new Promise<T>((resolve) => {
        const onMessage = (message: { type: string }) => {
          if (message.type !== type) return;
          worker.off('message', onMessage);
          resolve(message as T);
        };
        worker.on('message', onMessage);
        worker.postMessage(request);
      });
    type Times = { times: number[][]; received: number[] };
    const deliveriesOf = async (tags: string[]) => {
      const answers = await Promise.all(workers.map((worker) => ask<Times>(worker, { type: 'times', tags }, 'times')));
      return tags.map((tag, index) => ({
        tag,
        times: answers.flatMap((answer) => answer.times[index]!),
        received: answers.reduce((sum, answer) => sum + answer.received[index]!, 0),
      }));
    };

    // Subscriptions register asynchronously after connecting: probe until every subscriber hears one.
    for (let probe = 0; probe < 5; probe += 1) {
      const tag = `probe-${Date.now()}-${probe}`;
      const got = everyoneGot(tag, 10_000);
      await publish(tag);
      await got;
      const [delivery] = await deliveriesOf([tag]);
      if (delivery!.received >= connected) break;
    }
    const rssAfter = (await settledRss()) ?? rssBefore;

    // The first events after a thousand connections arrive were consistently the slowest (the server's and
    // the runner's collectors and compilers still settling): 40-76 ms where later ones took 20-35.
    for (let event = 0; event < options.warmupEvents; event += 1) {
      const tag = `warmup-${Date.now()}-${event}`;
      const got = everyoneGot(tag, 10_000);
      await publish(tag);
      await got;
    }
    const pacedTags: string[] = [];
    for (let event = 0; event < options.pacedEvents; event += 1) {
      const tag = `paced-${Date.now()}-${event}`;
      pacedTags.push(tag);
      const got = everyoneGot(tag, 10_000);
      sentAt.set(tag, now());
      await publish(tag);
      await got;
    }
    const paced = (await deliveriesOf(pacedTags)).flatMap(({ tag, times }) => times.map((at) => at - sentAt.get(tag)!));

    const burstStarted = performance.now();
    const tags = Array.from({ length: options.burstEvents }, (_, event) => `burst-${Date.now()}-${event}`);
    const all = tags.length * connected;
    const finished = Promise.all(tags.map((tag) => everyoneGot(tag, 60_000)));
    await Promise.all(tags.map((tag) => publish(tag)));
    await finished;
    const burstSeconds = (performance.now() - burstStarted) / 1000;
    const delivered = (await deliveriesOf(tags)).reduce((sum, { received }) => sum + received, 0);

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
    await Promise.all(workers.map((worker) => closeWorker(worker)));
  }
}

/** Closes a worker's clients (their sockets), then the worker. */
async function closeWorker(worker: Worker): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    worker.on('message', (message: { type: string }) => {
      if (message.type === 'closed') {
        clearTimeout(timer);
        resolve();
      }
    });
    worker.postMessage({ type: 'close' });
  });
  await worker.terminate();
}
