import { AppError } from '../errors.js';
import type { Caller, CallerRole } from './auth.js';

// Who may do what in an organization. AGENT works conversations (read, reply, status, assign, notes);
// ADMIN and OWNER also manage members and tokens; an integration token has ADMIN's rights; only an OWNER
// grants, changes or removes OWNER.

const RANK: Record<CallerRole, number> = { AGENT: 1, ADMIN: 2, INTEGRATION: 2, OWNER: 3 };

/** Whether the caller has at least the rights of `minimum`. */
export function hasRole(caller: Pick<Caller, 'role'>, minimum: 'AGENT' | 'ADMIN' | 'OWNER'): boolean {
  return RANK[caller.role] >= RANK[minimum];
}

/** FORBIDDEN (changing nothing) unless the caller has at least the rights of `minimum`. */
export function requireRole(caller: Pick<Caller, 'role'>, minimum: 'ADMIN' | 'OWNER', what: string): void {
  if (hasRole(caller, minimum)) return;
  const needed = minimum === 'OWNER' ? 'an OWNER' : 'an ADMIN or OWNER';
  throw new AppError('FORBIDDEN', `Only ${needed} can ${what}; this caller is ${caller.role}.`, { requiredRole: minimum }, { fieldLevel: true });
}

/** The operator's CLI: outside every organization's roles, above them. */
export const operatorCaller = (organizationId: string): Caller => ({
  organizationId,
  tokenId: 'operator',
  userId: null,
  role: 'OWNER',
  anyOrganization: false,
});
