import type { MemberRoleValue } from '../../db/tables.js';
import type { RequestContext } from '../../context.js';
import { AppError } from '../../errors.js';
import { roleOfMembership, type CallerRole } from '../../services/auth.js';
import { addMember, listMembers, organizationsOfUser, removeMember, setMemberRole, type Member } from '../../services/members.js';
import { getOrganization } from '../../services/organizations.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { OrganizationRef, requireCurrentOrganization } from './organization.js';
import { UserRef } from './refs.js';

// People: users, their memberships (a role in an organization) and the viewer (who is calling).

export const MemberRoleEnum = builder.enumType('MemberRole', {
  description: "What a caller may do in an organization. INTEGRATION is an organization's own API token (no person).",
  values: {
    OWNER: { value: 'OWNER', description: 'Everything ADMIN may, and grants, changes or removes OWNER. An organization always keeps one.' },
    ADMIN: { value: 'ADMIN', description: 'Everything AGENT may, and manages members and API tokens.' },
    AGENT: { value: 'AGENT', description: 'Reads every conversation, replies, changes status, assigns, writes notes.' },
    INTEGRATION: { value: 'INTEGRATION', description: "An organization's integration token: ADMIN's rights." },
  } as const,
});

const toMembershipRole = (role: CallerRole): MemberRoleValue => {
  if (role === 'INTEGRATION') throw new AppError('BAD_USER_INPUT', 'INTEGRATION is the role of integration tokens, not of members.', { argument: 'role' });
  return role.toLowerCase() as MemberRoleValue;
};

builder.node(UserRef, {
  description: 'A person. Visible to an organization while they are its member.',
  id: { resolve: (row) => row.id },
  loadOne: async (id, ctx) => (await ctx.loaders.member.load(id))?.user ?? null,
  fields: (t) => ({
    uuid: t.exposeString('id', { description: 'Raw UUID.' }),
    email: t.exposeString('email'),
    name: t.exposeString('name', { nullable: true }),
  }),
});

export const MemberRef = builder.objectRef<Member>('Member').implement({
  description: "A user's membership of the organization.",
  fields: (t) => ({
    user: t.field({ type: UserRef, resolve: (member) => member.user }),
    role: t.field({ type: MemberRoleEnum, resolve: (member) => roleOfMembership(member.role) }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When they joined.' }),
  }),
});

export type Viewer = { ctx: RequestContext };

export const ViewerRef = builder.objectRef<Viewer>('Viewer').implement({
  description: 'Who is calling: a member (through their token or an identity provider), or an integration token.',
  fields: (t) => ({
    user: t.field({
      type: UserRef,
      nullable: true,
      description: 'null for an integration token.',
      resolve: async ({ ctx }) => (ctx.caller.userId ? ((await ctx.loaders.member.load(ctx.caller.userId))?.user ?? null) : null),
    }),
    role: t.field({ type: MemberRoleEnum, description: 'The role in the current organization.', resolve: ({ ctx }) => ctx.caller.role }),
    organizations: t.field({
      type: [OrganizationRef],
      description: 'Organizations this credential can act in (pick one with x-organization-id).',
      resolve: async ({ ctx }) => {
        if (!ctx.caller.userId || !ctx.caller.anyOrganization) return [await getOrganization(ctx.deps.db, ctx.caller.organizationId)];
        return organizationsOfUser(ctx.deps.db, ctx.caller.userId);
      },
    }),
  }),
});

builder.queryField('viewer', (t) =>
  t.field({ type: ViewerRef, description: 'Who is calling, with which role.', resolve: (_root, _args, ctx) => ({ ctx }) }),
);

builder.objectFields(OrganizationRef, (t) => ({
  members: t.field({
    type: [MemberRef],
    description: 'Members, OWNERs first, then ADMINs, then AGENTs, by name.',
    resolve: (org, _args, ctx) => {
      requireCurrentOrganization(org, ctx);
      return listMembers(ctx.deps.db, org.id);
    },
  }),
}));

const AddMemberInput = builder.inputType('AddMemberInput', {
  fields: (t) => ({
    email: t.string({ required: true, description: 'Compared case-insensitively; a new email creates the user.' }),
    name: t.string({ description: "The user's name, when the email is new (an existing user keeps theirs)." }),
    role: t.field({ type: MemberRoleEnum, required: true }),
  }),
});

const userIdArg = (value: string | number) => uuidOfNodeId(value, 'User');

builder.mutationFields((t) => ({
  addMember: t.field({
    type: MemberRef,
    description: 'Adds a member (ADMIN and OWNER; only an OWNER adds an OWNER). MEMBER_ALREADY_EXISTS for a member.',
    args: { input: t.arg({ type: AddMemberInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      addMember(ctx.deps, ctx.caller, { email: input.email, name: input.name, role: toMembershipRole(input.role) }),
  }),
  setMemberRole: t.field({
    type: MemberRef,
    description: "Changes a member's role (ADMIN and OWNER; only an OWNER changes or grants OWNER; the last OWNER stays).",
    args: { userId: t.arg.id({ required: true }), role: t.arg({ type: MemberRoleEnum, required: true }) },
    resolve: async (_root, args, ctx) => {
      const member = await setMemberRole(ctx.deps, ctx.caller, userIdArg(args.userId), toMembershipRole(args.role));
      ctx.loaders.member.clear(member.user.id);
      return member;
    },
  }),
  removeMember: t.field({
    type: MemberRef,
    description:
      'Removes a member (ADMIN and OWNER; only an OWNER removes an OWNER; the last OWNER stays): their conversations are unassigned and the tokens made for them here revoked. Answers the membership as it was.',
    args: { userId: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      const member = await removeMember(ctx.deps, ctx.caller, userIdArg(args.userId));
      ctx.loaders.member.clear(member.user.id);
      return member;
    },
  }),
}));
