import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import type { SmsProvider } from '../providers/sms-provider.js';
import type { EventBus } from '../pubsub/index.js';
import type { ServiceState } from './state.js';
import type { TextabilityService } from './textability.js';

/**
 * The long-lived parts a service may use, made by the composition root (src/deps.ts). A service names the
 * ones it needs (`Pick<ServiceDeps, 'db' | 'events'>`), so it depends on those layers and never on the
 * request context or the HTTP layer above it.
 */
export type ServiceDeps = {
  config: Config;
  db: Db;
  logger: Logger;
  events: EventBus;
  /** Sends texts and looks up line types: Twilio, or the simulated provider. */
  sms: SmsProvider;
  textability: TextabilityService;
  /** What services keep in memory between calls (batchers, caches, shared feeds), drained when the instance closes. */
  state: ServiceState;
};
