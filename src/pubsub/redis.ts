import { Redis } from 'ioredis';
import type { Logger } from 'pino';

// The Redis connections of one instance (REDIS_URL): `commands` for rate limits and PUBLISH, `subscriber`
// for SUBSCRIBE (a subscribed connection takes no other commands). Commands fail at once while Redis is
// away (no offline queue, a short timeout), so a request never waits on Redis: rate limits fall back to
// this instance's memory and events to the subscribers' periodic re-read. Both reconnect by themselves.

export type RedisConnections = {
  commands: Redis;
  subscriber: Redis;
  /** Subscribes to a channel (as Database.listen does); resolves to the function that unsubscribes. */
  listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
};

const COMMAND_TIMEOUT_MS = 1_000;

export function connectRedis(url: string, logger: Logger): RedisConnections {
  const options = {
    enableOfflineQueue: false,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    // Reconnect quickly at first, then every 2 s at most, forever.
    retryStrategy: (times: number) => Math.min(50 * 2 ** times, 2_000),
    connectionName: 'conversations-gateway',
  };
  const commands = new Redis(url, options);
  // The subscriber queues its SUBSCRIBE until connected, and subscribes again after each reconnect.
  const subscriber = new Redis(url, { ...options, enableOfflineQueue: true, commandTimeout: undefined, maxRetriesPerRequest: null });
  let down = false;
  const wentDown = (error?: Error) => {
    if (down) return;
    down = true;
    logger.warn(
      { err: error },
      'Redis is unavailable: rate limits fall back to per-instance memory, events between instances to the periodic database re-read',
    );
  };
  commands.on('error', (error: Error) => wentDown(error));
  commands.on('close', () => wentDown());
  subscriber.on('error', () => {}); // reported through `commands`, which sees the same server
  commands.on('ready', () => {
    if (!down) return;
    down = false;
    logger.info('Redis is back: rate limits and events are shared between instances again');
  });
  return {
    commands,
    subscriber,
    async listen(channel, onMessage) {
      const handler = (from: string, payload: string) => {
        if (from === channel) onMessage(payload);
      };
      subscriber.on('message', handler);
      // With Redis away the SUBSCRIBE waits in the queue and goes out on reconnect: do not hold the start for it.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        subscriber.subscribe(channel),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 5_000);
        }),
      ]).finally(() => clearTimeout(timer));
      return async () => {
        subscriber.off('message', handler);
        await subscriber.unsubscribe(channel).catch(() => {});
      };
    },
    async close() {
      await Promise.all([commands.quit().catch(() => commands.disconnect()), subscriber.quit().catch(() => subscriber.disconnect())]);
    },
  };
}
