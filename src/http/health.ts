import type { ServerResponse } from 'node:http';
import { migrationsApplied } from '../db/client.js';
import type { Deps } from '../deps.js';
import { sendJson } from './respond.js';

const PING_TIMEOUT_MS = 2_000;

function withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out`)), PING_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** 200 when the database answers a round trip in time, 503 otherwise. */
export async function handleHealth(deps: Deps, res: ServerResponse) {
  try {
    await withTimeout(deps.database.ping(), 'database ping');
    sendJson(res, 200, { status: 'ok', database: deps.database.kind });
  } catch (error) {
    deps.logger.warn({ err: error }, 'health check failed');
    sendJson(res, 503, { status: 'unavailable', database: deps.database.kind, message: 'The database does not answer.' });
  }
}

/** GET /health/live: the process runs and its event loop answers. */
export function handleLiveness(res: ServerResponse) {
  sendJson(res, 200, { status: 'ok' });
}

/**
 * GET /health/ready: whether a load balancer should send traffic here. 503 from the start of shutdown (so
 * the instance drains), while the database does not answer, and until every migration is applied.
 */
export function createReadiness(deps: Deps) {
  let stopping = false;
  // Once applied, migrations stay applied: checked until then only.
  let migrated = false;
  return {
    /** Called at the start of shutdown: readiness fails from now on. */
    stop() {
      stopping = true;
    },
    async handle(res: ServerResponse) {
      const unavailable = (reason: string, message: string) =>
        sendJson(res, 503, { status: 'unavailable', reason, database: deps.database.kind, message });
      if (stopping) return unavailable('shutting_down', 'This instance is shutting down.');
      try {
        await withTimeout(deps.database.ping(), 'database ping');
        migrated ||= await withTimeout(migrationsApplied(deps.db), 'migration check');
      } catch (error) {
        deps.logger.warn({ err: error }, 'readiness check failed');
        return unavailable('database_unavailable', 'The database does not answer.');
      }
      if (!migrated) return unavailable('migrating', 'The database migrations have not finished.');
      sendJson(res, 200, { status: 'ok', database: deps.database.kind });
    },
  };
}
