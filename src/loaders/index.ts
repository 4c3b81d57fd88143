import DataLoader from 'dataloader';
import type { DbOrTx } from '../db/client.js';
import type { ContactRow, ConversationRow, MessageRow, PhoneNumberRow } from '../db/tables.js';
import { contactsByIds, contactsByPhones } from '../services/contacts.js';
import { conversationsByIds, conversationsByPhones, type ConversationListItem } from '../services/conversations.js';
import { messagePages, messagesByIds, type MessagePage, type MessagePageRequest } from '../services/messages.js';
import { phoneNumbersByIds } from '../services/organizations.js';

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

  // One loader per distinct page request (walk, size, cursors), each batching over conversations.
  const pageLoaders = new Map<string, DataLoader<string, MessagePage>>();
  const messagePage = (conversationId: string, request: MessagePageRequest) => {
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
    return loader.load(conversationId);
  };

  return {
    contact,
    contactByPhone,
    conversation,
    conversationByPhone,
    message,
    phoneNumber,
    messagePage,
    /** Seeds the loaders with rows a list query already joined in, so resolvers don't fetch them again. */
    primeConversationItems(items: ConversationListItem[]) {
      for (const item of items) {
        conversation.prime(item.conversation.id, item.conversation);
        conversationByPhone.prime(item.conversation.phoneNumber, item.conversation);
        if (item.contact) contact.prime(item.contact.id, item.contact);
        if (item.lastMessage) message.prime(item.lastMessage.id, item.lastMessage);
      }
    },
    /** Forgets cached rows after a write in the same request. */
    clearConversation(row: ConversationRow) {
      conversation.clear(row.id).prime(row.id, row);
      conversationByPhone.clear(row.phoneNumber).prime(row.phoneNumber, row);
    },
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
