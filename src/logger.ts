import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from './config.js';
import { requestLogMixin } from './http/request-id.js';

/**
 * Structured JSON logs; on a terminal (or LOG_FORMAT=pretty) the same lines pretty-printed, so `npm start`
 * reads well. The CLI logs to stderr so that stdout holds only its output.
 */
export function createLogger(config: Pick<Config, 'logLevel'> & Partial<Pick<Config, 'logFormat'>>, destination: 1 | 2 = 1): Logger {
  // The mixin stamps every line written while serving a request with its x-request-id and trace id.
  const options = { level: config.logLevel, base: { service: 'conversations-gateway' }, mixin: requestLogMixin };
  const terminal = destination === 1 ? process.stdout.isTTY : process.stderr.isTTY;
  if ((config.logFormat ?? (terminal ? 'pretty' : 'json')) === 'pretty') {
    return pino(options, pretty({ destination, sync: true, colorize: terminal, ignore: 'pid,hostname,service', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(options, pino.destination({ fd: destination, sync: destination === 2 }));
}
