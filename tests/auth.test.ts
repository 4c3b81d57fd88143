import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokens } from '../src/db/tables.js';
import { eq } from 'drizzle-orm';
import { Authenticator, hashApiToken } from '../src/services/auth.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';

let t: TestApp;
let acme: TestOrg;
let other: TestOrg;

beforeAll(async () => {
  t = await createTestApp();
  acme = await t.createOrg('Acme');
  other = await t.createOrg('Other');
});
afterAll(() => t.close());

const query = '{ organization { name } }';

describe('auth', () => {
  it('answers a valid token and organization', async () => {
    const res = await t.graphql(query, {}, acme);
    expect(res.status).toBe(200);
    expect(res.body.data.organization.name).toBe('Acme');
  });

  it('uses the token organization when x-organization-id is omitted', async () => {
    const res = await t.graphql(query, {}, { headers: { authorization: `Bearer ${other.apiToken}` } });
    expect(res.body.data.organization.name).toBe('Other');
  });

  it('refuses a missing token with 401 UNAUTHENTICATED', async () => {
    const res = await t.graphql(query, {}, { headers: { 'x-organization-id': acme.organizationId } });
    expect(res.status).toBe(401);
    expect(res.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(res.body.data).toBeUndefined();
  });

  it('refuses an unknown token and a malformed header with 401', async () => {
    for (const authorization of ['Bearer cgw_not-a-real-token', 'Basic abc', 'Bearer']) {
      const res = await t.graphql(query, {}, { headers: { authorization, 'x-organization-id': acme.organizationId } });
      expect(res.status).toBe(401);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
  });

  it('refuses a token used with another organization with 403, revealing nothing about it', async () => {
    const existing = await t.graphql(query, {}, { headers: { authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': other.organizationId } });
    const missing = await t.graphql(query, {}, { headers: { authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': randomUUID() } });
    const garbage = await t.graphql(query, {}, { headers: { authorization: `Bearer ${acme.apiToken}`, 'x-organization-id': 'nope' } });
    for (const res of [existing, missing, garbage]) {
      expect(res.status).toBe(403);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    }
    // Identical answers whether the organization exists or not.
    expect(existing.body).toEqual(missing.body);
  });

  it('stores tokens only as SHA-256 hashes', async () => {
    const rows = await t.db.select().from(apiTokens);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const row of rows) {
      expect(row.tokenHash).toMatch(/^[0-9a-f]{64}$/);
      expect([acme.apiToken, other.apiToken]).not.toContain(row.tokenHash);
    }
    expect(rows.map((r) => r.tokenHash)).toContain(hashApiToken(acme.apiToken));
  });

  it('serves GET /health', async () => {
    const res = await fetch(`${t.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await fetch(`${t.url}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ success: false, code: 'NOT_FOUND' });
  });
});

describe('a revocation heard while the token is being looked up', () => {
  it('is not undone by the lookup: the token is refused and not cached', async () => {
    const org = await t.createOrg('Racing');
    const authenticator = new Authenticator(t.db, 60_000);
    // The notification source is PostgreSQL's LISTEN in the app; here we deliver the notice ourselves,
    // at the one moment that matters: after the lookup's SELECT left, before its answer came back.
    let notify: (tokenId: string) => void = () => {};
    await authenticator.watchRevocations({ listen: async (_channel, onMessage) => ((notify = onMessage), async () => {}) });
    const [token] = await t.db.select({ id: apiTokens.id }).from(apiTokens).where(eq(apiTokens.tokenHash, hashApiToken(org.apiToken)));

    const lookup = authenticator.authenticate(`Bearer ${org.apiToken}`, org.organizationId);
    notify(token!.id);
    await expect(lookup).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(authenticator.isVerified(`Bearer ${org.apiToken}`)).toBe(false);

    // A notice about another token does not refuse this one (the row is still active in the database).
    const second = authenticator.authenticate(`Bearer ${org.apiToken}`, org.organizationId);
    notify(randomUUID());
    await expect(second).resolves.toMatchObject({ organizationId: org.organizationId });
  });
});
