import { createPubSub, type PubSub } from 'graphql-yoga';

// Typed topics. Payloads carry ids only: a subscriber loads rows through the data layer with its own
// organization scope, and the same payloads can cross instances (PostgreSQL NOTIFY caps at 8000 bytes).
// Topics are keyed by organization id, so a subscriber can only ever listen to its own organization.
export type GatewayEvents = {
  conversationUpdated: [organizationId: string, payload: { conversationId: string }];
  messageReceived: [organizationId: string, payload: { messageId: string; conversationId: string }];
  messageStatusChanged: [organizationId: string, payload: { messageId: string; conversationId: string }];
};

export type EventBus = PubSub<GatewayEvents>;

/** In-process event bus; call publish only after the writing transaction committed. */
export function createEventBus(): EventBus {
  return createPubSub<GatewayEvents>();
}
