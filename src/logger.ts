import pino, { type Logger } from 'pino';
import type { Config } from './config.js';

/** Structured JSON logs. The CLI logs to stderr so that stdout holds only its output. */
export function createLogger(config: Pick<Config, 'logLevel'>, destination: 1 | 2 = 1): Logger {
  return pino({ level: config.logLevel, base: { service: 'conversations-gateway' } }, pino.destination({ fd: destination, sync: destination === 2 }));
}
