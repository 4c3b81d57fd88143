import pino from 'pino';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Database } from '../../src/db/client.js';
import { assembleDeps, closeDeps, type Deps } from '../../src/deps.js';
import { appendMessage, type NewMessage } from '../../src/services/messages.js';
import { addPhoneNumber, createOrganization } from '../../src/services/organizations.js';
import { createContact, type NewContact } from '../../src/services/contacts.js';
import { operatorCaller } from '../../src/services/access.js';
import { issueApiToken } from '../../src/services/api-tokens.js';
import { addMember } from '../../src/services/members.js';
import type { MemberRoleValue } from '../../src/db/tables.js';
import { normalizePhone } from '../../src/services/phone.js';
import { createTestDatabase } from './database.js';

export type TestOrg = { organizationId: string; apiToken: string };
/** A member of a test organization, with a token that acts as them (in `org`; `anyOrganization`: in all theirs). */
export type TestMember = TestOrg & { userId: string; email: string };

export type GraphqlResponse<T = any> = {
  status: number;
  body: { data?: T; errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, any> }> };
};

/**
 * The whole app on a real database and a real port, isolated per test file: its own database,
 * its own HTTP server. `env` overrides configuration as the environment would.
 */
export async function createTestApp(env: Record<string, string> = {}) {
  const database: Database = await createTestDatabase();
  const config: Config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    PORT: '0',
    HOST: '127.0.0.1',
    // Status callbacks for messages never stored (most tests') answer quickly; the race test sets its own.
    STATUS_CALLBACK_WAIT_MS: '250',
    ...env,
  });
  const deps: Deps = assembleDeps(config, database, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }));
  const app: App = buildApp(deps);
  const url = await app.start(0, '127.0.0.1');

  async function graphql<T = any>(
    query: string,
    variables: Record<string, unknown> = {},
    auth?: TestOrg | { headers: Record<string, string> },
  ): Promise<GraphqlResponse<T>> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (auth && 'headers' in auth) Object.assign(headers, auth.headers);
    else if (auth) Object.assign(headers, { authorization: `Bearer ${auth.apiToken}`, 'x-organization-id': auth.organizationId });
    const response = await fetch(`${url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    return { status: response.status, body: (await response.json()) as GraphqlResponse<T>['body'] };
  }

  return {
    url,
    deps,
    database,
    db: database.db,
    app,
    graphql,
    /** An organization with an API token, optionally a default sending number. */
    async createOrg(name = 'Test org', options: { credits?: number; timezone?: string; phoneNumber?: string } = {}): Promise<TestOrg> {
      const org = await createOrganization(database.db, { name, credits: options.credits, timezone: options.timezone });
      if (options.phoneNumber) await addPhoneNumber(database.db, org.organizationId, { phoneNumber: options.phoneNumber, isDefault: true });
      return org;
    },
    createContact: (org: TestOrg, contact: NewContact) => createContact(database.db, org.organizationId, contact),
    /** Adds a member as the operator's CLI does, with a token that acts as them. */
    async addMember(
      org: TestOrg,
      member: { email: string; name?: string; role: MemberRoleValue },
      options: { anyOrganization?: boolean } = {},
    ): Promise<TestMember> {
      const added = await addMember({ db: database.db }, operatorCaller(org.organizationId), member);
      const { apiToken } = await issueApiToken(database.db, org.organizationId, {
        userId: added.user.id,
        anyOrganization: options.anyOrganization ?? false,
      });
      return { organizationId: org.organizationId, apiToken, userId: added.user.id, email: added.user.email };
    },
    /** Stores a message through the same data-layer call the send and inbound paths use. */
    async addMessage(org: TestOrg, message: Omit<NewMessage, 'phoneNumber'> & { phoneNumber: string }) {
      return database.db.transaction((tx) =>
        appendMessage(tx, org.organizationId, { ...message, phoneNumber: normalizePhone(message.phoneNumber) }),
      );
    },
    async close() {
      await app.stop(1_000);
      await closeDeps(deps);
    },
  };
}

export type TestApp = Awaited<ReturnType<typeof createTestApp>>;
