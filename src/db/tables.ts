import { sql } from 'drizzle-orm';
import {
  boolean,
  check,
  doublePrecision,
  foreignKey,
  index,
  integer,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

// Every tenant table carries organization_id and leads its primary, unique and foreign keys with it,
// so the schema can be distributed by organization (Citus) without a rewrite. The two global lookups
// that must work before the organization is known (token hash, inbound `To` number, short-link code)
// are the exceptions; in a distributed setup those tables become reference tables.

// Millisecond precision: JavaScript dates carry milliseconds, and keyset cursors must round-trip exactly.
const timestamptz = (name: string) => timestamp(name, { withTimezone: true, precision: 3, mode: 'date' });

export const organizations = pgTable(
  'organizations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    timezone: text('timezone').notNull().default('America/New_York'),
    credits: integer('credits').notNull().default(0),
    /** Base URL for short links of this organization; PUBLIC_BASE_URL when null. */
    shortLinkBaseUrl: text('short_link_base_url'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [check('organizations_credits_non_negative', sql`${t.credits} >= 0`)],
);

export const apiTokens = pgTable(
  'api_tokens',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    /** SHA-256 hex of the token; the token itself is never stored. */
    tokenHash: text('token_hash').notNull(),
    name: text('name'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    revokedAt: timestamptz('revoked_at'),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.id] }), uniqueIndex('api_tokens_token_hash_key').on(t.tokenHash)],
);

export const phoneNumbers = pgTable(
  'phone_numbers',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    /** E.164. Globally unique: inbound messages are routed to an organization by their `To` number. */
    phoneNumber: text('phone_number').notNull(),
    isDefault: boolean('is_default').notNull().default(false),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    uniqueIndex('phone_numbers_phone_number_key').on(t.phoneNumber),
    // At most one default sending number per organization.
    uniqueIndex('phone_numbers_one_default_per_org').on(t.organizationId).where(sql`${t.isDefault}`),
  ],
);

export const contacts = pgTable(
  'contacts',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    phoneNumber: text('phone_number').notNull(),
    firstName: text('first_name'),
    lastName: text('last_name'),
    /** true: can receive SMS; false: landline/VoIP; null: lookup pending. */
    isTextable: boolean('is_textable'),
    isOptedIn: boolean('is_opted_in').notNull().default(true),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    uniqueIndex('contacts_org_phone_key').on(t.organizationId, t.phoneNumber),
  ],
);

export const conversations = pgTable(
  'conversations',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    contactId: uuid('contact_id'),
    /** E.164 phone number of the contact; one conversation per organization and number. */
    phoneNumber: text('phone_number').notNull(),
    lastMessageId: uuid('last_message_id'),
    lastMessageBody: text('last_message_body'),
    lastMessageAt: timestamptz('last_message_at').notNull().defaultNow(),
    lastDirection: text('last_direction', { enum: ['incoming', 'outgoing'] }),
    unreadCount: integer('unread_count').notNull().default(0),
    isArchived: boolean('is_archived').notNull().default(false),
    isStarred: boolean('is_starred').notNull().default(false),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    uniqueIndex('conversations_org_phone_key').on(t.organizationId, t.phoneNumber),
    // DESC with PostgreSQL's default NULLS FIRST (Drizzle's bare .desc() writes NULLS LAST), so a plain
    // `ORDER BY last_message_at DESC, id DESC` walks the index, from any client, instead of sorting.
    index('conversations_org_recent_idx').on(t.organizationId, t.lastMessageAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
    foreignKey({
      name: 'conversations_contact_fk',
      columns: [t.organizationId, t.contactId],
      foreignColumns: [contacts.organizationId, contacts.id],
    }),
    check('conversations_unread_non_negative', sql`${t.unreadCount} >= 0`),
  ],
);

export const messages = pgTable(
  'messages',
  {
    // No foreign key of its own to organizations: messages_conversation_fk (organization_id, conversation_id)
    // names a conversation of this organization, whose own key to organizations cascades down to here. A
    // second check on every insert bought nothing.
    organizationId: uuid('organization_id').notNull(),
    id: uuid('id').notNull().defaultRandom(),
    conversationId: uuid('conversation_id').notNull(),
    direction: text('direction', { enum: ['incoming', 'outgoing'] }).notNull(),
    body: text('body').notNull().default(''),
    mediaUrls: text('media_urls').array().notNull().default(sql`'{}'::text[]`),
    /** Twilio's status, lower case (queued, sending, sent, delivered, undelivered, failed, ...); null for incoming. */
    status: text('status'),
    provider: text('provider'),
    providerMessageId: text('provider_message_id'),
    fromPhoneNumberId: uuid('from_phone_number_id'),
    sentiment: text('sentiment', { enum: ['positive', 'negative', 'neutral'] }),
    sentimentScore: doublePrecision('sentiment_score'),
    category: text('category'),
    requiresResponse: boolean('requires_response'),
    optOutDetected: boolean('opt_out_detected'),
    errorCode: integer('error_code'),
    segments: integer('segments'),
    encoding: text('encoding'),
    creditsCharged: integer('credits_charged').notNull().default(0),
    idempotencyKey: text('idempotency_key'),
    /** Inbound: arrived while its sender was flooding the number (over INBOUND_FLOOD_PER_MINUTE); stored all the same. */
    flaggedAsFlood: boolean('flagged_as_flood').notNull().default(false),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    // The provider id and idempotency key indexes hold only rows that have one: a send is stored before the
    // provider names it, and most sends carry no key, so the insert skips these index entries (the lookups
    // all ask for a value, which implies not null; unique violations keep these names).
    // The one key led by another column than organization_id (it still holds it, which is what distributing
    // by organization needs): Twilio status callbacks name a message by its SID alone, and this one index
    // serves them and the per-organization lookups, where a second SID-only index cost every stored
    // provider id (each send) an entry in another large, randomly written index.
    uniqueIndex('messages_org_provider_message_id_key')
      .on(t.providerMessageId, t.organizationId)
      .where(sql`${t.providerMessageId} is not null`),
    uniqueIndex('messages_org_idempotency_key')
      .on(t.organizationId, t.idempotencyKey)
      .where(sql`${t.idempotencyKey} is not null`),
    // Keyset pagination: newest first within a conversation.
    index('messages_org_conversation_recent_idx').on(
      t.organizationId,
      t.conversationId,
      t.createdAt.desc().nullsFirst(),
      t.id.desc().nullsFirst(),
    ),
    // Charged sends still waiting for the provider's answer: a send is in it from its reservation to its answer
    // (the provider id) or its refund (credits back to 0) a moment later, so it stays tiny; the sweep of
    // sends in doubt (replies/sends-in-doubt.ts) finds the old ones here. Not `status`: a column an index names makes
    // every update of it non-HOT, and status callbacks update nothing else.
    index('messages_awaiting_answer_idx')
      .on(t.createdAt)
      .where(sql`${t.providerMessageId} is null and ${t.direction} = 'outgoing' and ${t.creditsCharged} > 0`),
    // Organization-wide inbound stream in (time, id) order: messageReceived replays from a cursor.
    index('messages_org_inbound_stream_idx')
      .on(t.organizationId, t.createdAt, t.id)
      .where(sql`${t.direction} = 'incoming'`),
    foreignKey({
      name: 'messages_conversation_fk',
      columns: [t.organizationId, t.conversationId],
      foreignColumns: [conversations.organizationId, conversations.id],
    }).onDelete('cascade'),
  ],
);

/** Every status a message went through, in arrival order (Twilio callbacks can arrive out of order). */
export const messageStatusEvents = pgTable(
  'message_status_events',
  {
    organizationId: uuid('organization_id').notNull(),
    id: uuid('id').notNull().defaultRandom(),
    messageId: uuid('message_id').notNull(),
    status: text('status').notNull(),
    errorCode: integer('error_code'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [
    // Keyed by message: the one key serves a message's history and the cascade from messages, so each
    // event costs one index entry, not two (three events per reply). A message has a handful of
    // events, sorted by created_at when read.
    primaryKey({ columns: [t.organizationId, t.messageId, t.id] }),
    foreignKey({
      name: 'message_status_events_message_fk',
      columns: [t.organizationId, t.messageId],
      foreignColumns: [messages.organizationId, messages.id],
    }).onDelete('cascade'),
  ],
);

/** Consent history: opt-outs and opt-ins, with the keyword and message that caused them. */
export const consentEvents = pgTable(
  'consent_events',
  {
    organizationId: uuid('organization_id').notNull(),
    id: uuid('id').notNull().defaultRandom(),
    contactId: uuid('contact_id').notNull(),
    kind: text('kind', { enum: ['opt_out', 'opt_in'] }).notNull(),
    keyword: text('keyword'),
    messageId: uuid('message_id'),
    source: text('source').notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    index('consent_events_contact_idx').on(t.organizationId, t.contactId, t.createdAt),
    foreignKey({
      name: 'consent_events_contact_fk',
      columns: [t.organizationId, t.contactId],
      foreignColumns: [contacts.organizationId, contacts.id],
    }).onDelete('cascade'),
  ],
);

/** Short links replacing URLs in outgoing messages; `code` is global because `/l/<code>` carries no tenant. */
export const shortLinks = pgTable(
  'short_links',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    code: text('code').notNull(),
    url: text('url').notNull(),
    /** The link exactly as it went out in the message (base URL + /l/ + code). */
    shortUrl: text('short_url'),
    messageId: uuid('message_id'),
    clicks: integer('clicks').notNull().default(0),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    lastClickedAt: timestamptz('last_clicked_at'),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    uniqueIndex('short_links_code_key').on(t.code),
    index('short_links_message_idx').on(t.organizationId, t.messageId),
  ],
);

export type OrganizationRow = typeof organizations.$inferSelect;
export type ApiTokenRow = typeof apiTokens.$inferSelect;
export type PhoneNumberRow = typeof phoneNumbers.$inferSelect;
export type ContactRow = typeof contacts.$inferSelect;
export type ConversationRow = typeof conversations.$inferSelect;
export type MessageRow = typeof messages.$inferSelect;
export type ConsentEventRow = typeof consentEvents.$inferSelect;
export type ShortLinkRow = typeof shortLinks.$inferSelect;
