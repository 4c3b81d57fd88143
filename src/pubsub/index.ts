import { getEventListeners, setMaxListeners } from 'node:events';
import { createPubSub, type PubSub, type PubSubEventTarget } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Database } from '../db/client.js';
import { PostgresEventTarget } from './postgres-event-target.js';

// Typed topics. Payloads carry ids only: a subscriber loads rows through the data layer with its own
// organization scope, and the same payloads can cross instances (PostgreSQL NOTIFY caps at 8000 bytes).
// Topics are keyed by organization id, so a subscriber can only ever listen to its own organization.
export type GatewayEvents = {
  conversationUpdated: [organizationId: string, payload: { conversationId: string }];
  messageReceived: [organizationId: string, payload: { messageId: string; conversationId: string }];
  messageStatusChanged: [organizationId: string, payload: { messageId: string; conversationId: string }];
};

export type EventBus = PubSub<GatewayEvents> & {
  /** Resolves once events from other instances are being received (at once in process). */
  ready: Promise<void>;
  /** Sends what is still in flight and stops receiving. */
  close(): Promise<void>;
  /** Live subscriptions of this instance to one organization's topic (for metrics and tests). */
  subscriberCount(topic: keyof GatewayEvents, organizationId: string): number;
};

/**
 * The event bus; call publish only after the writing transaction committed. On PostgreSQL, events
 * travel between gateway instances through LISTEN/NOTIFY; otherwise (PGlite, one process) they stay
 * in process.
 */
export function createEventBus(options: { database?: Database; logger?: Logger } = {}): EventBus {
  if (options.database?.kind === 'postgres' && options.logger) {
    const target = new PostgresEventTarget(options.database, options.logger);
    const pubsub = createPubSub<GatewayEvents>({ eventTarget: target as unknown as PubSubEventTarget<GatewayEvents> });
    return Object.assign(pubsub, { ready: target.ready, close: () => target.close(), subscriberCount: counter(target) });
  }
  const target = new EventTarget();
  setMaxListeners(0, target); // many subscribers per organization topic are normal, not a leak
  const pubsub = createPubSub<GatewayEvents>({ eventTarget: target as unknown as PubSubEventTarget<GatewayEvents> });
  return Object.assign(pubsub, { ready: Promise.resolve(), close: async () => {}, subscriberCount: counter(target) });
}

/** yoga's pubsub names a keyed topic `<topic>:<key>`. */
const counter = (target: EventTarget) => (topic: keyof GatewayEvents, organizationId: string) =>
  getEventListeners(target, `${topic}:${organizationId}`).length;
