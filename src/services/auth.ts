import { hash, randomBytes } from 'node:crypto';
import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Database, Db, DbOrTx } from '../db/client.js';
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
  // One-shot (Node >= 20.12): every request hashes its token twice (rate limit key, auth cache key).
  return hash('sha256', token, 'hex');
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(authorization: string | null | undefined): string | null {
  return /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1] ?? null;
}

export async function issueApiToken(db: DbOrTx, organizationId: string, name?: string) {
  const apiToken = generateApiToken();
  const [row] = await db
    .insert(apiTokens)
    .values({ organizationId, tokenHash: hashApiToken(apiToken), name: name ?? null })
    .returning({ id: apiTokens.id });
  return { apiToken, tokenId: row!.id };
}

/** NOTIFY channel carrying the id of each revoked token, so every instance drops it from its cache at once. */
export const TOKEN_REVOKED_CHANNEL = 'api_token_revoked';

/**
 * Revokes a token (given in clear, as only its hash is stored). The NOTIFY commits with the UPDATE, so
 * every gateway instance on this database forgets the token as soon as the revocation is visible.
 */
export async function revokeApiToken(db: Db, apiToken: string): Promise<{ tokenId: string } | null> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(apiTokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiTokens.tokenHash, hashApiToken(apiToken)), isNull(apiTokens.revokedAt)))
      .returning({ id: apiTokens.id });
    if (!row) return null;
    await tx.execute(sql`select pg_notify(${TOKEN_REVOKED_CHANNEL}, ${row.id})`);
    return { tokenId: row.id };
  });
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
    const bearer = bearerToken(authorization);
    if (!bearer) {
      throw new AppError('UNAUTHENTICATED', 'Missing bearer token: send "Authorization: Bearer <token>".');
    }
    const token = await this.lookup(hashApiToken(bearer));
    if (!token) throw new AppError('UNAUTHENTICATED', 'Invalid or revoked API token.');

    const requested = organizationHeader?.trim();
    // Same answer whether or not the requested organization exists: nothing about it is revealed.
    if (requested && (!isUuid(requested) || requested.toLowerCase() !== token.organizationId)) {
      throw new AppError('FORBIDDEN', 'This token does not grant access to the requested organization.');
    }
    return { organizationId: token.organizationId, tokenId: token.tokenId };
  }

  /** Whether this Authorization header carries a token verified recently (in the cache): no query needed. */
  isVerified(authorization: string | null | undefined): boolean {
    const bearer = bearerToken(authorization);
    const cached = bearer ? this.cache.get(hashApiToken(bearer)) : undefined;
    return cached !== undefined && cached.expiresAt > Date.now();
  }

  /** Drops cached verifications: all of them, or those of one token id. */
  forget(tokenId?: string): void {
    if (tokenId === undefined) {
      this.cache.clear();
      return;
    }
    for (const [hash, entry] of this.cache) if (entry.tokenId === tokenId) this.cache.delete(hash);
  }

  /**
   * Forgets revoked tokens as their revocation commits (LISTEN). A notification lost while the listening
   * connection is down leaves a revoked token usable for at most the cache TTL; so does a revocation
   * made without revokeApiToken. Returns the function that stops listening.
   */
  async watchRevocations(database: Pick<Database, 'listen'>): Promise<() => Promise<void>> {
    return database.listen(TOKEN_REVOKED_CHANNEL, (tokenId) => {
      this.forget(tokenId);
      // A lookup already under way may have read the token before the revocation committed: it must not
      // cache it, nor let a connection be opened with it after its open connections were closed.
      if (this.pending.size > 0) this.revokedDuringLookups.set(tokenId, ++this.revocationCount);
      for (const listener of this.revocationListeners) listener(tokenId);
    });
  }

  private readonly revocationListeners = new Set<(tokenId: string) => void>();

  /** Calls `listener` with the id of every token revoked while watchRevocations runs (to close its open connections). */
  onRevoked(listener: (tokenId: string) => void): () => void {
    this.revocationListeners.add(listener);
    return () => this.revocationListeners.delete(listener);
  }

  /** Lookups under way: when a cached token expires under load, the requests waiting on it share one query. */
  private readonly pending = new Map<string, Promise<CachedToken | null>>();
  /** Revocations heard while lookups were under way, numbered; cleared when no lookup is. */
  private readonly revokedDuringLookups = new Map<string, number>();
  private revocationCount = 0;

  private lookup(tokenHash: string): Promise<CachedToken | null> {
    const cached = this.cache.get(tokenHash);
    if (cached && cached.expiresAt > Date.now()) return Promise.resolve(cached);
    let pending = this.pending.get(tokenHash);
    if (!pending) {
      pending = this.query(tokenHash).finally(() => {
        this.pending.delete(tokenHash);
        if (this.pending.size === 0) this.revokedDuringLookups.clear();
      });
      this.pending.set(tokenHash, pending);
    }
    return pending;
  }

  private async query(tokenHash: string): Promise<CachedToken | null> {
    const now = Date.now();
    const revocationsBefore = this.revocationCount;
    const [row] = await this.db
      .select({ organizationId: apiTokens.organizationId, tokenId: apiTokens.id })
      .from(apiTokens)
      .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)))
      .limit(1);
    if (!row || (this.revokedDuringLookups.get(row.tokenId) ?? 0) > revocationsBefore) {
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
