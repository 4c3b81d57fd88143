import { createHash, randomBytes } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { apiTokens } from '../db/tables.js';
import { AppError } from '../errors.js';
import { isUuid } from './cursors.js';

export type Caller = { organizationId: string; tokenId: string };

const TOKEN_PREFIX = 'cgw_';

export function generateApiToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** Tokens are stored as SHA-256 hashes only; the token carries 256 random bits, so no salt or KDF is needed. */
export function hashApiToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export async function issueApiToken(db: DbOrTx, organizationId: string, name?: string) {
  const apiToken = generateApiToken();
  const [row] = await db
    .insert(apiTokens)
    .values({ organizationId, tokenHash: hashApiToken(apiToken), name: name ?? null })
    .returning({ id: apiTokens.id });
  return { apiToken, tokenId: row!.id };
}

type CachedToken = { organizationId: string; tokenId: string; expiresAt: number };

/**
 * Resolves `Authorization: Bearer <token>` and `x-organization-id` to a caller. Verified tokens are
 * cached for a short time so an ordinary request costs no auth query.
 */
export class Authenticator {
  private readonly cache = new Map<string, CachedToken>();

  constructor(
    private readonly db: DbOrTx,
    private readonly ttlMs: number,
  ) {}

  async authenticate(authorization: string | null | undefined, organizationHeader: string | null | undefined): Promise<Caller> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match) {
      throw new AppError('UNAUTHENTICATED', 'Missing bearer token: send "Authorization: Bearer <token>".');
    }
    const token = await this.lookup(hashApiToken(match[1]!));
    if (!token) throw new AppError('UNAUTHENTICATED', 'Invalid or revoked API token.');

    const requested = organizationHeader?.trim();
    // Same answer whether or not the requested organization exists: nothing about it is revealed.
    if (requested && (!isUuid(requested) || requested.toLowerCase() !== token.organizationId)) {
      throw new AppError('FORBIDDEN', 'This token does not grant access to the requested organization.');
    }
    return { organizationId: token.organizationId, tokenId: token.tokenId };
  }

  /** Drops cached verifications, e.g. after a token was revoked. */
  forget(): void {
    this.cache.clear();
  }

  private async lookup(tokenHash: string): Promise<CachedToken | null> {
    const now = Date.now();
    const cached = this.cache.get(tokenHash);
    if (cached && cached.expiresAt > now) return cached;
    const [row] = await this.db
      .select({ organizationId: apiTokens.organizationId, tokenId: apiTokens.id })
      .from(apiTokens)
      .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)))
      .limit(1);
    if (!row) {
      this.cache.delete(tokenHash);
      return null;
    }
    const entry = { ...row, expiresAt: now + this.ttlMs };
    if (this.ttlMs > 0) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(tokenHash, entry);
    }
    return entry;
  }
}
