import type { AuditEventRow } from '../../db/tables.js';
import { requireRole } from '../../services/access.js';
import { auditCursor, listAuditEvents } from '../../services/audit.js';
import { DEFAULT_PAGE_SIZE, pageSize } from '../../services/pages.js';
import { builder } from '../builder.js';
import { OrganizationRef, requireCurrentOrganization } from './organization.js';
import { UserRef } from './refs.js';

// The audit log, for ADMIN and OWNER: who changed members, tokens, statuses and assignments.

const AuditActorKindEnum = builder.enumType('AuditActorKind', {
  values: {
    USER: { description: 'A member, through their token or an identity provider.' },
    INTEGRATION: { description: "An organization's integration token." },
    OPERATOR: { description: "The operator's CLI." },
  } as const,
});

const AuditEventRef = builder.objectRef<AuditEventRow>('AuditEvent').implement({
  description: 'One change: who made it, what, to which object, when.',
  fields: (t) => ({
    uuid: t.exposeString('id'),
    action: t.exposeString('action', {
      description:
        'member.added, member.role_changed, member.removed, token.created, token.revoked, conversation.assigned, conversation.status_changed or contact.deleted.',
    }),
    actorKind: t.field({
      type: AuditActorKindEnum,
      resolve: (event) => (event.actorUserId ? 'USER' : event.actorTokenId ? 'INTEGRATION' : 'OPERATOR'),
    }),
    actor: t.field({
      type: UserRef,
      nullable: true,
      description: 'The member who made the change (null for an integration token, the operator, or a former member).',
      resolve: async (event, _args, ctx) => (event.actorUserId ? ((await ctx.loaders.member.load(event.actorUserId))?.user ?? null) : null),
    }),
    actorUserId: t.id({ nullable: true, description: "The acting user's raw id, kept after they leave.", resolve: (event) => event.actorUserId }),
    actorTokenId: t.id({ nullable: true, description: 'The raw id of the API token used, if any.', resolve: (event) => event.actorTokenId }),
    objectType: t.exposeString('objectType', { description: 'user, api_token, conversation or contact.' }),
    objectId: t.id({ description: "The object's raw id.", resolve: (event) => event.objectId }),
    data: t.field({ type: 'JSONObject', description: 'What changed (from / to).', resolve: (event) => event.data }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const AuditEventConnectionRef = builder.connectionObject(
  { type: AuditEventRef, name: 'AuditEventConnection', description: 'Audit events, newest first.' },
  { name: 'AuditEventEdge' },
);

builder.objectFields(OrganizationRef, (t) => ({
  auditEvents: t.field({
    type: AuditEventConnectionRef,
    description: 'Who changed what, newest first (ADMIN and OWNER). Default page 50, at most 200.',
    args: { first: t.arg.int(), after: t.arg.string() },
    resolve: async (org, args, ctx) => {
      requireCurrentOrganization(org, ctx);
      requireRole(ctx.caller, 'ADMIN', 'read the audit log');
      const first = pageSize(args.first, 'first') ?? DEFAULT_PAGE_SIZE;
      const { rows, hasNextPage } = await listAuditEvents(ctx.deps.db, org.id, { first, after: args.after });
      const edges = rows.map((row) => ({ cursor: auditCursor(org.id, row), node: row }));
      return {
        edges,
        pageInfo: { hasNextPage, hasPreviousPage: Boolean(args.after), startCursor: edges[0]?.cursor ?? null, endCursor: edges.at(-1)?.cursor ?? null },
      };
    },
  }),
}));

