import { sql } from 'drizzle-orm';
import {
  boolean,
  check,
  doublePrecision,
  foreignKey,
  index,
  integer,
  jsonb,
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

/**
 * People. Global, not per organization: one person may work in several organizations (memberships), and
 * signs in with one email. Emails are unique compared case-insensitively and kept as the person wrote them.
 */
export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    email: text('email').notNull(),
    name: text('name'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [uniqueIndex('users_email_key').on(sql`lower(${t.email})`)],
);

export const MEMBER_ROLES = ['owner', 'admin', 'agent'] as const;
export type MemberRoleValue = (typeof MEMBER_ROLES)[number];

/** A user's role in one organization. */
export const memberships = pgTable(
  'memberships',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    role: text('role', { enum: MEMBER_ROLES }).notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.userId] }),
    // A user's organizations (a user token without x-organization-id).
    index('memberships_user_idx').on(t.userId),
    check('memberships_role_known', sql`${t.role} in ('owner', 'admin', 'agent')`),
  ],
);

export const apiTokens = pgTable(
  'api_tokens',
  {
    /** The organization the token was issued in; an integration token acts only there. */
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    /** SHA-256 hex of the token; the token itself is never stored. */
    tokenHash: text('token_hash').notNull(),
    name: text('name'),
    /** null: an integration token (no person). Otherwise the token acts as this user. */
    userId: uuid('user_id').references(() => users.id, { onDelete: 'cascade' }),
    /**
     * A user token that acts in every organization its user belongs to (one the user made for itself, or the
     * operator's CLI made). false: only in the organization that issued it, so an ADMIN of one organization
     * cannot mint a token that acts in another.
     */
    anyOrganization: boolean('any_organization').notNull().default(false),
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
    /** A Twilio Messaging Service (MG…): replies from this number are created with MessagingServiceSid, not From. */
    messagingServiceSid: text('messaging_service_sid'),
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
    /** Lower-cased, trimmed, at most 50 (services/contacts.ts keeps them so). */
    tags: text('tags').array().notNull().default(sql`'{}'::text[]`),
    /** String values only, at most 50 keys: merge fields `{{custom.<key>}}`. */
    customFields: jsonb('custom_fields').$type<Record<string, string>>().notNull().default({}),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    uniqueIndex('contacts_org_phone_key').on(t.organizationId, t.phoneNumber),
    // The contacts connection: newest updated first, keyset over (updated_at, id); filters are checked along the walk.
    index('contacts_org_updated_idx').on(t.organizationId, t.updatedAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
    // Tag filters (ANY: &&, ALL: @>).
    index('contacts_tags_idx').using('gin', t.tags),
  ],
);

export const CONVERSATION_STATUSES = ['open', 'pending', 'snoozed', 'resolved'] as const;
export type ConversationStatusValue = (typeof CONVERSATION_STATUSES)[number];

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
    status: text('status', { enum: CONVERSATION_STATUSES }).notNull().default('open'),
    /** When a snooze ends (the conversation is OPEN again); set only while SNOOZED. */
    snoozedUntil: timestamptz('snoozed_until'),
    /** When it was resolved; set only while RESOLVED. */
    resolvedAt: timestamptz('resolved_at'),
    /** The member who owns the thread; always a member of the organization (conversations_assignee_fk). */
    assigneeUserId: uuid('assignee_user_id'),
    /**
     * The oldest inbound message after our last outgoing one: how long the contact has waited for an answer.
     * null when the last message is ours, or there is none. Kept by every writer of messages.
     */
    waitingSince: timestamptz('waiting_since'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    uniqueIndex('conversations_org_phone_key').on(t.organizationId, t.phoneNumber),
    // "Mine" and "assigned to": one member's threads in inbox order, without walking everyone else's.
    index('conversations_org_assignee_recent_idx')
      .on(t.organizationId, t.assigneeUserId, t.lastMessageAt.desc().nullsFirst(), t.id.desc().nullsFirst())
      .where(sql`${t.assigneeUserId} is not null`),
    // WAITING_LONGEST: the waiting threads, oldest wait first; the others follow in inbox order.
    index('conversations_org_waiting_idx')
      .on(t.organizationId, t.waitingSince, t.id)
      .where(sql`${t.waitingSince} is not null`),
    // Snoozes that end: the sweep reads the due ones only.
    index('conversations_snoozed_until_idx').on(t.snoozedUntil).where(sql`${t.status} = 'snoozed'`),
    foreignKey({
      name: 'conversations_assignee_fk',
      columns: [t.organizationId, t.assigneeUserId],
      foreignColumns: [memberships.organizationId, memberships.userId],
    }),
    check('conversations_status_known', sql`${t.status} in ('open', 'pending', 'snoozed', 'resolved')`),
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
    /**
     * Outgoing: the member who sent it (null for integration tokens and automatic sends). No foreign key:
     * users are never deleted, and a check on every send would buy nothing.
     */
    sentByUserId: uuid('sent_by_user_id'),
    /** Outgoing: the sender Twilio reports (a Messaging Service picks it from its pool), E.164. */
    sentFrom: text('sent_from'),
    /** When the provider call of this send timed out or lost its connection: it may have been sent (SEND_IN_DOUBT). */
    inDoubtAt: timestamptz('in_doubt_at'),
    /**
     * A scheduled reply: when it is due. While status is `scheduled` its created_at is this time too, so it sits
     * where it will go out in the thread; it keeps the time after it went out (or failed, or was canceled).
     */
    sendAt: timestamptz('send_at'),
    /** Why a scheduled reply failed at send time, as an error code of errors.ts (SCHEDULE_EXPIRED, INSUFFICIENT_CREDITS, ...). */
    failureCode: text('failure_code'),
    /** A scheduled reply's send options, kept until it goes out (route, credits, wanted sending number). */
    sendOptions: jsonb('send_options').$type<Record<string, unknown>>(),
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

/**
 * Who changed what, written in the transaction of the change. The actor is a user (possibly through a
 * token), or an integration token; automatic changes (an inbound message reopening a thread, a snooze
 * ending) are not audited: their cause is in the thread itself.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    /** member.added, member.role_changed, member.removed, token.created, token.revoked, conversation.assigned, conversation.status_changed */
    action: text('action').notNull(),
    actorUserId: uuid('actor_user_id'),
    actorTokenId: uuid('actor_token_id'),
    /** user, api_token, conversation */
    objectType: text('object_type').notNull(),
    objectId: uuid('object_id').notNull(),
    /** What changed (from/to values), never secrets. */
    data: jsonb('data').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    index('audit_events_org_recent_idx').on(t.organizationId, t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
  ],
);

/**
 * Background work, claimed with FOR UPDATE SKIP LOCKED by any instance (services/jobs/). A claim moves run_at
 * forward by the job's lease, so a job whose instance died is due again when the lease ends; a job is
 * deleted when its handler finishes, and moved to a later run_at when it must be tried again.
 */
export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey(),
    /** Which handler runs it (scheduled_reply, ...). */
    queue: text('queue').notNull(),
    /** Unique when set: one job per thing (a scheduled reply's job is keyed by its message). */
    key: text('key'),
    organizationId: uuid('organization_id'),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull().default({}),
    runAt: timestamptz('run_at').notNull().defaultNow(),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [index('jobs_due_idx').on(t.runAt, t.id), uniqueIndex('jobs_key_key').on(t.key)],
);

export type OrganizationRow = typeof organizations.$inferSelect;
export type UserRow = typeof users.$inferSelect;
export type MembershipRow = typeof memberships.$inferSelect;
export type AuditEventRow = typeof auditEvents.$inferSelect;
export type ApiTokenRow = typeof apiTokens.$inferSelect;
export type PhoneNumberRow = typeof phoneNumbers.$inferSelect;
export type ContactRow = typeof contacts.$inferSelect;
export type ConversationRow = typeof conversations.$inferSelect;
export type MessageRow = typeof messages.$inferSelect;
export type ConsentEventRow = typeof consentEvents.$inferSelect;
export type ShortLinkRow = typeof shortLinks.$inferSelect;
export type JobRow = typeof jobs.$inferSelect;
