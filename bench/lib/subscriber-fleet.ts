import { fork, type ChildProcess } from 'node:child_process';

// bench/scale.ts's subscribers: `processes` forked children (scale-subscribers.mjs), each holding its share
// of graphql-ws clients through HAProxy. Their CPU is the subscribers' (apart from the load generator's).

export type SubscriberCheck = {
  subscribers: number;
  /** Subscribers that got every expected message exactly once. */
  complete: number;
  /** Expected messages a subscriber did not get, summed over subscribers. */
  missing: number;
  /** Messages a subscriber got more than once, summed over subscribers. */
  doubled: number;
  /** Messages received that the phase did not send (neither load nor probe). */
  unexpected: number;
  received: number;
  reconnects: number;
  resumed: number;
  connectFailures: number;
  errors: string[];
  /** The first few subscribers that missed something: which messages (positions in commit order) and their connections' history. */
  incomplete: unknown[];
};

export type SubscriberFleet = {
  pids(): number[];
  connected: number;
  /** How many subscribers received the message whose body is `tag`. */
  probe(tag: string): Promise<number>;
  check(expected: string[], allowed: string[]): Promise<SubscriberCheck>;
  close(): Promise<void>;
};

function ask<T>(child: ChildProcess, message: Record<string, unknown>, replyType: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`subscriber process did not answer ${String(message.type)}`)), timeoutMs);
    const onMessage = (reply: { type?: string }) => {
      if (reply?.type !== replyType) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(reply as T);
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

export async function connectSubscribers(options: {
  url: string;
  apiToken: string;
  organizationId: string;
  subscribers: number;
  processes: number;
}): Promise<SubscriberFleet> {
  const children = Array.from({ length: options.processes }, () =>
    fork(new URL('./scale-subscribers.mjs', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  const answers = await Promise.all(
    children.map((child, index) => {
      const count = Math.floor(options.subscribers / children.length) + (index < options.subscribers % children.length ? 1 : 0);
      return ask<{ connected: number }>(child, { type: 'connect', url: options.url, apiToken: options.apiToken, organizationId: options.organizationId, count }, 'connected');
    }),
  );
  return {
    pids: () => children.map((child) => child.pid!),
    connected: answers.reduce((sum, answer) => sum + answer.connected, 0),
    async probe(tag) {
      const replies = await Promise.all(children.map((child) => ask<{ got: number }>(child, { type: 'probe', tag }, 'probed')));
      return replies.reduce((sum, reply) => sum + reply.got, 0);
    },
    async check(expected, allowed) {
      const replies = await Promise.all(children.map((child) => ask<SubscriberCheck>(child, { type: 'check', expected, allowed }, 'checked')));
      const sum = (key: keyof SubscriberCheck) => replies.reduce((total, reply) => total + (reply[key] as number), 0);
      return {
        subscribers: sum('subscribers'),
        complete: sum('complete'),
        missing: sum('missing'),
        doubled: sum('doubled'),
        unexpected: sum('unexpected'),
        received: sum('received'),
        reconnects: sum('reconnects'),
        resumed: sum('resumed'),
        connectFailures: sum('connectFailures'),
        errors: replies.flatMap((reply) => reply.errors).slice(0, 5),
        incomplete: replies.flatMap((reply) => reply.incomplete).slice(0, 5),
      };
    },
    async close() {
      await Promise.all(children.map((child) => ask(child, { type: 'close' }, 'closed', 20_000).catch(() => {})));
      for (const child of children) child.kill('SIGKILL');
    },
  };
}
