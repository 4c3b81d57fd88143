import type { ContactRow } from '../../db/tables.js';
import { AppError, badUserInput } from '../../errors.js';
import { contactCursor, deleteContact, listContacts, updateContact } from '../../services/contacts.js';
import { DEFAULT_PAGE_SIZE, pageSize } from '../../services/pages.js';
import { normalizePhone } from '../../services/phone.js';
import { createContactWithLookup } from '../../services/textability.js';
import { builder } from '../builder.js';
import { uuidOfNodeId } from '../global-ids.js';
import { ContactAlreadyExistsError, ContactHasConversationError, ContactNotFoundError, typedError } from './errors.js';
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
    tags: t.exposeStringList('tags', { description: 'Lower-cased and trimmed, at most 50, each at most 64 characters.' }),
    customFields: t.field({
      type: 'JSONObject',
      description: 'String values by key (letters, digits, _ and -), at most 50; a key is a merge field `{{custom.<key>}}`.',
      resolve: (contact) => contact.customFields,
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime', description: 'Moves on every change (the `contacts` order).' }),
    conversation: t.field({
      type: ConversationRef,
      nullable: true,
      description: 'The conversation with this number, or null (batched over a page).',
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
  tags: ['tags'],
  customFields: ['customFields'],
  createdAt: ['createdAt'],
  updatedAt: ['updatedAt'],
  conversation: ['phoneNumber'],
};

const CreateContactInputType = builder.inputType('CreateContactInput', {
  fields: (t) => ({
    phoneNumber: t.string({ required: true, description: 'Any standard US format; stored as E.164.' }),
    firstName: t.string(),
    lastName: t.string(),
    isOptedIn: t.boolean({ defaultValue: true, description: 'Whether the person agreed to receive texts (default true).' }),
    tags: t.stringList({ description: 'Lower-cased, trimmed and deduplicated; empty ones dropped; at most 50 of at most 64 characters.' }),
    customFields: t.field({
      type: 'JSONObject',
      description: 'String values only; keys of letters, digits, _ and - (at most 64); at most 50; empty values dropped.',
    }),
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
    tags: t.stringList({ description: 'Replaces the tags (null or [] removes them all).' }),
    customFields: t.field({ type: 'JSONObject', description: 'Replaces the custom fields (null or {} removes them all).' }),
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
        tags: input.tags,
        customFields: input.customFields,
      }).catch(rethrowTyped);
      ctx.loaders.contact.prime(contact.id, contact);
      return { contact };
    },
  }),
  updateContact: t.field({
    type: UpdateContactPayloadRef,
    description: "Changes a contact's names, tags, custom fields or consent; omitted fields stay as they are.",
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
        tags: input.tags,
        customFields: input.customFields,
      }).catch(rethrowTyped);
      ctx.loaders.contact.clear(contact.id).prime(contact.id, contact);
      ctx.loaders.contactByPhone.clear(contact.phoneNumber).prime(contact.phoneNumber, contact);
      return { contact };
    },
  }),
}));

const TagsModeEnum = builder.enumType('TagsMode', {
  values: {
    ANY: { description: 'Contacts with at least one of the tags (the default).' },
    ALL: { description: 'Contacts with every one of the tags.' },
  } as const,
});

const ContactFilterInput = builder.inputType('ContactFilter', {
  description: 'Filters combine with AND.',
  fields: (t) => ({
    search: t.string({ description: 'First or last name (case-insensitive, partial), or phone digits in any format: "(415) 555" finds +14155550123.' }),
    tags: t.stringList({ description: 'Tags, compared as stored (lower-cased, trimmed). An empty list is no condition.' }),
    tagsMode: t.field({ type: TagsModeEnum, defaultValue: 'ANY', description: 'ANY (default) or ALL of `tags`.' }),
    isTextable: t.boolean({ description: 'true: textable; false: not textable. Contacts whose lookup is pending match neither.' }),
    optedOut: t.boolean({ description: 'true: only opted-out contacts; false: only opted-in ones.' }),
  }),
});

const ContactConnectionRef = builder.connectionObject(
  { type: ContactRef, name: 'ContactConnection', description: 'Contacts, most recently updated first.' },
  { name: 'ContactEdge' },
);

builder.queryFields((t) => ({
  contacts: t.field({
    type: ContactConnectionRef,
    description: 'Contacts, most recently updated first (keyset cursors over updatedAt and id). Default page 50, at most 200.',
    args: {
      first: t.arg.int({ description: 'Page size, 0 to 200 (default 50).' }),
      after: t.arg.string({ description: '`pageInfo.endCursor` of the previous page.' }),
      filter: t.arg({ type: ContactFilterInput }),
    },
    resolve: async (_root, args, ctx) => {
      const organizationId = ctx.caller.organizationId;
      const first = pageSize(args.first, 'first') ?? DEFAULT_PAGE_SIZE;
      const { rows, hasNextPage } = await listContacts(ctx.deps.db, organizationId, { first, after: args.after, filter: args.filter });
      for (const row of rows) ctx.loaders.contact.prime(row.id, row);
      const edges = rows.map((node) => ({ cursor: contactCursor(organizationId, node), node }));
      return {
        edges,
        pageInfo: { hasNextPage, hasPreviousPage: Boolean(args.after), startCursor: edges[0]?.cursor ?? null, endCursor: edges.at(-1)?.cursor ?? null },
      };
    },
  }),
}));

const DeleteContactPayloadRef = builder
  .objectRef<{ contact: ContactRow; conversationId: string | null }>('DeleteContactPayload')
  .implement({
    description: 'What was deleted.',
    fields: (t) => ({
      deletedContactId: t.globalID({ description: 'The Node id the contact had.', resolve: (p) => ({ type: 'Contact', id: p.contact.id }) }),
      deletedContactUuid: t.string({ description: 'Its raw UUID.', resolve: (p) => p.contact.id }),
      erasedConversationId: t.globalID({
        nullable: true,
        description: 'The Node id of the conversation erased with it (eraseHistory), or null when it had none.',
        resolve: (p) => (p.conversationId ? { type: 'Conversation', id: p.conversationId } : null),
      }),
    }),
  });

builder.mutationFields((t) => ({
  deleteContact: t.field({
    type: DeleteContactPayloadRef,
    description:
      'Deletes a contact (ADMIN and OWNER). A contact with a conversation is refused (CONTACT_HAS_CONVERSATION) unless ' +
      'eraseHistory is true: then its conversation, messages, notes and consent history are deleted with it, in one transaction.',
    args: {
      id: t.arg.id({ required: true, description: 'The contact: its Node id or raw UUID.' }),
      eraseHistory: t.arg.boolean({ description: 'Also delete its conversation, messages, notes and consent history.' }),
    },
    errors: { types: [ContactNotFoundError, ContactHasConversationError], directResult: true, union: { name: 'DeleteContactResult' } },
    resolve: async (_root, args, ctx) => {
      const deleted = await deleteContact(ctx.deps, ctx.caller, uuidOfNodeId(args.id, 'Contact'), { eraseHistory: args.eraseHistory }).catch(rethrowTyped);
      ctx.loaders.contact.clear(deleted.contact.id);
      ctx.loaders.contactByPhone.clear(deleted.contact.phoneNumber);
      ctx.loaders.conversationByPhone.clear(deleted.contact.phoneNumber);
      if (deleted.conversationId) ctx.loaders.conversation.clear(deleted.conversationId);
      return deleted;
    },
  }),
}));
