import { getEventListeners, setMaxListeners } from 'node:events';
// Yoga's own pub/sub package, not graphql-yoga itself: the CLI opens deps too, and yoga costs ~0.5 s to load.
import { createPubSub, type PubSub, type PubSubEventTarget } from '@graphql-yoga/subscription';
import type { Logger } from 'pino';
import type { Database } from '../db/client.js';
import type { Metrics } from '../observability/metrics.js';
import { PostgresEventTarget } from './postgres-event-target.js';
import { RedisEventTarget } from './redis-event-target.js';
import type { RedisConnections } from './redis.js';

// Typed topics. Payloads carry ids only: a subscriber loads rows through the data layer with its own
// organization scope, and the same payloads can cross instances (PostgreSQL NOTIFY caps at 8000 bytes).
// Topics are keyed by organization id, so a subscriber can only ever listen to its own organization.
export type GatewayEvents = {
  conversationUpdated: [organizationId: string, payload: { conversationId: string }];
  messageReceived: [organizationId: string, payload: { messageId: string; conversationId: string }];
  messageStatusChanged: [organizationId: string, payload: { messageId: string; conversationId: string }];
  noteAdded: [organizationId: string, payload: { noteId: string; conversationId: string }];
};

export type EventBus = PubSub<GatewayEvents> & {
  /** Resolves once events from other instances are being received (at once in process). */
  ready: Promise<void>;
  /** Sends what is still in flight and stops receiving. */
  close(): Promise<void>;
  /** Live subscriptions of this instance to one organization's topic (for metrics and tests). */
  subscriberCount(topic: keyof GatewayEvents, organizationId: string): number;
  /**
   * Calls `handler` for every event of the topic, for a shared reader that serves many subscriptions:
   * it counts as none of them (see countShared). Returns the function that stops listening.
   */
  listen<K extends keyof GatewayEvents>(topic: K, organizationId: string, handler: (payload: GatewayEvents[K][1]) => void): () => void;
  /** Adds (or with a negative delta removes) subscriptions served by a shared reader to subscriberCount. */
  countShared(topic: keyof GatewayEvents, organizationId: string, delta: number): void;
};

/**
 * The event bus; call publish only after the writing transaction committed. With Redis, events travel
 * between gateway instances over Redis pub/sub; else on PostgreSQL through LISTEN/NOTIFY; otherwise
 * (PGlite, one process) they stay in process.
 */
export function createEventBus(options: { database?: Database; logger?: Logger; metrics?: Metrics; redis?: RedisConnections } = {}): EventBus {
  const { metrics } = options;
  // With Redis (REDIS_URL), events cross instances over its pub/sub, whatever the database.
  if (options.redis && options.logger) {
    const lag = metrics?.eventDeliveryLag.labels({ source: 'redis' });
    const target = new RedisEventTarget(options.redis, options.logger, lag && ((seconds) => lag.observe(seconds)));
    const pubsub = counted(createPubSub<GatewayEvents>({ eventTarget: target as unknown as PubSubEventTarget<GatewayEvents> }), metrics);
    return Object.assign(pubsub, { ready: target.ready, close: () => target.close(), ...sharedListening(target) });
  }
  if (options.database?.kind === 'postgres' && options.logger) {
    const lag = metrics?.eventDeliveryLag.labels({ source: 'postgres' });
    const target = new PostgresEventTarget(options.database, options.logger, lag && ((seconds) => lag.observe(seconds)));
    const pubsub = counted(createPubSub<GatewayEvents>({ eventTarget: target as unknown as PubSubEventTarget<GatewayEvents> }), metrics);
    return Object.assign(pubsub, { ready: target.ready, close: () => target.close(), ...sharedListening(target) });
  }
  const target = new EventTarget();
  setMaxListeners(0, target); // many subscribers per organization topic are normal, not a leak
  const pubsub = counted(createPubSub<GatewayEvents>({ eventTarget: target as unknown as PubSubEventTarget<GatewayEvents> }), metrics);
  return Object.assign(pubsub, { ready: Promise.resolve(), close: async () => {}, ...sharedListening(target) });
}

/** Counts what is published (gateway_events_published_total; messageReceived is an inbound message stored). */
function counted(pubsub: PubSub<GatewayEvents>, metrics: Metrics | undefined): PubSub<GatewayEvents> {
  if (!metrics) return pubsub;
  const publish = pubsub.publish.bind(pubsub);
  const byTopic = new Map<string, { inc(): void }>();
  pubsub.publish = (topic, ...args) => {
    let counter = byTopic.get(topic);
    if (!counter) byTopic.set(topic, (counter = metrics.eventsPublished.labels({ topic })));
    counter.inc();
    if (topic === 'messageReceived') metrics.inboundMessages.inc();
    publish(topic, ...args);
  };
  return pubsub;
}

/** listen, countShared and subscriberCount over the target; yoga's pubsub names a keyed topic `<topic>:<key>`. */
function sharedListening(target: EventTarget): Pick<EventBus, 'listen' | 'countShared' | 'subscriberCount'> {
  const uncounted = new WeakSet<object>();
  const shared = new Map<string, number>();
  return {
    listen(topic, organizationId, handler) {
      const type = `${topic}:${organizationId}`;
      const listener = (event: Event) => handler((event as CustomEvent).detail);
      uncounted.add(listener);
      target.addEventListener(type, listener);
      return () => target.removeEventListener(type, listener);
    },
    countShared(topic, organizationId, delta) {
      const type = `${topic}:${organizationId}`;
      const count = (shared.get(type) ?? 0) + delta;
      if (count > 0) shared.set(type, count);
      else shared.delete(type);
    },
    subscriberCount(topic, organizationId) {
      const type = `${topic}:${organizationId}`;
      const own = getEventListeners(target, type).filter((listener) => !uncounted.has(listener)).length;
      return own + (shared.get(type) ?? 0);
    },
  };
}
