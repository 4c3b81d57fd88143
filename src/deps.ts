import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createDatabase, type Database } from './db/client.js';
import { ReadReplica } from './db/read-replica.js';
import { RateLimiter } from './http/rate-limit.js';
import { Metrics } from './observability/metrics.js';
import { observedProvider } from './observability/observed-provider.js';
import { createTracing, type Tracing } from './observability/tracing.js';
import { createSmsProvider } from './providers/index.js';
import { createEventBus } from './pubsub/index.js';
import { RecentWrites } from './pubsub/recent-writes.js';
import { connectRedis, type RedisConnections } from './pubsub/redis.js';
import { runAfterCommit } from './db/after-commit.js';
import { ACCESS_CHANGED_CHANNEL, Authenticator, relayAccessChanges } from './services/auth.js';
import { SnoozeSweeper } from './services/conversation-status.js';
import { JwtVerifier } from './services/jwt.js';
import { applyMessageStatus } from './services/message-status.js';
import { JobRunner } from './services/jobs/runner.js';
import { SCHEDULED_REPLY_QUEUE, scheduledReplyHandler, SendsInDoubtSweeper } from './services/replies/index.js';
import type { ServiceDeps } from './services/deps.js';
import { countPendingWebhookDeliveries, countSendsInDoubt, pendingJobsByQueue } from './services/observability.js';
import { ServiceState } from './services/state.js';
import { TextabilityService } from './services/textability.js';
import { RequestLoad } from './observability/request-load.js';
import { WebhookDispatcher } from './services/webhooks/dispatcher.js';
import { systemLookup, type LookupAll } from './services/webhooks/url-policy.js';

/** Everything long-lived the app needs, built once here (or per test) and passed in. */
export type Deps = ServiceDeps & {
  database: Database;
  authenticator: Authenticator;
  /** Settles replies whose process stopped while the provider had them (started by main.ts). */
  sendsInDoubt: SendsInDoubtSweeper;
  /** Opens snoozed conversations when their snooze ends (started by main.ts). */
  snoozes: SnoozeSweeper;
  /** Runs due background jobs: scheduled replies (started by main.ts). */
  jobs: JobRunner;
  /** Sends outgoing webhooks from the outbox (started by main.ts). */
  webhooks: WebhookDispatcher;
  /** HTTP requests being served (app.ts counts them): the webhook dispatcher steps back while they pile up. */
  requestLoad: RequestLoad;
  /** How webhook hosts are resolved (checked against the SSRF rules at save and at each attempt). */
  webhookLookup: LookupAll;
  /** Per-token request budget for /graphql and /api (RATE_LIMIT_PER_MINUTE). */
  rateLimiter: RateLimiter;
  /** Prometheus metrics of this instance (GET /metrics). */
  metrics: Metrics;
  /** OpenTelemetry tracing; null when OTEL_EXPORTER_OTLP_ENDPOINT is unset (no spans at all). */
  tracing: Tracing | null;
  /** Redis connections (REDIS_URL), or null: events over the database, rate limits in memory. */
  redis: RedisConnections | null;
  /** The read replica (DATABASE_READ_URL) and what routes reads to it; null: every read on the primary. */
  reads: ReadRouting | null;
};

/** Where read-only requests read; src/context.ts chooses per request. */
export type ReadRouting = {
  replica: ReadReplica;
  /** Tokens that wrote lately: their reads stay on the primary (READ_YOUR_WRITES_MS). */
  recentWrites: RecentWrites;
  /**
   * These Deps with the replica's db and a service state of their own: a batcher or cache first made for a
   * read captures the db it was made with, and must never serve a write.
   */
  replicaDeps: Deps;
  /** gateway_db_reads_total by target. */
  served: Record<'primary' | 'replica', { inc(): void }>;
};

/**
 * Wires the long-lived services around an open, migrated database, and the read replica when there is one
 * (it is never migrated: it replays the primary).
 */
export function assembleDeps(config: Config, database: Database, logger: Logger, replica: Database | null = null): Deps {
  const metrics = new Metrics();
  const tracing = createTracing(config);
  const redis = config.redisUrl ? connectRedis(config.redisUrl, logger) : null;
  const events = createEventBus({ database, logger, metrics, redis: redis ?? undefined });
  if (redis) {
    // Token revocations and membership changes reach every instance over Redis too, once committed.
    runAfterCommit(database.db);
    relayAccessChanges(database.db, (payload) => {
      redis.commands.publish(ACCESS_CHANGED_CHANNEL, payload).catch((error: unknown) =>
        logger.warn({ err: error, payload }, 'could not publish an access change to Redis; other instances drop it when their auth cache expires'),
      );
    });
  }
  const state = new ServiceState();
  const requestLoad = new RequestLoad();
  // The simulated provider reports statuses through the same path as Twilio's callbacks.
  const provider = createSmsProvider(config, {
    logger,
    applyStatus: (update) => applyMessageStatus({ db: database.db, events, logger, state }, update),
  });
  const sms = observedProvider(provider, metrics, tracing);
  metrics.sources.dbPool = () => database.poolStats();
  metrics.sources.sendsInDoubt = () => countSendsInDoubt(database.db, config.sendsInDoubtAfterMs);
  metrics.sources.jobsPending = () => pendingJobsByQueue(database.db);
  metrics.sources.webhookDeliveriesPending = () => countPendingWebhookDeliveries(database.db);
  const textability = new TextabilityService(database.db, sms, logger, config.lookupRetryMs);
  const authenticator = new Authenticator(database.db, config.authCacheTtlMs, config.jwt ? new JwtVerifier(config.jwt) : null);
  const deps: Deps = {
    config,
    database,
    db: database.db,
    logger,
    authenticator,
    events,
    sms,
    state,
    textability,
    sendsInDoubt: new SendsInDoubtSweeper({ db: database.db, sms, events, logger, config, state }),
    snoozes: new SnoozeSweeper({ db: database.db, events, logger, config }),
    jobs: new JobRunner(
      database.db,
      { [SCHEDULED_REPLY_QUEUE]: scheduledReplyHandler({ db: database.db, events, sms, config, textability, state, logger }) },
      config.jobs,
      logger,
      (queue, outcome) => metrics.jobsRun.inc({ queue, outcome }),
    ),
    requestLoad,
    webhooks: new WebhookDispatcher({
      db: database.db,
      logger,
      config: config.webhooks,
      lookup: systemLookup,
      requestsInFlight: () => requestLoad.averageInFlight(),
      onAttempt: (outcome, durationMs) => {
        metrics.webhookAttempts.inc({ outcome });
        metrics.webhookAttemptDuration.observe(durationMs / 1000);
      },
    }),
    webhookLookup: systemLookup,
    rateLimiter: new RateLimiter(config.rateLimitPerMinute, {
      authFailuresPerMinute: config.authFailuresPerMinute,
      isVerifiedToken: (authorization) => authenticator.isVerified(authorization),
      redis: redis?.commands,
    }),
    metrics,
    tracing,
    redis,
    reads: null,
  };
  if (replica) deps.reads = routeReads(deps, replica, config.readReplica?.readYourWritesMs ?? 0);
  return deps;
}

function routeReads(deps: Deps, database: Database, readYourWritesMs: number): ReadRouting {
  const replica = new ReadReplica(database, deps.logger);
  const reads: ReadRouting = {
    replica,
    recentWrites: new RecentWrites(readYourWritesMs, deps.redis, deps.logger),
    replicaDeps: deps,
    served: { primary: deps.metrics.dbReads.labels({ target: 'primary' }), replica: deps.metrics.dbReads.labels({ target: 'replica' }) },
  };
  reads.replicaDeps = { ...deps, db: replica.db, state: new ServiceState(), reads };
  deps.metrics.watchReplica(replica);
  return reads;
}

/** Opens the configured database (PostgreSQL, or embedded PGlite), applies migrations, wires services. */
export async function openDeps(config: Config, logger: Logger): Promise<Deps & { close(): Promise<void> }> {
  const database = config.databaseUrl
    ? await createDatabase({
        kind: 'postgres',
        url: config.databaseUrl,
        poolSize: config.databasePoolSize,
        directUrl: config.databaseDirectUrl,
        poolerPrepared: config.databasePoolerPrepared,
      })
    : await createDatabase({ kind: 'pglite', dataDir: resolve(config.dataDir) });
  try {
    await database.migrate();
  } catch (error) {
    await database.close().catch(() => {});
    throw error;
  }
  // postgres.js connects on first use: an unreachable replica does not hold the start (reads use the primary).
  const replica = config.readReplica
    ? await createDatabase({ kind: 'postgres', url: config.readReplica.url, poolSize: config.readReplica.poolSize })
    : null;
  const deps = assembleDeps(config, database, logger, replica);
  return {
    ...deps,
    close: () => closeDeps(deps),
  };
}

/** How long closing waits for background work, batched writes and Redis before it goes on without them. */
const CLOSE_GRACE_MS = 10_000;
/** What each part still gets once the grace is over (closing the event listeners, Redis: quick when they answer). */
const CLOSE_STEP_MIN_MS = 1_000;

/**
 * Stops background work (sweeps, simulated deliveries, lookup retries), lets the batchers write what they
 * hold and the shared feeds end, closes the event listeners, then the database. The parts before the
 * database share CLOSE_GRACE_MS (each gets at least CLOSE_STEP_MIN_MS): one waiting on a database that no
 * longer answers must not keep the process from exiting (the database's close then ends its connections
 * after its own timeout), and the log names the part that held it.
 */
export async function closeDeps(deps: Deps, options: { database?: boolean; graceMs?: number } = {}): Promise<void> {
  const deadline = performance.now() + (options.graceMs ?? CLOSE_GRACE_MS);
  const took: Record<string, number> = {};
  const step = async (name: string, run: () => Promise<unknown> | undefined) => {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.resolve()
        .then(run)
        .then(
          () => true,
          (error: unknown) => (deps.logger.warn({ err: error, step: name }, 'closing failed; going on'), true),
        ),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(CLOSE_STEP_MIN_MS, deadline - performance.now())))),
    ]);
    clearTimeout(timer);
    if (!finished) deps.logger.warn({ step: name, held: deps.state.inspect() }, 'still closing; going on without it');
    took[name] = Math.round(performance.now() - started);
  };
  await step('jobs', () => deps.jobs.close());
  await step('webhooks', () => deps.webhooks.close());
  await step('sendsInDoubt', () => deps.sendsInDoubt.close());
  await step('snoozes', () => deps.snoozes.close());
  await step('textability', () => deps.textability.close());
  await step('sms', () => deps.sms.close());
  deps.logger.info({ held: deps.state.inspect() }, 'draining service state');
  await step('state', () => deps.state.drain());
  await step('replicaState', () => deps.reads?.replicaDeps.state.drain());
  await step('events', () => deps.events.close());
  await step('recentWrites', () => deps.reads?.recentWrites.close());
  await step('redis', () => deps.redis?.close());
  await step('tracing', () => deps.tracing?.close().catch((error: unknown) => deps.logger.warn({ err: error }, 'could not export the last spans')));
  // Not raced: each database's close is bounded by its own timeout, and it ends whatever still waits on it.
  const started = performance.now();
  await deps.reads?.replica.close();
  // false: the database is shared with another instance in this process (tests of several instances on PGlite).
  if (options.database !== false) await deps.database.close();
  took.database = Math.round(performance.now() - started);
  // What each part took: when an instance is slow to exit, this says which part held it.
  deps.logger.info({ tookMs: took }, 'closed');
}
