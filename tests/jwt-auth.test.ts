import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwtVerifier } from '../src/services/jwt.js';
import { createTestApp, type TestApp, type TestOrg } from './helpers/app.js';
import { connectWs, subscribeWs, until } from './helpers/realtime.js';

// Bearer JWTs from an identity provider: a local JWKS server made with jose publishes the keys, the
// gateway verifies with jose (signature, exp, nbf, issuer, audience) and finds the user by `email`.

const ISSUER = 'https://idp.example.com/';
const AUDIENCE = 'conversations-gateway';

type Key = { kid: string; privateKey: CryptoKey; jwk: JWK };
async function newKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

/** The identity provider's key set, served over HTTP; `fetches` counts how often it was read. */
async function startJwks(keys: Key[]) {
  const state = { keys, fetches: 0 };
  const server: Server = createServer((req, res) => {
    state.fetches += 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: state.keys.map((key) => key.jwk) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  return { state, url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function sign(key: Key, claims: Record<string, unknown>, options: { issuer?: string; audience?: string; expiresIn?: string | number; notBefore?: string | number } = {}) {
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid })
    .setIssuedAt()
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setExpirationTime(options.expiresIn ?? '10m');
  if (options.notBefore !== undefined) jwt = jwt.setNotBefore(options.notBefore);
  return jwt.sign(key.privateKey);
}

let t: TestApp;
let jwks: Awaited<ReturnType<typeof startJwks>>;
let key: Key;
let org: TestOrg;
const bearer = (token: string, organizationId?: string) => ({
  headers: { authorization: `Bearer ${token}`, ...(organizationId ? { 'x-organization-id': organizationId } : {}) },
});
const VIEWER = `{ viewer { role user { email } } }`;

beforeAll(async () => {
  key = await newKey('key-1');
  jwks = await startJwks([key]);
  t = await createTestApp({ AUTH_JWKS_URL: jwks.url, AUTH_JWT_ISSUER: ISSUER, AUTH_JWT_AUDIENCE: AUDIENCE });
  org = await t.createOrg('Identity provider org');
  await t.addMember(org, { email: 'Jo.Member@Example.com', name: 'Jo', role: 'admin' });
}, 60_000);
afterAll(async () => {
  await t?.close();
  await jwks?.close();
});

describe('identity-provider tokens', () => {
  it('name a member by their email (any case), on GraphQL, REST and WebSocket, with the keys fetched once', async () => {
    const token = await sign(key, { sub: 'idp|1', email: 'jo.member@example.com', email_verified: true });
    const res = await t.graphql(VIEWER, {}, bearer(token));
    expect(res.status).toBe(200);
    expect(res.body.data.viewer).toEqual({ role: 'ADMIN', user: { email: 'Jo.Member@Example.com' } });

    const rest = await fetch(`${t.url}/api/conversations`, bearer(token, org.organizationId));
    expect(rest.status).toBe(200);

    const socket = connectWs(t.url, { authorization: `Bearer ${token}` });
    const live = subscribeWs(socket, `subscription { conversationUpdated { id } }`);
    await until(() => t.deps.events.subscriberCount('conversationUpdated', org.organizationId) > 0, 10_000, 'the subscription');
    live.unsubscribe();
    await socket.client.dispose();

    for (let i = 0; i < 3; i += 1) {
      const again = await sign(key, { email: 'jo.member@example.com' });
      expect((await t.graphql(VIEWER, {}, bearer(again))).status).toBe(200);
    }
    expect(jwks.state.fetches).toBe(1);
  });

  it('refuses expired, not-yet-valid, foreign, forged and unknown-user tokens with 401 UNAUTHENTICATED', async () => {
    const other = await newKey('key-1'); // the same kid, another key: a forgery
    const now = Math.floor(Date.now() / 1000);
    const refused = [
      await sign(key, { email: 'jo.member@example.com' }, { expiresIn: now - 60 }),
      await sign(key, { email: 'jo.member@example.com' }, { notBefore: now + 3600 }),
      await sign(key, { email: 'jo.member@example.com' }, { audience: 'someone-else' }),
      await sign(key, { email: 'jo.member@example.com' }, { issuer: 'https://evil.example.com/' }),
      await sign(other, { email: 'jo.member@example.com' }),
      await sign(key, { email: 'nobody@example.com' }),
      await sign(key, { sub: 'no-email' }),
      await sign(key, { email: 'jo.member@example.com', email_verified: false }),
      'eyJhbGciOiJub25lIn0.eyJlbWFpbCI6ImpvLm1lbWJlckBleGFtcGxlLmNvbSJ9.x',
    ];
    for (const token of refused) {
      const res = await t.graphql(VIEWER, {}, bearer(token));
      expect(res.status).toBe(401);
      expect(res.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
  });

  it('a person in several organizations names one with x-organization-id', async () => {
    const second = await t.createOrg('Second org');
    await t.addMember(second, { email: 'jo.member@example.com', role: 'agent' });
    const token = await sign(key, { email: 'jo.member@example.com' });
    const missing = await t.graphql(VIEWER, {}, bearer(token));
    expect(missing.body.errors?.[0]?.extensions?.errorCode).toBe('ORGANIZATION_REQUIRED');
    expect((await t.graphql(VIEWER, {}, bearer(token, second.organizationId))).body.data.viewer.role).toBe('AGENT');
    expect((await t.graphql(VIEWER, {}, bearer(token, org.organizationId))).body.data.viewer.role).toBe('ADMIN');
  });
});

describe('JwtVerifier', () => {
  it('fetches the keys again for an unknown kid (the provider rotated its keys)', async () => {
    const first = await newKey('rotating-1');
    const server = await startJwks([first]);
    try {
      const verifier = new JwtVerifier({ jwksUrl: server.url, issuer: ISSUER, audience: AUDIENCE, cooldownMs: 0 });
      expect(await verifier.verify(await sign(first, { email: 'a@example.com' }))).toMatchObject({ email: 'a@example.com' });
      expect(server.state.fetches).toBe(1);
      const next = await newKey('rotating-2');
      server.state.keys = [first, next];
      expect(await verifier.verify(await sign(next, { email: 'b@example.com' }))).toMatchObject({ email: 'b@example.com' });
      expect(server.state.fetches).toBe(2);
      // A kid nobody publishes: refused after one more look.
      const stranger = await newKey('never-published');
      await expect(verifier.verify(await sign(stranger, { email: 'c@example.com' }))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    } finally {
      await server.close();
    }
  });

  it('answers SERVICE_UNAVAILABLE when the provider cannot be reached (a retry may work), not 401', async () => {
    const server = await startJwks([key]);
    const url = server.url;
    await server.close();
    const verifier = new JwtVerifier({ jwksUrl: url, issuer: ISSUER, audience: AUDIENCE });
    await expect(verifier.verify(await sign(key, { email: 'a@example.com' }))).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
  });
});
