import type { RequestContext } from '../../context.js';
import type { OrganizationRow, PhoneNumberRow } from '../../db/tables.js';
import { AppError } from '../../errors.js';
import { getOrganization, phoneNumbersOfOrganization } from '../../services/organizations.js';
import { builder } from '../builder.js';

export const PhoneNumberRef = builder.objectRef<PhoneNumberRow>('PhoneNumber');

builder.node(PhoneNumberRef, {
  description: "One of the organization's sending numbers.",
  id: { resolve: (row) => row.id },
  loadOne: (id, ctx) => ctx.loaders.phoneNumber.load(id),
  fields: (t) => ({
    phoneNumber: t.exposeString('phoneNumber', { description: 'E.164.' }),
    isDefault: t.exposeBoolean('isDefault', { description: 'Replies go out from this number unless another is chosen.' }),
    uuid: t.exposeString('id', { description: 'Raw UUID, as the REST API and `fromPhoneNumberId` accept it.' }),
    messagingServiceSid: t.exposeString('messagingServiceSid', {
      nullable: true,
      description: 'The Twilio Messaging Service (MG…) replies from this number go through (sent with MessagingServiceSid, not From); null: sent From this number.',
    }),
  }),
});

export const OrganizationRef = builder.objectRef<OrganizationRow>('Organization');

/**
 * Organization fields only the current organization answers (the one x-organization-id chose: the caller's
 * role is its role there). Another organization in `viewer.organizations` shows its id, name and timezone.
 */
export function requireCurrentOrganization(org: OrganizationRow, ctx: RequestContext): void {
  if (org.id !== ctx.caller.organizationId) {
    throw new AppError('FORBIDDEN', `Send x-organization-id: ${org.id} to read this organization's details.`, undefined, { fieldLevel: true });
  }
}

builder.node(OrganizationRef, {
  description: "The caller's organization.",
  id: { resolve: (row) => row.id },
  // Only the caller's own organization can be loaded by id.
  loadOne: (id, ctx) => (id === ctx.caller.organizationId ? getOrganization(ctx.deps.db, id) : null),
  fields: (t) => ({
    name: t.exposeString('name'),
    timezone: t.exposeString('timezone', { description: 'IANA time zone, for displaying times locally.' }),
    credits: t.int({
      description: 'Credit balance: one credit per SMS segment, more for MMS.',
      resolve: (org, _args, ctx) => {
        requireCurrentOrganization(org, ctx);
        return org.credits;
      },
    }),
    phoneNumbers: t.field({
      type: [PhoneNumberRef],
      description: 'Sending numbers, the default first.',
      resolve: (org, _args, ctx) => {
        requireCurrentOrganization(org, ctx);
        return phoneNumbersOfOrganization(ctx.deps.db, org.id);
      },
    }),
    defaultPhoneNumber: t.field({
      type: PhoneNumberRef,
      nullable: true,
      resolve: async (org, _args, ctx) => {
        requireCurrentOrganization(org, ctx);
        return (await phoneNumbersOfOrganization(ctx.deps.db, org.id)).find((number) => number.isDefault) ?? null;
      },
    }),
  }),
});

builder.queryField('organization', (t) =>
  t.field({
    type: OrganizationRef,
    description: "The caller's organization (chosen by the API token and `x-organization-id`).",
    resolve: (_root, _args, ctx) => getOrganization(ctx.deps.db, ctx.caller.organizationId),
  }),
);
