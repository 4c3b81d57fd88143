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
  DATA_DIR: z.string().default('./.data'),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Base URL the outside world uses to reach this service (short links, Twilio callbacks). */
  PUBLIC_BASE_URL: z.string().url().optional(),
  /** Seed a demo organization on the first start of an empty store (default: on for embedded storage). */
  SEED_DEMO: booleanString.optional(),
  /** How long a verified API token stays cached in memory, so a request costs no auth query. */
  AUTH_CACHE_TTL_MS: z.coerce.number().int().min(0).default(30_000),
  /** GraphiQL in the browser at /graphql (default: on outside production). */
  GRAPHIQL: booleanString.optional(),
});

export type Config = {
  env: 'development' | 'production' | 'test';
  host: string;
  port: number;
  databaseUrl: string | undefined;
  dataDir: string;
  databasePoolSize: number;
  logLevel: z.infer<typeof configSchema>['LOG_LEVEL'];
  publicBaseUrl: string;
  seedDemo: boolean;
  authCacheTtlMs: number;
  graphiql: boolean;
};

export class ConfigError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Treat empty variables as unset, as shells and .env files often produce them.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new ConfigError(`Invalid configuration: ${problems}`);
  }
  const c = parsed.data;
  return {
    env: c.NODE_ENV,
    host: c.HOST,
    port: c.PORT,
    databaseUrl: c.DATABASE_URL,
    dataDir: c.DATA_DIR,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    logLevel: c.LOG_LEVEL,
    publicBaseUrl: (c.PUBLIC_BASE_URL ?? `http://localhost:${c.PORT}`).replace(/\/+$/, ''),
    seedDemo: c.SEED_DEMO ?? !c.DATABASE_URL,
    authCacheTtlMs: c.AUTH_CACHE_TTL_MS,
    graphiql: c.GRAPHIQL ?? c.NODE_ENV !== 'production',
  };
}
