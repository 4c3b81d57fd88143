import pino, { type Logger } from 'pino';
import type { Config } from './config.js';
import { requestLogMixin } from './http/request-id.js';

/** Structured JSON logs. The CLI logs to stderr so that stdout holds only its output. */
export function createLogger(config: Pick<Config, 'logLevel'>, destination: 1 | 2 = 1): Logger {
  // The mixin stamps every line written while serving a request with its x-request-id.
  return pino({ level: config.logLevel, base: { service: 'conversations-gateway' }, mixin: requestLogMixin }, pino.destination({ fd: destination, sync: destination === 2 }));
}
