import { sql } from 'drizzle-orm';
import { foreignKey, index, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { conversations, organizations } from './tables.js';

// The tables of teamwork on a thread (issue 17): internal notes and their mentions, saved replies. Kept
// beside tables.ts (the core model) by the same rules: organization_id leads every key.

const timestamptz = (name: string) => timestamp(name, { withTimezone: true, precision: 3, mode: 'date' });

/** Internal notes on a conversation: never sent, never in the REST routes, no effect on unread or last message. */
export const notes = pgTable(
  'notes',
  {
    organizationId: uuid('organization_id').notNull(),
    /** uuidv7: time-ordered, so (created_at, id) keysets agree with insertion order. */
    id: uuid('id').notNull(),
    conversationId: uuid('conversation_id').notNull(),
    /** The member who wrote it; null for an integration token. */
    authorUserId: uuid('author_user_id'),
    body: text('body').notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.id] }),
    index('notes_org_conversation_recent_idx').on(t.organizationId, t.conversationId, t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
    foreignKey({
      name: 'notes_conversation_fk',
      columns: [t.organizationId, t.conversationId],
      foreignColumns: [conversations.organizationId, conversations.id],
    }).onDelete('cascade'),
  ],
);

/** Members a note mentions (Viewer.mentions walks a member's, newest first). */
export const noteMentions = pgTable(
  'note_mentions',
  {
    organizationId: uuid('organization_id').notNull(),
    noteId: uuid('note_id').notNull(),
    userId: uuid('user_id').notNull(),
    /** The note's time, copied so a member's mentions are one index walk. */
    createdAt: timestamptz('created_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.organizationId, t.noteId, t.userId] }),
    index('note_mentions_user_recent_idx').on(t.organizationId, t.userId, t.createdAt.desc().nullsFirst(), t.noteId.desc().nullsFirst()),
    foreignKey({
      name: 'note_mentions_note_fk',
      columns: [t.organizationId, t.noteId],
      foreignColumns: [notes.organizationId, notes.id],
    }).onDelete('cascade'),
  ],
);

/** Canned replies with merge fields ({{firstName}}, {{custom.key}}, ...). */
export const savedReplies = pgTable(
  'saved_replies',
  {
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    id: uuid('id').notNull().defaultRandom(),
    name: text('name').notNull(),
    body: text('body').notNull(),
    createdByUserId: uuid('created_by_user_id'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.id] }), uniqueIndex('saved_replies_org_name_key').on(t.organizationId, sql`lower(${t.name})`)],
);

export type NoteRow = typeof notes.$inferSelect;
export type NoteMentionRow = typeof noteMentions.$inferSelect;
export type SavedReplyRow = typeof savedReplies.$inferSelect;
