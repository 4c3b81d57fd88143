import { open } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig } from './config.js';
import { openDeps, type Deps } from './deps.js';
import { AppError } from './errors.js';
import { createLogger } from './logger.js';
import { operatorCaller } from './services/access.js';
import { issueApiToken, revokeApiToken } from './services/api-tokens.js';
import { recordAudit } from './services/audit.js';
import { addMember, requireMember } from './services/members.js';
import { createContact } from './services/contacts.js';
import { importContacts, type ImportError } from './services/contact-import.js';
import { receiveInbound } from './services/inbound.js';
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

const ROLES = ['owner', 'admin', 'agent'] as const;

program
  .command('user')
  .description('people')
  .command('create')
  .description('add a user (created when the email is new) to an organization with a role, and issue them a token')
  .requiredOption('--org <id>', 'organization id')
  .requiredOption('--email <email>', 'email (compared case-insensitively)')
  .option('--name <name>', 'name')
  .requiredOption('--role <role>', 'owner, admin or agent')
  .action((opts: { org: string; email: string; name?: string; role: string }) => {
    const role = ROLES.find((known) => known === opts.role.toLowerCase());
    if (!role) throw new AppError('BAD_USER_INPUT', '--role must be owner, admin or agent.');
    return run(
      async (deps) => {
        await requireOrganization(deps, opts.org);
        const member = await addMember(deps, operatorCaller(opts.org), { email: opts.email, name: opts.name, role });
        // The operator's token for a user acts in every organization the user belongs to.
        const { apiToken, tokenId } = await issueOperatorToken(deps, opts.org, member.user.id);
        return { userId: member.user.id, apiToken, tokenId };
      },
      (r) => `Added user ${r.userId}\nAPI token (shown once): ${r.apiToken}`,
    );
  });

/** A token made by the operator, audited as the operator's. */
async function issueOperatorToken(deps: Deps, organizationId: string, userId: string | null, name?: string) {
  return deps.db.transaction(async (tx) => {
    if (userId !== null) await requireMember(tx, organizationId, userId);
    const issued = await issueApiToken(tx, organizationId, { name, userId, anyOrganization: userId !== null });
    await recordAudit(tx, operatorCaller(organizationId), {
      action: 'token.created',
      objectType: 'api_token',
      objectId: issued.tokenId,
      data: { userId, name: name ?? null },
    });
    return issued;
  });
}

const token = program.command('token').description('API tokens');
token
  .command('create')
  .description("issue another API token for an organization (an integration token), or with --user a member's token")
  .requiredOption('--org <id>', 'organization id')
  .option('--user <userId>', "a member's token: acts as that user, in every organization they belong to")
  .option('--name <name>', 'a label for the token')
  .action((opts: { org: string; user?: string; name?: string }) =>
    run(
      async (deps) => {
        await requireOrganization(deps, opts.org);
        const { apiToken, tokenId } = await issueOperatorToken(deps, opts.org, opts.user ?? null, opts.name);
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
        // Running servers on the same database drop the token from their caches when this commits.
        const revoked = await revokeApiToken(deps.db, opts.token);
        if (!revoked) throw new AppError('NOT_FOUND', 'No active token matches.');
        return { revoked: true, tokenId: revoked.tokenId };
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
  .option('--messaging-service-sid <MG…>', 'send through this Twilio Messaging Service (A2P 10DLC) instead of From')
  .action((opts: { org: string; phone: string; default?: boolean; messagingServiceSid?: string }) =>
    run(
      async (deps) => {
        await requireOrganization(deps, opts.org);
        return addPhoneNumber(deps.db, opts.org, { phoneNumber: opts.phone, isDefault: opts.default, messagingServiceSid: opts.messagingServiceSid });
      },
      (r) => `Added ${r.phoneNumber} as ${r.phoneNumberId}${r.messagingServiceSid ? ` (Messaging Service ${r.messagingServiceSid})` : ''}`,
    ),
  );

const contact = program.command('contact').description('contacts');
contact
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
contact
  .command('import')
  .description('import contacts from a CSV file: phone,firstName,lastName,tags (";"-separated), other columns as custom fields')
  .requiredOption('--org <id>', 'organization id')
  .requiredOption('--file <path>', 'the CSV file (UTF-8, header on line 1)')
  .action((opts: { org: string; file: string }) =>
    run(
      async (deps) => {
        await requireOrganization(deps, opts.org);
        const file = await open(opts.file).catch((error: NodeJS.ErrnoException) => {
          throw new AppError('BAD_USER_INPUT', `Cannot read ${opts.file}: ${error.code ?? error.message}.`);
        });
        try {
          if (!(await file.stat()).isFile()) throw new AppError('BAD_USER_INPUT', `Cannot read ${opts.file}: not a file.`);
          return await importContacts(deps.db, opts.org, file.createReadStream({ autoClose: false }));
        } finally {
          await file.close();
        }
      },
      (r) => {
        const errors = r.errors as ImportError[];
        return [
          `Imported ${opts.file}: ${r.created} created, ${r.updated} updated, ${r.skipped} skipped.`,
          ...errors.slice(0, 50).map((e) => `  line ${e.line}: ${e.error}`),
          ...(errors.length > 50 ? [`  … and ${errors.length - 50} more (--json lists them all)`] : []),
        ].join('\n');
      },
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
        // Loaded here: faker's data costs every other command half a second.
        const { createDemoOrganization } = await import('./services/demo.js');
        const demo = await createDemoOrganization(deps.db, opts);
        return {
          organizationId: demo.organizationId,
          apiToken: demo.apiToken,
          integrationToken: demo.integrationToken,
          phoneNumber: demo.phoneNumber,
          contacts: demo.contacts,
          messages: demo.messages,
          team: demo.team,
        };
      },
      (r) =>
        `Demo organization ${r.organizationId} (${r.contacts} contacts, ${r.messages} messages, sending number ${r.phoneNumber})\n` +
        `API token of the OWNER (shown once): ${r.apiToken}\nIntegration token (shown once): ${r.integrationToken}`,
    ),
  );

program
  .command('inbound')
  .description('inject an inbound message, as if the contact had texted (demos; goes through the same path as Twilio webhooks)')
  .requiredOption('--org <id>', 'organization id')
  .requiredOption('--from <number>', "the sender's phone number, any standard format")
  .requiredOption('--body <text>', 'message text (STOP, START, HELP ... act as keywords)')
  .option('--to <number>', "the organization's number it was sent to (default: its default number)")
  .option('--media <url>', 'a media URL (repeat for several)', (url: string, all: string[]) => [...all, url], [] as string[])
  .action((opts: { org: string; from: string; body: string; to?: string; media: string[] }) =>
    run(
      async (deps) => {
        const outcome = await receiveInbound(deps, {
          organizationId: opts.org,
          to: opts.to,
          from: opts.from,
          body: opts.body,
          mediaUrls: opts.media,
          provider: 'cli',
        });
        if (outcome.outcome !== 'stored') throw new AppError('BAD_USER_INPUT', 'The message was not stored.');
        const { message, contact, conversation } = outcome;
        return {
          messageId: message.id,
          conversationId: conversation.id,
          phoneNumber: conversation.phoneNumber,
          contactId: contact.id,
          isOptedIn: contact.isOptedIn,
          category: message.category,
          sentiment: message.sentiment,
          sentimentScore: message.sentimentScore,
          requiresResponse: message.requiresResponse,
          optOutDetected: message.optOutDetected,
          unreadCount: conversation.unreadCount,
        };
      },
      (r) =>
        `Stored inbound message ${r.messageId} from ${r.phoneNumber} (${r.category}, ${r.sentiment} ${r.sentimentScore}` +
        `${r.optOutDetected ? ', opted out' : ''}); ${r.unreadCount} unread`,
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

