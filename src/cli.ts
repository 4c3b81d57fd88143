import { Command, InvalidArgumentError } from 'commander';
import { and, eq, isNull } from 'drizzle-orm';
import { ConfigError, loadConfig } from './config.js';
import type { Deps } from './context.js';
import { apiTokens } from './db/tables.js';
import { openDeps } from './deps.js';
import { AppError } from './errors.js';
import { createLogger } from './logger.js';
import { hashApiToken, issueApiToken } from './services/auth.js';
import { createContact } from './services/contacts.js';
import { createDemoOrganization } from './services/demo.js';
import { addPhoneNumber, createOrganization, organizationExists } from './services/organizations.js';

// Operator commands, with the server's configuration (DATABASE_URL or DATA_DIR). With --json, stdout
// holds only the result as JSON; logs always go to stderr. Use `npm run -s cli -- ...` to keep npm's
// own banner off stdout too.

const program = new Command('cli').description('Conversations gateway operator commands').option('--json', 'print the result as JSON only');

const integer = (name: string) => (value: string) => {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError(`${name} must be an integer.`);
  return Number(value);
};

async function run(action: (deps: Deps) => Promise<Record<string, unknown>>, describe: (result: Record<string, unknown>) => string) {
  const config = loadConfig();
  const logger = createLogger({ logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel }, 2);
  const deps = await openDeps(config, logger);
  try {
    const result = await action(deps);
    if (program.opts().json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else console.log(describe(result));
  } finally {
    await deps.close();
  }
}

async function requireOrganization(deps: Deps, organizationId: string) {
  if (!(await organizationExists(deps.db, organizationId))) {
    throw new AppError('NOT_FOUND', `No organization with id ${organizationId}.`);
  }
}

const org = program.command('org').description('organizations');
org
  .command('create')
  .description('create an organization and its first API token')
  .requiredOption('--name <name>', 'organization name')
  .option('--credits <credits>', 'starting credit balance', integer('--credits'), 0)
  .option('--timezone <zone>', 'IANA time zone', 'America/New_York')
  .action((opts: { name: string; credits: number; timezone: string }) =>
    run(
      (deps) => createOrganization(deps.db, opts),
      (r) => `Created organization ${r.organizationId}\nAPI token (shown once): ${r.apiToken}`,
    ),
  );

const token = program.command('token').description('API tokens');
token
  .command('create')
  .description('issue another API token for an organization')
  .requiredOption('--org <id>', 'organization id')
  .option('--name <name>', 'a label for the token')
  .action((opts: { org: string; name?: string }) =>
    run(
      async (deps) => {
        await requireOrganization(deps, opts.org);
        const { apiToken, tokenId } = await issueApiToken(deps.db, opts.org, opts.name);
        return { apiToken, tokenId };
      },
      (r) => `API token (shown once): ${r.apiToken}`,
    ),
  );
token
  .command('revoke')
  .description('revoke an API token (give the token itself)')
  .requiredOption('--token <token>', 'the API token to revoke')
  .action((opts: { token: string }) =>
    run(
      async (deps) => {
        const rows = await deps.db
          .update(apiTokens)
          .set({ revokedAt: new Date() })
          .where(and(eq(apiTokens.tokenHash, hashApiToken(opts.token)), isNull(apiTokens.revokedAt)))
          .returning({ id: apiTokens.id });
        if (rows.length === 0) throw new AppError('NOT_FOUND', 'No active token matches.');
        return { revoked: true, tokenId: rows[0]!.id };
      },
      (r) => `Revoked token ${r.tokenId}`,
    ),
  );

program
  .command('number')
  .description('sending phone numbers')
  .command('add')
  .description('add a sending number to an organization')
  .requiredOption('--org <id>', 'organization id')
  .requiredOption('--phone <number>', 'phone number, any standard format')
  .option('--default', 'make it the default sending number')
  .action((opts: { org: string; phone: string; default?: boolean }) =>
    run(
      async (deps) => {
        await requireOrganization(deps, opts.org);
        const { phoneNumberId, phoneNumber } = await addPhoneNumber(deps.db, opts.org, { phoneNumber: opts.phone, isDefault: opts.default });
        return { phoneNumberId, phoneNumber };
      },
      (r) => `Added ${r.phoneNumber} as ${r.phoneNumberId}`,
    ),
  );

program
  .command('contact')
  .description('contacts')
  .command('add')
  .description('add a contact to an organization')
  .requiredOption('--org <id>', 'organization id')
  .requiredOption('--phone <number>', 'phone number, any standard format')
  .option('--first <name>', 'first name')
  .option('--last <name>', 'last name')
  .option('--opted-out', 'the contact has opted out')
  .option('--textable <state>', 'yes, no or pending', 'yes')
  .action((opts: { org: string; phone: string; first?: string; last?: string; optedOut?: boolean; textable: string }) =>
    run(
      async (deps) => {
        const textable = { yes: true, no: false, pending: null }[opts.textable];
        if (textable === undefined) throw new AppError('BAD_USER_INPUT', '--textable must be yes, no or pending.');
        await requireOrganization(deps, opts.org);
        const contact = await createContact(deps.db, opts.org, {
          phoneNumber: opts.phone,
          firstName: opts.first,
          lastName: opts.last,
          isOptedIn: !opts.optedOut,
          isTextable: textable,
        });
        return { contactId: contact.id, phoneNumber: contact.phoneNumber };
      },
      (r) => `Added contact ${r.phoneNumber} as ${r.contactId}`,
    ),
  );

program
  .command('demo')
  .description('create a new demo organization with a deterministic inbox')
  .option('--contacts <n>', 'number of contacts', integer('--contacts'), 25)
  .option('--messages <n>', 'approximate number of messages', integer('--messages'), 400)
  .option('--seed <n>', 'random seed', integer('--seed'), 42)
  .action((opts: { contacts: number; messages: number; seed: number }) =>
    run(
      async (deps) => {
        const demo = await createDemoOrganization(deps.db, opts);
        return { organizationId: demo.organizationId, apiToken: demo.apiToken, phoneNumber: demo.phoneNumber, contacts: demo.contacts, messages: demo.messages };
      },
      (r) => `Demo organization ${r.organizationId} (${r.contacts} contacts, ${r.messages} messages, sending number ${r.phoneNumber})\nAPI token (shown once): ${r.apiToken}`,
    ),
  );

program
  .command('db')
  .description('database')
  .command('migrate')
  .description('apply migrations (also done at every start)')
  .action(() => run(async () => ({ migrated: true }), () => 'Migrations applied.'));

program.parseAsync().catch((error: unknown) => {
  const json = program.opts().json;
  if (error instanceof AppError || error instanceof ConfigError) {
    const code = error instanceof AppError ? error.code : 'INVALID_CONFIG';
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message: error.message } })}\n`);
    console.error(`error: ${error.message}`);
  } else {
    console.error(error);
  }
  process.exitCode = 1;
});

