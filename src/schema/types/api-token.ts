import type { ApiTokenRow } from '../../db/tables.js';
import { createApiToken, listApiTokens, revokeApiTokenById } from '../../services/api-tokens.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { OrganizationRef, requireCurrentOrganization } from './organization.js';
import { UserRef } from './refs.js';

// API tokens: an organization's integration tokens and its members' tokens. A token is shown once.

const ApiTokenRef = builder.objectRef<ApiTokenRow>('ApiToken');

builder.node(ApiTokenRef, {
  description: 'An API token (never the token itself: only its hash is stored).',
  id: { resolve: (row) => row.id },
  // As Organization.apiTokens shows them: an AGENT sees its own only.
  loadOne: async (id, ctx) => (await listApiTokens(ctx.deps.db, ctx.caller)).find((token) => token.id === id) ?? null,
  fields: (t) => ({
    uuid: t.exposeString('id', { description: 'Raw UUID.' }),
    name: t.exposeString('name', { nullable: true }),
    user: t.field({
      type: UserRef,
      nullable: true,
      description: 'The member it acts as; null for an integration token (and for a token of a former member).',
      resolve: async (token, _args, ctx) => (token.userId ? ((await ctx.loaders.member.load(token.userId))?.user ?? null) : null),
    }),
    isIntegration: t.boolean({ description: 'An integration token: no person, ADMIN rights.', resolve: (token) => token.userId === null }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.objectFields(OrganizationRef, (t) => ({
  apiTokens: t.field({
    type: [ApiTokenRef],
    description: "Tokens issued in this organization, oldest first: all of them for ADMIN and OWNER, an AGENT's own.",
    resolve: (org, _args, ctx) => {
      requireCurrentOrganization(org, ctx);
      return listApiTokens(ctx.deps.db, ctx.caller);
    },
  }),
}));

const CreateApiTokenInput = builder.inputType('CreateApiTokenInput', {
  fields: (t) => ({
    userId: t.id({ description: "A member's token (an AGENT: its own only); absent or null: an integration token (ADMIN and OWNER)." }),
    name: t.string({ description: 'A label, to tell tokens apart.' }),
  }),
});

const CreateApiTokenPayload = builder
  .objectRef<{ apiToken: string; row: ApiTokenRow }>('CreateApiTokenPayload')
  .implement({
    fields: (t) => ({
      token: t.string({
        description: 'The token, shown this once: send it as "Authorization: Bearer <token>". It acts in this organization only.',
        resolve: (payload) => payload.apiToken,
      }),
      apiToken: t.field({ type: ApiTokenRef, resolve: (payload) => payload.row }),
    }),
  });

builder.mutationFields((t) => ({
  createApiToken: t.field({
    type: CreateApiTokenPayload,
    args: { input: t.arg({ type: CreateApiTokenInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createApiToken(ctx.deps.db, ctx.caller, { userId: input.userId == null ? null : uuidOfNodeId(input.userId, 'User'), name: input.name }),
  }),
  revokeApiToken: t.field({
    type: ApiTokenRef,
    description: 'Revokes a token of this organization (an AGENT: its own only); open connections made with it close at once.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => revokeApiTokenById(ctx.deps.db, ctx.caller, uuidOfNodeId(args.id, 'ApiToken')),
  }),
}));
