import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { openDeps, type Deps } from './deps.js';
import { createLogger } from './logger.js';
import { organizations } from './db/tables.js';
import { organizationExists } from './services/organizations.js';

/** `owner`: who the token acts as (demos seeded before the team existed saved an integration token, and no owner). */
type DemoCredentials = { organizationId: string; apiToken: string; owner?: string };

/**
 * On a fresh store, seeds the demo inbox once. Its token is kept in DATA_DIR/demo-credentials.json
 * (a local demo convenience; the database itself holds only the token's hash) so restarts can show it.
 */
async function ensureDemo(config: Config, deps: Deps): Promise<DemoCredentials | null> {
  const file = join(resolve(config.dataDir), 'demo-credentials.json');
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as DemoCredentials;
    if (await organizationExists(deps.db, saved.organizationId)) return saved;
  }
  const any = await deps.db.select({ id: organizations.id }).from(organizations).limit(1);
  if (any.length > 0) return null;
  const { createDemoOrganization } = await import('./services/demo.js');
  const demo = await createDemoOrganization(deps.db);
  deps.logger.info({ organizationId: demo.organizationId, messages: demo.messages }, 'seeded the demo inbox');
  const owner = demo.team.find((member) => member.role === 'owner')!;
  const credentials = { organizationId: demo.organizationId, apiToken: demo.apiToken, owner: `${owner.name} <${owner.email}>, OWNER` };
  writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  return credentials;
}

async function main() {
  const config = loadConfig();
  const logger = createLogger(config);
  const deps = await openDeps(config, logger);
  const demo = config.seedDemo ? await ensureDemo(config, deps) : null;
  const headers = demo ? { Authorization: `Bearer ${demo.apiToken}`, 'x-organization-id': demo.organizationId } : undefined;
  const development = config.env !== 'production';
  const app = buildApp(deps, {
    graphiqlHeaders: development ? headers : undefined,
    // The inbox page opens signed in as the demo owner, only outside production and only for the demo seeded here.
    webDemo: development && demo ? { organizationId: demo.organizationId, apiToken: demo.apiToken } : null,
  });
  const url = await app.start();
  logger.info({ url, database: deps.database.kind, smsProvider: deps.sms.name }, 'listening');
  // Contacts still pending a textability lookup (retries do not survive a restart).
  void deps.textability.resumePending().catch((error) => logger.warn({ err: error }, 'could not resume textability lookups'));
  // Replies a stopped process left with the provider, unanswered (and those any instance leaves from now on).
  deps.sendsInDoubt.start();
  // Snoozes that end (and those that ended while no instance ran).
  deps.snoozes.start();
  // Scheduled replies that are due (and those that fell due while no instance ran).
  deps.jobs.start();
  deps.webhooks.start();

  const lines = [``, `  Conversations gateway on ${deps.database.kind === 'pglite' ? `embedded PGlite (${resolve(config.dataDir)})` : 'PostgreSQL'}`];
  lines.push(`  Inbox:           ${url}/`, `  GraphiQL:        ${url}/graphql`);
  if (demo) {
    lines.push(`  Organization id: ${demo.organizationId}`, `  API token:       ${demo.apiToken}`);
    if (demo.owner) lines.push(`  Signed in as:    ${demo.owner}`);
    lines.push(``, `  curl -s ${url}/graphql -H 'content-type: application/json' \\`);
    lines.push(`    -H 'authorization: Bearer ${demo.apiToken}' -H 'x-organization-id: ${demo.organizationId}' \\`);
    lines.push(`    -d '{"query":"{ conversations(first: 5) { edges { node { phoneNumber unreadCount lastMessage { body } } } } }"}'`);
  }
  console.log(`${lines.join('\n')}\n`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const started = performance.now();
    await app.stop();
    logger.info({ tookMs: Math.round(performance.now() - started) }, 'stopped serving');
    await deps.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error) => {
  if (error instanceof ConfigError) console.error(error.message);
  else console.error(error);
  process.exit(1);
});
