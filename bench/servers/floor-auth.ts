// The floors' auth, the same contract as the gateway's Authenticator: a bearer token hashed with SHA-256,
// looked up once and cached for 30 s; an x-organization-id header, when given, must name the token's organization.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Sql } from 'postgres';

/** Returns authenticate(req): the caller's organization id, or null (401). `counted` runs once per statement sent. */
export function floorAuthenticator(sql: Sql, counted: () => void) {
  const tokens = new Map<string, { organizationId: string; expiresAt: number }>();
  return async function authenticate(req: IncomingMessage): Promise<string | null> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!match) return null;
    const hash = createHash('sha256').update(match[1]!).digest('hex');
    let token = tokens.get(hash);
    if (!token || token.expiresAt < Date.now()) {
      counted();
      const [row] = await sql`select organization_id from api_tokens where token_hash = ${hash} and revoked_at is null limit 1`;
      if (!row) return null;
      token = { organizationId: row.organization_id as string, expiresAt: Date.now() + 30_000 };
      tokens.set(hash, token);
    }
    const requested = req.headers['x-organization-id'];
    if (typeof requested === 'string' && requested.trim() && requested.trim().toLowerCase() !== token.organizationId) return null;
    return token.organizationId;
  };
}
