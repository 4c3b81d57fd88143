import { and, asc, eq, isNull } from 'drizzle-orm';
import type { Db, DbOrTx } from '../db/client.js';
import { apiTokens, type ApiTokenRow } from '../db/tables.js';
import { AppError, badUserInput } from '../errors.js';
import { hasRole, requireRole } from './access.js';
import { recordAudit } from './audit.js';
import { generateApiToken, hashApiToken, notifyTokenRevoked, type Caller } from './auth.js';
import { isUuid } from './cursors.js';
import { requireMember } from './members.js';

// API tokens: an organization's integration tokens (no person) and users' tokens (act as that user).
// Only SHA-256 hashes are stored; a token is shown once, when it is made.

export type IssueOptions = {
  name?: string | null;
  /** A user token; absent: an integration token. */
  userId?: string | null;
  /** A user token that acts in every organization of its user (the operator's CLI makes these). */
  anyOrganization?: boolean;
};

export async function issueApiToken(db: DbOrTx, organizationId: string, nameOrOptions?: string | IssueOptions) {
  const options: IssueOptions = typeof nameOrOptions === 'string' ? { name: nameOrOptions } : (nameOrOptions ?? {});
  const apiToken = generateApiToken();
  const [row] = await db
    .insert(apiTokens)
    .values({
      organizationId,
      tokenHash: hashApiToken(apiToken),
      name: options.name ?? null,
      userId: options.userId ?? null,
      anyOrganization: Boolean(options.userId && options.anyOrganization),
    })
    .returning();
  return { apiToken, tokenId: row!.id, row: row! };
}

/**
 * Revokes a token given in clear (the operator's CLI: only its hash is stored). The NOTIFY commits with the
 * UPDATE, so every gateway instance on this database forgets the token as soon as the revocation is visible.
 */
export async function revokeApiToken(db: Db, apiToken: string): Promise<{ tokenId: string } | null> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(apiTokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiTokens.tokenHash, hashApiToken(apiToken)), isNull(apiTokens.revokedAt)))
      .returning({ id: apiTokens.id });
    if (!row) return null;
    await notifyTokenRevoked(tx, row.id);
    return { tokenId: row.id };
  });
}

const MAX_NAME_LENGTH = 200;

/**
 * A new token, made through the API. An integration token needs ADMIN; a user token for someone else needs
 * ADMIN; an AGENT may make one for itself. A token made here acts only in this organization, so a token
 * holder in one organization can never mint one that acts in another.
 */
export async function createApiToken(
  db: Db,
  caller: Caller,
  input: { userId?: string | null; name?: string | null },
): Promise<{ apiToken: string; row: ApiTokenRow }> {
  const name = input.name?.trim() || null;
  if (name !== null && name.length > MAX_NAME_LENGTH) throw badUserInput(`name must be at most ${MAX_NAME_LENGTH} characters.`, { field: 'name' });
  const userId = input.userId ?? null;
  if (userId === null) requireRole(caller, 'ADMIN', 'create integration tokens');
  else if (userId !== caller.userId) requireRole(caller, 'ADMIN', "create another member's tokens");
  return db.transaction(async (tx) => {
    if (userId !== null) await requireMember(tx, caller.organizationId, userId);
    const { apiToken, row } = await issueApiToken(tx, caller.organizationId, { name, userId });
    await recordAudit(tx, caller, { action: 'token.created', objectType: 'api_token', objectId: row.id, data: { userId, name } });
    return { apiToken, row };
  });
}

/** Revokes a token of this organization by id: an AGENT only its own, ADMIN and OWNER any. Revoking twice changes nothing. */
export async function revokeApiTokenById(db: Db, caller: Caller, tokenId: string): Promise<ApiTokenRow> {
  return db.transaction(async (tx) => {
    const [token] = isUuid(tokenId)
      ? await tx
          .select()
          .from(apiTokens)
          .where(and(eq(apiTokens.organizationId, caller.organizationId), eq(apiTokens.id, tokenId)))
          .for('update')
      : [];
    // Another member's token is "not found" to an AGENT: its existence is not theirs to know.
    if (!token || (!hasRole(caller, 'ADMIN') && token.userId !== caller.userId)) {
      throw new AppError('NOT_FOUND', `No API token ${tokenId} in this organization.`);
    }
    if (token.revokedAt) return token;
    const [revoked] = await tx
      .update(apiTokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiTokens.organizationId, caller.organizationId), eq(apiTokens.id, token.id)))
      .returning();
    await notifyTokenRevoked(tx, token.id);
    await recordAudit(tx, caller, { action: 'token.revoked', objectType: 'api_token', objectId: token.id, data: { userId: token.userId } });
    return revoked!;
  });
}

/** Tokens issued in this organization (never their hashes): all of them for ADMIN and OWNER, an AGENT's own. */
export async function listApiTokens(db: DbOrTx, caller: Caller): Promise<ApiTokenRow[]> {
  const mine = hasRole(caller, 'ADMIN') ? undefined : caller.userId === null ? isNull(apiTokens.id) : eq(apiTokens.userId, caller.userId);
  return db
    .select()
    .from(apiTokens)
    .where(and(eq(apiTokens.organizationId, caller.organizationId), mine))
    .orderBy(asc(apiTokens.createdAt), asc(apiTokens.id));
}
