import type { ConsentEventRow } from '../../db/tables.js';
import { builder } from '../builder.js';
import { ContactRef } from './contact.js';
import { MessageRef } from './message.js';

export const ConsentKindEnum = builder.enumType('ConsentKind', {
  values: {
    OPT_OUT: { value: 'opt_out', description: 'The contact may no longer be texted.' },
    OPT_IN: { value: 'opt_in', description: 'The contact may be texted again.' },
  } as const,
});

export const ConsentEventRef = builder.objectRef<ConsentEventRow>('ConsentEvent');

ConsentEventRef.implement({
  description: "One change of a contact's consent: an opt-out or opt-in keyword, or a carrier-reported unsubscribe.",
  fields: (t) => ({
    kind: t.field({ type: ConsentKindEnum, resolve: (event) => event.kind }),
    keyword: t.exposeString('keyword', { nullable: true, description: 'The keyword the contact sent (STOP, START, ...), upper case.' }),
    source: t.exposeString('source', {
      description: '`keyword`: an inbound keyword; `provider_error`: the provider refused a send because the contact unsubscribed (21610).',
    }),
    message: t.field({
      type: MessageRef,
      nullable: true,
      description: 'The message that caused the change.',
      resolve: (event, _args, ctx) => (event.messageId ? ctx.loaders.message.load(event.messageId) : null),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

builder.objectField(ContactRef, 'consentEvents', (t) =>
  t.field({
    type: [ConsentEventRef],
    description: 'Consent history, oldest first.',
    resolve: (contact, _args, ctx) => ctx.loaders.consentEvents.load(contact.id),
  }),
);
