import type { ContactRow } from '../../db/tables.js';
import { builder } from '../builder.js';
import { ConversationRef } from './conversation.js';

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
