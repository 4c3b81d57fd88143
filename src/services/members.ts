import { and, eq, inArray, isNull, ne, sql } from 'drizzle-orm';
import type { DbOrTx, Tx } from '../db/client.js';
import {
  apiTokens,
  conversations,
  memberships,
  organizations,
  users,
  type MemberRoleValue,
  type OrganizationRow,
  type UserRow,
} from '../db/tables.js';
import { AppError, badUserInput } from '../errors.js';
import { requireRole } from './access.js';
import { recordAudit } from './audit.js';
import { notifyMembershipChanged, notifyTokenRevoked, type Caller } from './auth.js';
import { isUuid } from './cursors.js';
import type { ServiceDeps } from './deps.js';

// People of an organization: users (global, one per email) and their memberships (a role in one
// organization). Every change is serialized per organization (its row locked), so "an organization always
// keeps one OWNER" holds when two owners demote each other at once.

export type Member = { user: UserRow; role: MemberRoleValue; createdAt: Date };

const ROLE_ORDER = sql`case ${memberships.role} when 'owner' then 0 when 'admin' then 1 else 2 end`;

export async function listMembers(db: DbOrTx, organizationId: string): Promise<Member[]> {
  const rows = await db
    .select({ user: users, role: memberships.role, createdAt: memberships.createdAt })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(eq(memberships.organizationId, organizationId))
    .orderBy(ROLE_ORDER, sql`lower(coalesce(${users.name}, ${users.email}))`, users.id);
  return rows;
}

/** Users who are members of the organization, by id (the User loader: nobody outside it is visible). */
export async function membersByUserIds(db: DbOrTx, organizationId: string, userIds: readonly string[]): Promise<Member[]> {
  const valid = userIds.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select({ user: users, role: memberships.role, createdAt: memberships.createdAt })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(and(eq(memberships.organizationId, organizationId), inArray(memberships.userId, valid)));
}

/** The organizations a user belongs to, in the order they joined. */
export async function organizationsOfUser(db: DbOrTx, userId: string): Promise<OrganizationRow[]> {
  const rows = await db
    .select({ organization: organizations })
    .from(memberships)
    .innerJoin(organizations, eq(organizations.id, memberships.organizationId))
    .where(eq(memberships.userId, userId))
    .orderBy(memberships.createdAt, memberships.organizationId);
  return rows.map((row) => row.organization);
}

/**
 * The member, with their user, or MEMBER_NOT_FOUND. `lock`: the membership row is locked until the
 * transaction ends (a removal must not race an assignment to the member it removes).
 */
export async function requireMember(db: DbOrTx, organizationId: string, userId: string, options: { lock?: boolean } = {}): Promise<Member> {
  const query = db
    .select({ user: users, role: memberships.role, createdAt: memberships.createdAt })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(and(eq(memberships.organizationId, organizationId), eq(memberships.userId, userId)))
    .limit(1);
  const [member] = isUuid(userId) ? await (options.lock ? query.for('update', { of: memberships }) : query) : [];
  if (!member) throw new AppError('MEMBER_NOT_FOUND', `No member ${userId} in this organization.`, { userId });
  return member;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MAX_EMAIL_LENGTH = 254;
const MAX_NAME_LENGTH = 200;

export function normalizeEmail(input: string): string {
  const email = input.trim();
  if (email.length > MAX_EMAIL_LENGTH || !EMAIL.test(email)) throw badUserInput(`${JSON.stringify(email.slice(0, 100))} is not an email address.`, { field: 'email' });
  return email;
}

function cleanName(input: string | null | undefined): string | null {
  const name = input?.trim() || null;
  if (name !== null && name.length > MAX_NAME_LENGTH) throw badUserInput(`name must be at most ${MAX_NAME_LENGTH} characters.`, { field: 'name' });
  return name;
}

/** Locks the organization's row: membership changes of one organization happen one at a time. */
async function lockOrganization(tx: Tx, organizationId: string): Promise<void> {
  const [org] = await tx.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, organizationId)).for('update');
  if (!org) throw new AppError('NOT_FOUND', 'Organization not found.');
}

/** The user with this email (compared case-insensitively), created when new; an existing user's name is theirs and kept. */
export async function findOrCreateUser(tx: DbOrTx, email: string, name: string | null): Promise<UserRow> {
  const [created] = await tx
    .insert(users)
    .values({ email, name })
    .onConflictDoNothing() // users_email_key: lower(email)
    .returning();
  if (created) return created;
  const [existing] = await tx.select().from(users).where(sql`lower(${users.email}) = lower(${email})`);
  return existing!;
}

/** Adds a member (creating the user when the email is new). ADMIN and OWNER; only an OWNER adds an OWNER. */
export async function addMember(
  deps: Pick<ServiceDeps, 'db'>,
  caller: Caller,
  input: { email: string; name?: string | null; role: MemberRoleValue },
): Promise<Member> {
  requireRole(caller, 'ADMIN', 'add members');
  if (input.role === 'owner') requireRole(caller, 'OWNER', 'make someone an OWNER');
  const email = normalizeEmail(input.email);
  const name = cleanName(input.name);
  return deps.db.transaction(async (tx) => {
    await lockOrganization(tx, caller.organizationId);
    const user = await findOrCreateUser(tx, email, name);
    const [membership] = await tx
      .insert(memberships)
      .values({ organizationId: caller.organizationId, userId: user.id, role: input.role })
      .onConflictDoNothing()
      .returning();
    if (!membership) throw new AppError('MEMBER_ALREADY_EXISTS', `${user.email} is a member already; change their role instead.`, { userId: user.id });
    await recordAudit(tx, caller, { action: 'member.added', objectType: 'user', objectId: user.id, data: { email: user.email, role: input.role } });
    await notifyMembershipChanged(tx, user.id);
    return { user, role: membership.role, createdAt: membership.createdAt };
  });
}

/** Refuses a change that would leave no OWNER (under the organization's lock). */
async function keepAnOwner(tx: Tx, organizationId: string, leavingUserId: string): Promise<void> {
  const [other] = await tx
    .select({ userId: memberships.userId })
    .from(memberships)
    .where(and(eq(memberships.organizationId, organizationId), eq(memberships.role, 'owner'), ne(memberships.userId, leavingUserId)))
    .limit(1);
  if (!other) throw new AppError('LAST_OWNER', 'An organization always keeps one OWNER: make someone else OWNER first.');
}

/** Changes a member's role. ADMIN and OWNER; only an OWNER changes an OWNER or makes one. */
export async function setMemberRole(deps: Pick<ServiceDeps, 'db'>, caller: Caller, userId: string, role: MemberRoleValue): Promise<Member> {
  requireRole(caller, 'ADMIN', "change members' roles");
  if (role === 'owner') requireRole(caller, 'OWNER', 'make someone an OWNER');
  return deps.db.transaction(async (tx) => {
    await lockOrganization(tx, caller.organizationId);
    const current = await requireMember(tx, caller.organizationId, userId);
    if (current.role === 'owner') requireRole(caller, 'OWNER', "change an OWNER's role");
    if (current.role === 'owner' && role !== 'owner') await keepAnOwner(tx, caller.organizationId, userId);
    if (current.role === role) return current;
    await tx
      .update(memberships)
      .set({ role, updatedAt: sql`now()` })
      .where(and(eq(memberships.organizationId, caller.organizationId), eq(memberships.userId, userId)));
    await recordAudit(tx, caller, { action: 'member.role_changed', objectType: 'user', objectId: userId, data: { from: current.role, to: role } });
    await notifyMembershipChanged(tx, userId);
    return { ...current, role };
  });
}

/**
 * Removes a member: their conversations are unassigned, the tokens made for them in this organization
 * revoked, and their open connections here closed (every instance hears it). ADMIN and OWNER; only an
 * OWNER removes an OWNER.
 */
export async function removeMember(
  deps: Pick<ServiceDeps, 'db' | 'events'>,
  caller: Caller,
  userId: string,
): Promise<Member & { unassignedConversations: number }> {
  requireRole(caller, 'ADMIN', 'remove members');
  const { member, unassigned } = await deps.db.transaction(async (tx) => {
    await lockOrganization(tx, caller.organizationId);
    const current = await requireMember(tx, caller.organizationId, userId, { lock: true });
    if (current.role === 'owner') {
      requireRole(caller, 'OWNER', 'remove an OWNER');
      await keepAnOwner(tx, caller.organizationId, userId);
    }
    const unassigned = await tx
      .update(conversations)
      .set({ assigneeUserId: null, updatedAt: sql`now()` })
      .where(and(eq(conversations.organizationId, caller.organizationId), eq(conversations.assigneeUserId, userId)))
      .returning({ id: conversations.id });
    await tx.delete(memberships).where(and(eq(memberships.organizationId, caller.organizationId), eq(memberships.userId, userId)));
    // Tokens that act only here are dead now; revoke them so they say so. Tokens that act in the user's
    // other organizations keep working there (membership is checked at every authentication).
    const revoked = await tx
      .update(apiTokens)
      .set({ revokedAt: new Date() })
      .where(
        and(
          eq(apiTokens.organizationId, caller.organizationId),
          eq(apiTokens.userId, userId),
          eq(apiTokens.anyOrganization, false),
          isNull(apiTokens.revokedAt),
        ),
      )
      .returning({ id: apiTokens.id });
    for (const token of revoked) await notifyTokenRevoked(tx, token.id);
    await recordAudit(tx, caller, {
      action: 'member.removed',
      objectType: 'user',
      objectId: userId,
      data: { role: current.role, unassignedConversations: unassigned.length, revokedTokens: revoked.length },
    });
    await notifyMembershipChanged(tx, userId);
    return { member: current, unassigned };
  });
  for (const { id } of unassigned) deps.events.publish('conversationUpdated', caller.organizationId, { conversationId: id });
  return { ...member, unassignedConversations: unassigned.length };
}
