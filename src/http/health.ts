import type { ServerResponse } from 'node:http';
import type { Deps } from '../deps.js';
import { sendJson } from './respond.js';

const PING_TIMEOUT_MS = 2_000;

/** 200 when the database answers a round trip in time, 503 otherwise. */
export async function handleHealth(deps: Deps, res: ServerResponse) {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      deps.database.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('database ping timed out')), PING_TIMEOUT_MS);
      }),
    ]);
    sendJson(res, 200, { status: 'ok', database: deps.database.kind });
  } catch (error) {
    deps.logger.warn({ err: error }, 'health check failed');
    sendJson(res, 503, { status: 'unavailable', database: deps.database.kind, message: 'The database does not answer.' });
  } finally {
    clearTimeout(timer);
  }
}
