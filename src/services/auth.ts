import { hash, randomBytes } from 'node:crypto';
import { and, eq, isNull, sql } from 'drizzle-orm';
import { afterCommit, rootOf } from '../db/after-commit.js';
import type { Database, Db, DbOrTx } from '../db/client.js';
import { apiTokens, memberships, users, type MemberRoleValue } from '../db/tables.js';
import { AppError } from '../errors.js';
import { isUuid } from './cursors.js';
import type { JwtVerifier } from './jwt.js';

/** What a caller may do in its organization: a member's role, or INTEGRATION for an organization's own token. */
export type CallerRole = 'OWNER' | 'ADMIN' | 'AGENT' | 'INTEGRATION';

export type Caller = {
  organizationId: string;
  /**
   * The credential: an API token's id, or `jwt:<hash>` for an identity provider's token. Connections opened
   * with it close when it is revoked.
   */
  tokenId: string;
  /** The person acting; null for an integration token. */
  userId: string | null;
  role: CallerRole;
  /** A user's credential that acts in every organization of the user (else only in organizationId). */
  anyOrganization: boolean;
};

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

export const roleOfMembership = (role: MemberRoleValue): CallerRole => role.toUpperCase() as CallerRole;

/**
 * NOTIFY channel of access changes, so every instance drops what it cached at once: the payload is a revoked
 * token's id, or `user:<id>` when a user's memberships changed (role, removal). The name predates memberships.
 */
export const ACCESS_CHANGED_CHANNEL = 'api_token_revoked';

/**
 * Where access changes go instead of NOTIFY, per database: with Redis, every instance subscribes there
 * (registered by the composition root). Published once the transaction commits.
 */
const accessRelays = new WeakMap<object, (payload: string) => void>();

export function relayAccessChanges(db: Db, publish: (payload: string) => void): void {
  accessRelays.set(db, publish);
}

async function notifyAccessChanged(tx: DbOrTx, payload: string): Promise<void> {
  const relay = accessRelays.get(rootOf(tx));
  if (relay) afterCommit(tx, () => relay(payload));
  // NOTIFY is transactional: delivered at commit, never on rollback.
  else await tx.execute(sql`select pg_notify(${ACCESS_CHANGED_CHANNEL}, ${payload})`);
}

/** Tells every instance (at commit, with the transaction) that this user's memberships changed. */
export async function notifyMembershipChanged(tx: DbOrTx, userId: string): Promise<void> {
  await notifyAccessChanged(tx, `user:${userId}`);
}

/** Tells every instance (at commit, with the transaction) that this token was revoked. */
export async function notifyTokenRevoked(tx: DbOrTx, tokenId: string): Promise<void> {
  await notifyAccessChanged(tx, tokenId);
}

/** What an API token (or a verified identity-provider token) stands for, before an organization is chosen. */
type Credential = {
  tokenId: string;
  /** Where the token was issued; an integration token acts only there. */
  organizationId: string | null;
  userId: string | null;
  /** A user token that acts in every organization of its user. */
  anyOrganization: boolean;
  expiresAt: number;
};

type CachedMemberships = { roles: Map<string, MemberRoleValue>; expiresAt: number };

/**
 * Resolves `Authorization: Bearer <token>` and `x-organization-id` to a caller: the organization, the person
 * (if any) and their role there. Verified tokens and users' memberships are cached for a short time, so an
 * ordinary request costs no auth query; changes reach every instance's cache through NOTIFY at once.
 */
export class Authenticator {
  private readonly cache = new Map<string, Credential>();
  private readonly membershipsByUser = new Map<string, CachedMemberships>();

  constructor(
    private readonly db: DbOrTx,
    private readonly ttlMs: number,
    private readonly jwt: JwtVerifier | null = null,
  ) {}

  async authenticate(authorization: string | null | undefined, organizationHeader: string | null | undefined): Promise<Caller> {
    const bearer = bearerToken(authorization);
    if (!bearer) {
      throw new AppError('UNAUTHENTICATED', 'Missing bearer token: send "Authorization: Bearer <token>".');
    }
    const credential = await this.lookup(bearer);
    if (!credential) throw new AppError('UNAUTHENTICATED', 'Invalid or revoked API token.');

    const requested = organizationHeader?.trim().toLowerCase() || undefined;
    // Same answer whether or not the requested organization exists: nothing about it is revealed.
    const forbidden = () => new AppError('FORBIDDEN', 'This token does not grant access to the requested organization.');
    if (requested !== undefined && !isUuid(requested)) throw forbidden();

    if (credential.userId === null) {
      if (requested !== undefined && requested !== credential.organizationId) throw forbidden();
      return { organizationId: credential.organizationId!, tokenId: credential.tokenId, userId: null, role: 'INTEGRATION', anyOrganization: false };
    }

    const roles = await this.membershipsOf(credential.userId);
    const usable = (organizationId: string) =>
      roles.has(organizationId) && (credential.anyOrganization || organizationId === credential.organizationId);
    let organizationId = requested;
    if (organizationId === undefined) {
      const choices = [...roles.keys()].filter(usable);
      if (choices.length > 1) {
        throw new AppError(
          'ORGANIZATION_REQUIRED',
          'This user belongs to several organizations: send "x-organization-id: <organization id>" to pick one.',
        );
      }
      organizationId = choices[0];
    }
    if (organizationId === undefined || !usable(organizationId)) throw forbidden();
    return {
      organizationId,
      tokenId: credential.tokenId,
      userId: credential.userId,
      role: roleOfMembership(roles.get(organizationId)!),
      anyOrganization: credential.anyOrganization,
    };
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
      this.membershipsByUser.clear();
      return;
    }
    for (const [hash, entry] of this.cache) if (entry.tokenId === tokenId) this.cache.delete(hash);
  }

  /** Drops a user's cached memberships (their role changed, or they left an organization). */
  forgetUser(userId: string): void {
    this.membershipsByUser.delete(userId);
  }

  /**
   * Forgets revoked tokens and changed memberships as they commit (LISTEN). A notification lost while the
   * listening connection is down leaves a revoked token (or an old role) in use for at most the cache TTL.
   * Returns the function that stops listening.
   */
  async watchRevocations(database: Pick<Database, 'listen'>): Promise<() => Promise<void>> {
    return database.listen(ACCESS_CHANGED_CHANNEL, (payload) => this.accessChanged(payload));
  }

  /** Applies an access-change notice (ACCESS_CHANGED_CHANNEL's payload). */
  accessChanged(payload: string): void {
    const change = payload.startsWith('user:') ? { userId: payload.slice(5) } : { tokenId: payload };
    if (change.userId !== undefined) this.forgetUser(change.userId);
    else this.forget(change.tokenId);
    // A lookup already under way may have read the token (or the memberships) before the change committed:
    // it must not cache it, nor let a connection be opened with it after its open connections were closed.
    if (this.pending.size > 0 || this.pendingMemberships.size > 0) this.changedDuringLookups.set(payload, ++this.changeCount);
    for (const listener of this.revocationListeners) listener(change);
  }

  private readonly revocationListeners = new Set<(change: AccessChange) => void>();

  /**
   * Calls `listener` for every token revoked and every user whose memberships changed while watchRevocations
   * runs (to close the connections they opened).
   */
  onRevoked(listener: (change: AccessChange) => void): () => void {
    this.revocationListeners.add(listener);
    return () => this.revocationListeners.delete(listener);
  }

  /** Lookups under way: when a cached token expires under load, the requests waiting on it share one query. */
  private readonly pending = new Map<string, Promise<Credential | null>>();
  private readonly pendingMemberships = new Map<string, Promise<Map<string, MemberRoleValue>>>();
  /** Changes heard while lookups were under way, numbered; cleared when no lookup is. */
  private readonly changedDuringLookups = new Map<string, number>();
  private changeCount = 0;

  private settled(): void {
    if (this.pending.size === 0 && this.pendingMemberships.size === 0) this.changedDuringLookups.clear();
  }

  private lookup(bearer: string): Promise<Credential | null> {
    const tokenHash = hashApiToken(bearer);
    const cached = this.cache.get(tokenHash);
    if (cached && cached.expiresAt > Date.now()) return Promise.resolve(cached);
    let pending = this.pending.get(tokenHash);
    if (!pending) {
      const query = this.jwt?.looksLikeJwt(bearer) ? this.verifyJwt(bearer, tokenHash) : this.query(tokenHash);
      pending = query.finally(() => {
        this.pending.delete(tokenHash);
        this.settled();
      });
      this.pending.set(tokenHash, pending);
    }
    return pending;
  }

  private remember(tokenHash: string, credential: Credential): Credential {
    if (this.ttlMs > 0) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(tokenHash, credential);
    }
    return credential;
  }

  private async query(tokenHash: string): Promise<Credential | null> {
    const now = Date.now();
    const changesBefore = this.changeCount;
    const [row] = await this.db
      .select({
        organizationId: apiTokens.organizationId,
        tokenId: apiTokens.id,
        userId: apiTokens.userId,
        anyOrganization: apiTokens.anyOrganization,
      })
      .from(apiTokens)
      .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)))
      .limit(1);
    if (!row || (this.changedDuringLookups.get(row.tokenId) ?? 0) > changesBefore) {
      this.cache.delete(tokenHash);
      return null;
    }
    return this.remember(tokenHash, { ...row, expiresAt: now + this.ttlMs });
  }

  /** An identity provider's token: verified (signature, exp, nbf, iss, aud), its `email` naming a user. */
  private async verifyJwt(token: string, tokenHash: string): Promise<Credential | null> {
    const now = Date.now();
    const claims = await this.jwt!.verify(token);
    const [user] = await this.db
      .select({ id: users.id })
      .from(users)
      .where(sql`lower(${users.email}) = lower(${claims.email})`)
      .limit(1);
    if (!user) throw new AppError('UNAUTHENTICATED', `No user with the email ${claims.email}: an ADMIN adds members first.`);
    const credential = {
      tokenId: `jwt:${tokenHash.slice(0, 32)}`,
      organizationId: null,
      userId: user.id,
      anyOrganization: true,
      // Never past the token's own expiry.
      expiresAt: Math.min(now + this.ttlMs, claims.expiresAt),
    };
    return this.remember(tokenHash, credential);
  }

  private membershipsOf(userId: string): Promise<Map<string, MemberRoleValue>> {
    const cached = this.membershipsByUser.get(userId);
    if (cached && cached.expiresAt > Date.now()) return Promise.resolve(cached.roles);
    let pending = this.pendingMemberships.get(userId);
    if (!pending) {
      pending = this.queryMemberships(userId).finally(() => {
        this.pendingMemberships.delete(userId);
        this.settled();
      });
      this.pendingMemberships.set(userId, pending);
    }
    return pending;
  }

  private async queryMemberships(userId: string): Promise<Map<string, MemberRoleValue>> {
    for (let attempt = 0; ; attempt += 1) {
      const now = Date.now();
      const changesBefore = this.changeCount;
      const rows = await this.db
        .select({ organizationId: memberships.organizationId, role: memberships.role })
        .from(memberships)
        .where(eq(memberships.userId, userId));
      const roles = new Map(rows.map((row) => [row.organizationId, row.role]));
      // Changed while we read (a removal, a new role): what we read may be the old state. Read again.
      const changed = (this.changedDuringLookups.get(`user:${userId}`) ?? 0) > changesBefore;
      if (changed && attempt === 0) continue;
      if (!changed && this.ttlMs > 0) {
        if (this.membershipsByUser.size > 10_000) this.membershipsByUser.clear();
        this.membershipsByUser.set(userId, { roles, expiresAt: now + this.ttlMs });
      }
      return roles;
    }
  }
}

/** A revoked token, or a user whose memberships changed. */
export type AccessChange = { tokenId?: string; userId?: string };
