import DataLoader from 'dataloader';
import type { DbOrTx } from '../db/client.js';
import type { ConsentEventRow, ContactRow, ConversationRow, MessageRow, PhoneNumberRow, ShortLinkRow } from '../db/tables.js';
import { contactsByIds, contactsByPhones } from '../services/contacts.js';
import { consentEventsByContacts } from '../services/consent.js';
import { conversationsByIds, conversationsByPhones, type ConversationListItem } from '../services/conversations.js';
import {
  conversationWithMessagePage,
  messagePages,
  messagesByIds,
  type ConversationWithPage,
  type MessageColumns,
  type MessagePage,
  type MessagePageRequest,
  type PageArgs,
} from '../services/messages.js';
import { membersByUserIds, type Member } from '../services/members.js';
import { createNoteLoaders } from './notes.js';
import { phoneNumbersByIds } from '../services/organizations.js';
import { shortLinksByMessageIds } from '../services/short-links.js';

/** A loader that fetches rows by one of their keys and answers null for keys it did not find. */
function rowLoader<K extends string, R>(fetch: (keys: readonly K[]) => Promise<R[]>, keyOf: (row: R) => K) {
  return new DataLoader<K, R | null>(async (keys) => {
    const rows = await fetch(keys);
    const byKey = new Map(rows.map((row) => [keyOf(row), row]));
    return keys.map((key) => byKey.get(key) ?? null);
  });
}

/**
 * Per-request DataLoaders over the data layer, all scoped to one organization: a resolver cannot
 * read another tenant's rows through them. Created fresh for every request (GraphQL and REST).
 */
export function createLoaders(db: DbOrTx, organizationId: string) {
  const contact = rowLoader<string, ContactRow>((ids) => contactsByIds(db, organizationId, ids), (row) => row.id);
  const contactByPhone = rowLoader<string, ContactRow>((phones) => contactsByPhones(db, organizationId, phones), (row) => row.phoneNumber);
  const conversation = rowLoader<string, ConversationRow>((ids) => conversationsByIds(db, organizationId, ids), (row) => row.id);
  const conversationByPhone = rowLoader<string, ConversationRow>(
    (phones) => conversationsByPhones(db, organizationId, phones),
    (row) => row.phoneNumber,
  );
  const message = rowLoader<string, MessageRow>((ids) => messagesByIds(db, organizationId, ids), (row) => row.id);
  const phoneNumber = rowLoader<string, PhoneNumberRow>((ids) => phoneNumbersByIds(db, organizationId, ids), (row) => row.id);
  // Users are visible only while members of this organization (a former member's messages show no sender).
  const member = rowLoader<string, Member>((ids) => membersByUserIds(db, organizationId, ids), (row) => row.user.id);
  // A contact's consent history (oldest first); batched over every contact of a page.
  const consentEvents = new DataLoader<string, ConsentEventRow[]>(async (contactIds) => {
    const byContact = new Map<string, ConsentEventRow[]>();
    for (const row of await consentEventsByContacts(db, organizationId, contactIds)) {
      byContact.set(row.contactId, [...(byContact.get(row.contactId) ?? []), row]);
    }
    return contactIds.map((id) => byContact.get(id) ?? []);
  });
  // Short links of a message (sendReply's link shortening); batched over every message of a page.
  const shortLinks = new DataLoader<string, ShortLinkRow[]>(async (messageIds) => {
    const byMessage = new Map<string, ShortLinkRow[]>();
    for (const row of await shortLinksByMessageIds(db, organizationId, messageIds)) {
      if (row.messageId) byMessage.set(row.messageId, [...(byMessage.get(row.messageId) ?? []), row]);
    }
    return messageIds.map((id) => byMessage.get(id) ?? []);
  });

  // One loader per distinct page request (walk, size, cursors), each batching over conversations.
  const pageLoaders = new Map<string, DataLoader<string, MessagePage>>();
  const pageLoader = (request: MessagePageRequest) => {
    let loader = pageLoaders.get(request.key);
    if (!loader) {
      loader = new DataLoader<string, MessagePage>((conversationIds) =>
        messagePages(
          db,
          organizationId,
          conversationIds.map((id) => ({ conversationId: id, request })),
        ),
      );
      pageLoaders.set(request.key, loader);
    }
    return loader;
  };
  const messagePage = (conversationId: string, request: MessagePageRequest) => pageLoader(request).load(conversationId);
  const listed = new WeakMap<ConversationRow, ConversationListItem>();
  const primePage = (phoneNumber: string, result: ConversationWithPage | null): ConversationRow | null => {
    if (!result?.conversation) return null;
    conversation.prime(result.conversation.id, result.conversation);
    conversationByPhone.prime(phoneNumber, result.conversation);
    if (result.request && result.page) pageLoader(result.request).prime(result.conversation.id, result.page);
    return result.conversation;
  };

  return {
    contact,
    contactByPhone,
    conversation,
    conversationByPhone,
    message,
    phoneNumber,
    member,
    consentEvents,
    shortLinks,
    messagePage,
    ...createNoteLoaders(db, organizationId, member),
    /**
     * The conversation with this phone number, reading the page of messages the caller will ask for in
     * the same statement and priming `messagePage` with it: `messagePage(id, messagePageRequest(id, args, columns))`
     * then costs nothing. Answers like `conversationByPhone.load(phoneNumber)`.
     */
    async conversationWithMessagePage(phoneNumber: string, args: PageArgs, columns?: MessageColumns): Promise<ConversationRow | null> {
      return primePage(phoneNumber, await conversationWithMessagePage(db, organizationId, phoneNumber, args, columns));
    },
    /**
     * conversationWithMessagePage plus the organization's timezone, still one statement (the REST
     * messages route). null: the organization is gone.
     */
    async conversationPageWithTimezone(
      phoneNumber: string,
      args: PageArgs,
      columns?: MessageColumns,
    ): Promise<{ conversation: ConversationRow | null; timezone: string } | null> {
      const result = await conversationWithMessagePage(db, organizationId, phoneNumber, args, columns, { withTimezone: true });
      if (!result?.timezone) return null;
      return { conversation: primePage(phoneNumber, result), timezone: result.timezone };
    },
    /**
     * Seeds the loaders with rows a list query already joined in, so resolvers don't fetch them again.
     * `partial` rows (read with only the columns a selection shows) answer only `listedWith`: a loader
     * hands its rows to any field.
     */
    primeConversationItems(items: ConversationListItem[], options: { partial?: boolean } = {}) {
      for (const item of items) {
        listed.set(item.conversation, item);
        if (options.partial) continue;
        conversation.prime(item.conversation.id, item.conversation);
        conversationByPhone.prime(item.conversation.phoneNumber, item.conversation);
        if (item.contact) contact.prime(item.contact.id, item.contact);
        if (item.lastMessage) message.prime(item.lastMessage.id, item.lastMessage);
      }
    },
    /**
     * The contact and last message a list read with this very conversation row, answered without a
     * promise (a DataLoader answers even a primed key through one): the inbox resolves both for every row.
     */
    listedWith(row: ConversationRow): ConversationListItem | undefined {
      return listed.get(row);
    },
    /** Forgets cached rows after a write in the same request. */
    clearConversation(row: ConversationRow) {
      conversation.clear(row.id).prime(row.id, row);
      conversationByPhone.clear(row.phoneNumber).prime(row.phoneNumber, row);
    },
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
