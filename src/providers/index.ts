import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { StatusOutcome, StatusUpdate } from '../services/message-status.js';
import { SimulatedProvider } from './simulated/simulated-provider.js';
import type { SmsProvider } from './sms-provider.js';
import { TwilioProvider } from './twilio/twilio-provider.js';

/** Twilio when both credentials are configured, otherwise the simulated provider. */
export function createSmsProvider(
  config: Config,
  options: { logger: Logger; applyStatus: (update: StatusUpdate) => Promise<StatusOutcome> },
): SmsProvider {
  if (config.smsProvider === 'twilio') {
    return new TwilioProvider({
      accountSid: config.twilioAccountSid!,
      authToken: config.twilioAuthToken!,
      apiBaseUrl: config.twilioApiBaseUrl,
      timeoutMs: config.smsProviderTimeoutMs,
      maxConcurrentRequests: config.twilioMaxConcurrentRequests,
      maxQueuedRequests: config.twilioMaxQueuedRequests,
    });
  }
  return new SimulatedProvider({ statusDelayMs: config.simulatedStatusDelayMs, applyStatus: options.applyStatus, logger: options.logger });
}
