import type { ContactRow } from '../../db/tables.js';
import { AppError, badUserInput } from '../../errors.js';
import { updateContact } from '../../services/contacts.js';
import { normalizePhone } from '../../services/phone.js';
import { createContactWithLookup } from '../../services/textability.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { ContactAlreadyExistsError, ContactNotFoundError, typedError } from './errors.js';
import { ConversationRef } from './refs.js';

export const ContactRef = builder.objectRef<ContactRow>('Contact');

builder.node(ContactRef, {
  description: 'A person the organization texts with, keyed by phone number.',
  id: { resolve: (row) => row.id },
  loadOne: (id, ctx) => ctx.loaders.contact.load(id),
  fields: (t) => ({
    uuid: t.exposeString('id', { description: 'Raw UUID, as the REST API returns it (`contactId`).' }),
    phoneNumber: t.exposeString('phoneNumber', { description: 'E.164.' }),
    firstName: t.exposeString('firstName', { nullable: true }),
    lastName: t.exposeString('lastName', { nullable: true }),
    isTextable: t.exposeBoolean('isTextable', {
      nullable: true,
      description: 'true: can receive SMS; false: landline or VoIP; null: textability lookup pending.',
    }),
    isOptedIn: t.exposeBoolean('isOptedIn', { description: 'false once the contact opted out (STOP).' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    conversation: t.field({
      type: ConversationRef,
      nullable: true,
      resolve: (contact, _args, ctx) => ctx.loaders.conversationByPhone.load(contact.phoneNumber),
    }),
  }),
});

/** The row fields each Contact field reads (list reads select only those); a field not listed reads the whole row. */
export const CONTACT_FIELD_COLUMNS: Record<string, readonly (keyof ContactRow)[]> = {
  __typename: [],
  id: ['id'],
  uuid: ['id'],
  phoneNumber: ['phoneNumber'],
  firstName: ['firstName'],
  lastName: ['lastName'],
  isTextable: ['isTextable'],
  isOptedIn: ['isOptedIn'],
  createdAt: ['createdAt'],
  conversation: ['phoneNumber'],
};

const CreateContactInputType = builder.inputType('CreateContactInput', {
  fields: (t) => ({
    phoneNumber: t.string({ required: true, description: 'Any standard US format; stored as E.164.' }),
    firstName: t.string(),
    lastName: t.string(),
    isOptedIn: t.boolean({ defaultValue: true, description: 'Whether the person agreed to receive texts (default true).' }),
  }),
});

const UpdateContactInputType = builder.inputType('UpdateContactInput', {
  description: 'Names the contact by `id` or by `phoneNumber`. Omitted fields stay as they are; null clears a name.',
  fields: (t) => ({
    id: t.id({ description: 'The contact: its Node id or raw UUID.' }),
    phoneNumber: t.string({ description: "The contact's number, when no id is given." }),
    firstName: t.string(),
    lastName: t.string(),
    isOptedIn: t.boolean({ description: 'A change is recorded in the consent history (source `api`).' }),
  }),
});

const ContactPayloadFields = (name: string, description: string) => {
  const ref = builder.objectRef<{ contact: ContactRow }>(name);
  ref.implement({ description, fields: (t) => ({ contact: t.field({ type: ContactRef, resolve: (p) => p.contact }) }) });
  return ref;
};
const CreateContactPayloadRef = ContactPayloadFields(
  'CreateContactPayload',
  'The new contact. `isTextable` is null while its line-type lookup is pending (usually settled by the time this returns).',
);
const UpdateContactPayloadRef = ContactPayloadFields('UpdateContactPayload', 'The updated contact.');

const rethrowTyped = (error: unknown): never => {
  throw error instanceof AppError ? typedError(error) : error;
};

builder.mutationFields((t) => ({
  createContact: t.field({
    type: CreateContactPayloadRef,
    description: 'Creates a contact and starts its textability lookup (mobile: textable; landline or VoIP: not).',
    args: { input: t.arg({ type: CreateContactInputType, required: true }) },
    errors: { types: [ContactAlreadyExistsError], directResult: true, union: { name: 'CreateContactResult' } },
    resolve: async (_root, { input }, ctx) => {
      const contact = await createContactWithLookup(ctx.deps, ctx.caller.organizationId, {
        phoneNumber: input.phoneNumber,
        firstName: input.firstName,
        lastName: input.lastName,
        isOptedIn: input.isOptedIn ?? true,
      }).catch(rethrowTyped);
      ctx.loaders.contact.prime(contact.id, contact);
      return { contact };
    },
  }),
  updateContact: t.field({
    type: UpdateContactPayloadRef,
    description: "Changes a contact's names or consent.",
    args: { input: t.arg({ type: UpdateContactInputType, required: true }) },
    errors: { types: [ContactNotFoundError], directResult: true, union: { name: 'UpdateContactResult' } },
    resolve: async (_root, { input }, ctx) => {
      const organizationId = ctx.caller.organizationId;
      let contactId: string;
      if (input.id !== null && input.id !== undefined) contactId = uuidOfNodeId(input.id, 'Contact');
      else if (input.phoneNumber) {
        const phoneNumber = normalizePhone(input.phoneNumber);
        const found = await ctx.loaders.contactByPhone.load(phoneNumber);
        if (!found) throw typedError(new AppError('CONTACT_NOT_FOUND', `No contact with ${phoneNumber} in your organization.`, { phoneNumber }));
        contactId = found.id;
      } else throw badUserInput('Pass the contact as id or phoneNumber.', { field: 'id' });
      const contact = await updateContact(ctx.deps.db, organizationId, contactId, {
        firstName: input.firstName,
        lastName: input.lastName,
        isOptedIn: input.isOptedIn ?? undefined,
      }).catch(rethrowTyped);
      ctx.loaders.contact.clear(contact.id).prime(contact.id, contact);
      ctx.loaders.contactByPhone.clear(contact.phoneNumber).prime(contact.phoneNumber, contact);
      return { contact };
    },
  }),
}));
