import { z } from 'zod';

// The only module that reads process.env. Everything else receives a Config.

const booleanString = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('0.0.0.0'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  /** PostgreSQL connection string; unset means embedded PGlite in DATA_DIR. */
  DATABASE_URL: z.string().url().optional(),
  /** PostgreSQL itself, when DATABASE_URL is a pooler in transaction mode (pgbouncer): migrations and LISTEN use it. */
  DATABASE_DIRECT_URL: z.string().url().optional(),
  /** The pooler keeps prepared statements per client (pgbouncer >= 1.21 with max_prepared_statements); only with DATABASE_DIRECT_URL. */
  DATABASE_POOLER_PREPARED: booleanString.default(false),
  DATA_DIR: z.string().default('./.data'),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  /** A streaming replica of DATABASE_URL: GraphQL queries and REST GETs read from it (docs/deploy.md, Read replica). */
  DATABASE_READ_URL: z.string().url().optional(),
  /** Connections to DATABASE_READ_URL per instance (default: DATABASE_POOL_SIZE). */
  DATABASE_READ_POOL_SIZE: z.coerce.number().int().min(1).max(200).optional(),
  /** After a write, that token's reads go to the primary for this long, so it sees its own write despite replica lag. */
  READ_YOUR_WRITES_MS: z.coerce.number().int().min(0).max(600_000).default(2_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Base URL the outside world uses to reach this service (short links, Twilio callbacks). */
  PUBLIC_BASE_URL: z.string().url().optional(),
  /** Seed a demo organization on the first start of an empty store (default: on for embedded storage). */
  SEED_DEMO: booleanString.optional(),
  /** How long a verified API token stays cached in memory, so a request costs no auth query (bounds revocation delay). */
  AUTH_CACHE_TTL_MS: z.coerce.number().int().min(0).default(10_000),
  /** Requests per API token per minute on /graphql and /api (0: no limit). Webhooks are never limited. */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).default(600),
  /** Failed authentications (HTTP 401) per client address per minute before that address is refused (0: no limit). */
  AUTH_FAILURES_PER_MINUTE: z.coerce.number().int().min(0).default(60),
  /** Largest /graphql request body; larger is HTTP 413. */
  MAX_REQUEST_BODY_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024),
  /** Operations in one batched GraphQL request (a JSON array); 0 turns batching off. */
  GRAPHQL_BATCH_LIMIT: z.coerce.number().int().min(0).max(100).default(10),
  /** Deepest field nesting a GraphQL operation may have. */
  GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(1).default(12),
  /** Largest estimated cost of a GraphQL operation (fields weighted by page sizes). */
  GRAPHQL_MAX_COST: z.coerce.number().int().min(1).default(30_000),
  /** Schema introspection (default: on outside production). */
  GRAPHQL_INTROSPECTION: booleanString.optional(),
  /** Origins browsers may call from: `*`, or a comma-separated list of origins. */
  CORS_ORIGINS: z.string().default('*'),
  /** GraphiQL in the browser at /graphql (default: on outside production). */
  GRAPHIQL: booleanString.optional(),
  /** Twilio credentials; with both set, messages go out through Twilio, otherwise through the simulated provider. */
  TWILIO_ACCOUNT_SID: z.string().optional(),
  TWILIO_AUTH_TOKEN: z.string().optional(),
  /** Replaces the scheme and host of every Twilio API call (Messages, Lookup): Twilio-compatible providers, tests. */
  TWILIO_API_BASE_URL: z.string().url().optional(),
  /** Twilio calls in flight at once from this instance (Twilio answers 429, error 20429, past an account's limit). */
  TWILIO_MAX_CONCURRENT_REQUESTS: z.coerce.number().int().min(1).max(1_000).default(25),
  /** Twilio calls waiting for a free slot, in arrival order, before more are refused at once with PROVIDER_BUSY. */
  TWILIO_MAX_QUEUED_REQUESTS: z.coerce.number().int().min(0).default(1_000),
  /** Credits charged for one MMS (an SMS costs one credit per segment). */
  MMS_CREDIT_PRICE: z.coerce.number().int().min(0).default(3),
  /**
   * The whole budget of one provider call: waiting for a slot, retries of 429/5xx and their backoff. A send
   * that gets no answer in time is in doubt (SEND_IN_DOUBT), settled within about twice this.
   */
  SMS_PROVIDER_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
  /**
   * Age past which a reply still waiting for the provider's answer is in doubt (its process stopped during
   * the call) and is settled with the provider: longer than SMS_PROVIDER_TIMEOUT_MS.
   */
  SENDS_IN_DOUBT_AFTER_MS: z.coerce.number().int().min(1_000).default(300_000),
  /**
   * How long a Twilio status callback naming a message we do not know waits for it before it is acknowledged
   * and dropped: Twilio can call back before the send that got the SID has stored it.
   */
  STATUS_CALLBACK_WAIT_MS: z.coerce.number().int().min(0).max(12_000).default(5_000),
  /** Simulated provider: delay before a message is reported SENT, then at once DELIVERED. */
  SIMULATED_STATUS_DELAY_MS: z.coerce.number().int().min(0).default(1_000),
  /** First retry delay of a failed textability lookup; each further retry waits twice as long. */
  LOOKUP_RETRY_MS: z.coerce.number().int().min(1).default(5_000),
  /** A scheduled reply due longer ago than this (every instance was down) fails with SCHEDULE_EXPIRED instead of going out. */
  SCHEDULED_REPLY_MAX_LATENESS_MS: z.coerce.number().int().min(1_000).default(3_600_000),
  /** How often each instance looks for due background jobs (scheduled replies, ...). */
  JOB_POLL_MS: z.coerce.number().int().min(10).max(5_000).default(1_000),
  /**
   * How long a claimed job is its instance's: if the instance dies, the job is due again after this. Longer
   * than SMS_PROVIDER_TIMEOUT_MS, so a live send is never run twice.
   */
  JOB_LEASE_MS: z.coerce.number().int().min(1_000).default(60_000),
  /** Jobs one instance runs at once. */
  JOB_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(50),
  /** An identity provider's JSON Web Key Set: Bearer JWTs signed by it are accepted, their `email` naming the user. */
  AUTH_JWKS_URL: z.string().url().optional(),
  /** The `iss` those tokens must carry (required with AUTH_JWKS_URL). */
  AUTH_JWT_ISSUER: z.string().optional(),
  /** The `aud` those tokens must carry (required with AUTH_JWKS_URL). */
  AUTH_JWT_AUDIENCE: z.string().optional(),
  /** How often each instance looks for snoozes that ended (they end within this much of snoozedUntil). */
  SNOOZE_SWEEP_MS: z.coerce.number().int().min(100).max(5_000).default(1_000),
  /** When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`. */
  METRICS_TOKEN: z.string().min(16).optional(),
  /** From the start of shutdown, how long /health/ready answers 503 before the server stops accepting (load balancers notice). */
  SHUTDOWN_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  /** `pretty` or `json` log lines (default: pretty when stdout is a terminal). */
  LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
  /** OpenTelemetry (standard variables): OTLP/HTTP traces go to <endpoint>/v1/traces, or to the traces endpoint as given. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().url().optional(),
  /** `key=value,key2=value2` headers sent with every export (an API key of the tracing backend). */
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  OTEL_SERVICE_NAME: z.string().default('conversations-gateway'),
  OTEL_SDK_DISABLED: booleanString.optional(),
  /** Redis (redis://host:port): events, token revocations and rate limits shared by every instance. */
  REDIS_URL: z.string().url().optional(),
  /** Outgoing webhooks may use http:// URLs (tests, local receivers); otherwise https only. */
  WEBHOOK_ALLOW_INSECURE: booleanString.default(false),
  /** Outgoing webhooks may reach loopback, private, link-local and metadata addresses (tests, local receivers). */
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: booleanString.default(false),
  /** Waits between a failed webhook attempt and the next, comma-separated durations (`500ms`, `5s`, `5m`, `2h`, `1d`). */
  WEBHOOK_RETRY_SCHEDULE: z.string().default('5s,5m,30m,2h,5h,10h,10h'),
  /** How long a claimed webhook attempt is its instance's: if the instance dies, the attempt is made again after this. */
  WEBHOOK_LEASE_MS: z.coerce.number().int().min(1_000).default(60_000),
  /** How long an endpoint has to answer an attempt with a 2xx. */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
  /** How often each instance looks for due webhook deliveries. */
  WEBHOOK_POLL_MS: z.coerce.number().int().min(10).max(5_000).default(250),
  /** Webhook attempts one instance makes at once, over all endpoints. */
  WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(1_000).default(100),
  /** Webhook attempts in flight to one endpoint at once, over all instances. */
  WEBHOOK_ENDPOINT_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(10),
  /**
   * While more HTTP requests than this are in flight on an instance, its webhook dispatcher steps back to a
   * trickle (requests first; deliveries catch up when they fall below). 0: never.
   */
  WEBHOOK_YIELD_REQUESTS: z.coerce.number().int().min(0).default(32),
  /** An endpoint whose every attempt failed for this long is disabled (5 days). */
  WEBHOOK_DISABLE_AFTER_MS: z.coerce.number().int().min(1_000).default(5 * 24 * 3_600_000),
});

export type Config = {
  env: 'development' | 'production' | 'test';
  host: string;
  port: number;
  databaseUrl: string | undefined;
  /**
   * Set when databaseUrl is a pooler in transaction mode: PostgreSQL itself, for migrations and LISTEN.
   * Pooled connections then prepare no statements unless databasePoolerPrepared.
   */
  databaseDirectUrl: string | undefined;
  databasePoolerPrepared: boolean;
  dataDir: string;
  databasePoolSize: number;
  /** DATABASE_READ_URL and its pool; null: every read on the primary. */
  readReplica: { url: string; poolSize: number; readYourWritesMs: number } | null;
  logLevel: z.infer<typeof configSchema>['LOG_LEVEL'];
  publicBaseUrl: string;
  seedDemo: boolean;
  authCacheTtlMs: number;
  rateLimitPerMinute: number;
  authFailuresPerMinute: number;
  maxRequestBodyBytes: number;
  graphqlBatchLimit: number;
  graphqlMaxDepth: number;
  graphqlMaxCost: number;
  introspection: boolean;
  /** `*` or exact origins (scheme://host[:port]). */
  corsOrigins: '*' | string[];
  graphiql: boolean;
  smsProvider: 'twilio' | 'simulated';
  twilioAccountSid: string | undefined;
  twilioAuthToken: string | undefined;
  twilioApiBaseUrl: string | undefined;
  twilioMaxConcurrentRequests: number;
  twilioMaxQueuedRequests: number;
  mmsCreditPrice: number;
  smsProviderTimeoutMs: number;
  sendsInDoubtAfterMs: number;
  statusCallbackWaitMs: number;
  simulatedStatusDelayMs: number;
  lookupRetryMs: number;
  /** Bearer JWTs from an identity provider (AUTH_JWKS_URL); null: API tokens only. */
  jwt: { jwksUrl: string; issuer: string; audience: string } | null;
  snoozeSweepMs: number;
  scheduledReplyMaxLatenessMs: number;
  jobs: { pollMs: number; leaseMs: number; concurrency: number };
  metricsToken: string | undefined;
  shutdownDelayMs: number;
  /** undefined: pretty on a terminal, JSON otherwise. */
  logFormat: 'json' | 'pretty' | undefined;
  /** OTLP/HTTP trace export; null: tracing off (no spans made at all). */
  tracing: { tracesUrl: string; headers: Record<string, string>; serviceName: string } | null;
  redisUrl: string | undefined;
  webhooks: WebhookConfig;
};

function otlpHeaders(value: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of (value ?? '').split(',')) {
    const at = pair.indexOf('=');
    if (at > 0) headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return headers;
}

export type WebhookConfig = {
  allowInsecure: boolean;
  allowPrivateNetworks: boolean;
  /** Waits after each failed attempt; its length + 1 is the number of attempts. */
  retryScheduleMs: number[];
  leaseMs: number;
  timeoutMs: number;
  pollMs: number;
  concurrency: number;
  endpointConcurrency: number;
  disableAfterMs: number;
  /** Requests in flight above which the dispatcher steps back (0: never). */
  yieldRequests: number;
};

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `5s,5m,2h` -> milliseconds. */
export function parseDurations(value: string, name: string): number[] {
  return value.split(',').map((part) => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(part);
    if (!match) throw new ConfigError(`Invalid configuration: ${name}: ${JSON.stringify(part.trim())} is not a duration like 500ms, 5s, 5m, 2h or 1d`);
    return Math.round(Number(match[1]) * DURATION_UNITS[match[2]!]!);
  });
}

export class ConfigError extends Error {}

function parseOrigins(value: string): '*' | string[] {
  const origins = value.split(',').map((origin) => origin.trim().replace(/\/+$/, '')).filter(Boolean);
  if (origins.length === 0 || origins.includes('*')) return '*';
  for (const origin of origins) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = null;
    }
    if (!parsed || parsed.origin !== origin) throw new ConfigError(`Invalid configuration: CORS_ORIGINS: ${JSON.stringify(origin)} is not an origin like https://app.example.com`);
  }
  return origins;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Treat empty variables as unset, as shells and .env files often produce them.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new ConfigError(`Invalid configuration: ${problems}`);
  }
  const c = parsed.data;
  if (c.SENDS_IN_DOUBT_AFTER_MS <= c.SMS_PROVIDER_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid configuration: SENDS_IN_DOUBT_AFTER_MS (${c.SENDS_IN_DOUBT_AFTER_MS}) must be longer than SMS_PROVIDER_TIMEOUT_MS (${c.SMS_PROVIDER_TIMEOUT_MS}): a send is in doubt only once no live call can still answer it.`,
    );
  }
  if (c.JOB_LEASE_MS <= c.SMS_PROVIDER_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid configuration: JOB_LEASE_MS (${c.JOB_LEASE_MS}) must be longer than SMS_PROVIDER_TIMEOUT_MS (${c.SMS_PROVIDER_TIMEOUT_MS}): a job still talking to the provider must not be claimed again.`,
    );
  }
  if (c.WEBHOOK_LEASE_MS <= c.WEBHOOK_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid configuration: WEBHOOK_LEASE_MS (${c.WEBHOOK_LEASE_MS}) must be longer than WEBHOOK_TIMEOUT_MS (${c.WEBHOOK_TIMEOUT_MS}): an attempt still waiting for its answer must not be made again.`,
    );
  }
  if (c.DATABASE_DIRECT_URL && !c.DATABASE_URL) {
    throw new ConfigError(
      'Invalid configuration: DATABASE_DIRECT_URL needs DATABASE_URL: it names PostgreSQL itself when DATABASE_URL is a connection pooler.',
    );
  }
  if (c.DATABASE_READ_URL && !c.DATABASE_URL) {
    throw new ConfigError('Invalid configuration: DATABASE_READ_URL needs DATABASE_URL: the replica is a copy of a PostgreSQL primary, which takes the writes.');
  }
  if (c.AUTH_JWKS_URL && (!c.AUTH_JWT_ISSUER || !c.AUTH_JWT_AUDIENCE)) {
    throw new ConfigError(
      'Invalid configuration: AUTH_JWKS_URL needs AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE: a token is accepted only from that issuer, for this audience.',
    );
  }
  return {
    env: c.NODE_ENV,
    host: c.HOST,
    port: c.PORT,
    databaseUrl: c.DATABASE_URL,
    databaseDirectUrl: c.DATABASE_DIRECT_URL,
    databasePoolerPrepared: c.DATABASE_POOLER_PREPARED,
    dataDir: c.DATA_DIR,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    readReplica: c.DATABASE_READ_URL
      ? { url: c.DATABASE_READ_URL, poolSize: c.DATABASE_READ_POOL_SIZE ?? c.DATABASE_POOL_SIZE, readYourWritesMs: c.READ_YOUR_WRITES_MS }
      : null,
    logLevel: c.LOG_LEVEL,
    publicBaseUrl: (c.PUBLIC_BASE_URL ?? `http://localhost:${c.PORT}`).replace(/\/+$/, ''),
    seedDemo: c.SEED_DEMO ?? !c.DATABASE_URL,
    authCacheTtlMs: c.AUTH_CACHE_TTL_MS,
    rateLimitPerMinute: c.RATE_LIMIT_PER_MINUTE,
    authFailuresPerMinute: c.AUTH_FAILURES_PER_MINUTE,
    maxRequestBodyBytes: c.MAX_REQUEST_BODY_BYTES,
    graphqlBatchLimit: c.GRAPHQL_BATCH_LIMIT,
    graphqlMaxDepth: c.GRAPHQL_MAX_DEPTH,
    graphqlMaxCost: c.GRAPHQL_MAX_COST,
    introspection: c.GRAPHQL_INTROSPECTION ?? c.NODE_ENV !== 'production',
    corsOrigins: parseOrigins(c.CORS_ORIGINS),
    graphiql: c.GRAPHIQL ?? c.NODE_ENV !== 'production',
    smsProvider: c.TWILIO_ACCOUNT_SID && c.TWILIO_AUTH_TOKEN ? 'twilio' : 'simulated',
    twilioAccountSid: c.TWILIO_ACCOUNT_SID,
    twilioAuthToken: c.TWILIO_AUTH_TOKEN,
    twilioApiBaseUrl: c.TWILIO_API_BASE_URL?.replace(/\/+$/, ''),
    twilioMaxConcurrentRequests: c.TWILIO_MAX_CONCURRENT_REQUESTS,
    twilioMaxQueuedRequests: c.TWILIO_MAX_QUEUED_REQUESTS,
    mmsCreditPrice: c.MMS_CREDIT_PRICE,
    smsProviderTimeoutMs: c.SMS_PROVIDER_TIMEOUT_MS,
    sendsInDoubtAfterMs: c.SENDS_IN_DOUBT_AFTER_MS,
    statusCallbackWaitMs: c.STATUS_CALLBACK_WAIT_MS,
    simulatedStatusDelayMs: c.SIMULATED_STATUS_DELAY_MS,
    lookupRetryMs: c.LOOKUP_RETRY_MS,
    jwt: c.AUTH_JWKS_URL ? { jwksUrl: c.AUTH_JWKS_URL, issuer: c.AUTH_JWT_ISSUER!, audience: c.AUTH_JWT_AUDIENCE! } : null,
    snoozeSweepMs: c.SNOOZE_SWEEP_MS,
    scheduledReplyMaxLatenessMs: c.SCHEDULED_REPLY_MAX_LATENESS_MS,
    jobs: { pollMs: c.JOB_POLL_MS, leaseMs: c.JOB_LEASE_MS, concurrency: c.JOB_CONCURRENCY },
    metricsToken: c.METRICS_TOKEN,
    shutdownDelayMs: c.SHUTDOWN_DELAY_MS,
    logFormat: c.LOG_FORMAT,
    tracing:
      !c.OTEL_SDK_DISABLED && (c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || c.OTEL_EXPORTER_OTLP_ENDPOINT)
        ? {
            tracesUrl: c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${c.OTEL_EXPORTER_OTLP_ENDPOINT!.replace(/\/+$/, '')}/v1/traces`,
            headers: otlpHeaders(c.OTEL_EXPORTER_OTLP_HEADERS),
            serviceName: c.OTEL_SERVICE_NAME,
          }
        : null,
    redisUrl: c.REDIS_URL,
    webhooks: {
      allowInsecure: c.WEBHOOK_ALLOW_INSECURE,
      allowPrivateNetworks: c.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
      retryScheduleMs: parseDurations(c.WEBHOOK_RETRY_SCHEDULE, 'WEBHOOK_RETRY_SCHEDULE'),
      leaseMs: c.WEBHOOK_LEASE_MS,
      timeoutMs: c.WEBHOOK_TIMEOUT_MS,
      pollMs: c.WEBHOOK_POLL_MS,
      concurrency: c.WEBHOOK_CONCURRENCY,
      endpointConcurrency: c.WEBHOOK_ENDPOINT_CONCURRENCY,
      disableAfterMs: c.WEBHOOK_DISABLE_AFTER_MS,
      yieldRequests: c.WEBHOOK_YIELD_REQUESTS,
    },
  };
}
