import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx, Tx } from '../db/client.js';
import { rawRows } from '../db/rows.js';
import { contacts, conversations, memberships, users } from '../db/tables.js';
import { noteMentions, notes, type NoteRow } from '../db/teamwork-tables.js';
import { AppError, badUserInput } from '../errors.js';
import type { Caller } from './auth.js';
import { isUuid } from './cursors.js';
import type { ServiceDeps } from './deps.js';
import { uuidv7 } from './ids.js';
import type { Member } from './members.js';
import { bodyLength } from './sms-text.js';

// Internal notes: the team's remarks in a thread. They are never sent, never in the REST routes, and
// change neither the conversation's unread count nor its last message. Any member (AGENT and up) and
// integration tokens may write them; the members a note mentions find it in Viewer.mentions.

/** Longest note body, in Unicode code points (after trimming). */
export const MAX_NOTE_LENGTH = 5000;
/** Most members one note may mention. */
export const MAX_MENTIONS = 50;

export type NewNote = {
  /** E.164, normalized by the caller. */
  phoneNumber: string;
  body: string;
  /** Raw user UUIDs; anything else names no member. */
  mentionUserIds?: readonly string[] | null;
};

export type AddedNote = {
  note: NoteRow;
  /** The members it mentions, as Note.mentions lists them. */
  mentions: Member[];
  /** The conversation was created for this note (the organization had a contact with the number, but no thread). */
  conversationCreated: boolean;
};

/** The body as stored: trimmed; BAD_USER_INPUT when empty, too long, or holding NUL. */
export function noteBody(input: string): string {
  // GraphQL refuses NUL before any resolver runs; this covers every other caller (PostgreSQL refuses it in text).
  if (input.includes('\u0000')) throw badUserInput('body must not contain NUL (\\u0000) characters.', { field: 'body' });
  const body = input.trim();
  if (body.length === 0) throw badUserInput('body must not be empty.', { field: 'body' });
  if (bodyLength(body) > MAX_NOTE_LENGTH) {
    throw badUserInput(`body must be at most ${MAX_NOTE_LENGTH} characters.`, { field: 'body', maximum: MAX_NOTE_LENGTH });
  }
  return body;
}

/** The mentioned ids, once each; BAD_USER_INPUT over MAX_MENTIONS. */
function mentionIds(ids: readonly string[] | null | undefined): string[] {
  const unique = [...new Set(ids ?? [])];
  if (unique.length > MAX_MENTIONS) {
    throw badUserInput(`A note may mention at most ${MAX_MENTIONS} members.`, { field: 'mentionUserIds', maximum: MAX_MENTIONS });
  }
  return unique;
}

const BY_NAME = sql`lower(coalesce(${users.name}, ${users.email}))`;

/**
 * The mentioned members, their membership rows share-locked until the transaction ends (a removal waits
 * for the note, or the note sees the removal). MEMBER_NOT_FOUND names the first id that is no member.
 */
async function lockMentioned(tx: Tx, organizationId: string, ids: readonly string[]): Promise<Member[]> {
  const valid = ids.filter(isUuid);
  const found =
    valid.length === 0
      ? []
      : await tx
          .select({ user: users, role: memberships.role, createdAt: memberships.createdAt })
          .from(memberships)
          .innerJoin(users, eq(users.id, memberships.userId))
          .where(and(eq(memberships.organizationId, organizationId), inArray(memberships.userId, valid)))
          .orderBy(BY_NAME, asc(users.id))
          .for('share', { of: memberships });
  const members = new Set(found.map((member) => member.user.id));
  const missing = ids.filter((id) => !members.has(id));
  if (missing.length > 0) {
    throw new AppError('MEMBER_NOT_FOUND', `No member ${missing[0]} in this organization.`, { userId: missing[0], userIds: missing });
  }
  return found;
}

/**
 * The conversation with this number. Without one, it is created when the organization has a contact with
 * the number (no message, unread 0), else CONTACT_NOT_FOUND: a note needs a thread or a person.
 */
async function conversationForNote(tx: Tx, organizationId: string, phoneNumber: string): Promise<{ id: string; created: boolean }> {
  const existing = async () => {
    const [row] = await tx
      .select({ id: conversations.id })
      .from(conversations)
      .where(and(eq(conversations.organizationId, organizationId), eq(conversations.phoneNumber, phoneNumber)));
    return row;
  };
  const found = await existing();
  if (found) return { id: found.id, created: false };
  const [created] = (await rawRows(
    tx,
    sql`insert into ${conversations} (organization_id, phone_number, contact_id)
      select organization_id, phone_number, id from ${contacts} where organization_id = ${organizationId} and phone_number = ${phoneNumber}
      on conflict (organization_id, phone_number) do nothing
      returning id`,
  )) as { id: string }[];
  if (created) return { id: created.id, created: true };
  // A conversation that another transaction committed meanwhile (the insert waited for it, then did nothing).
  const raced = await existing();
  if (raced) return { id: raced.id, created: false };
  throw new AppError('CONTACT_NOT_FOUND', `No conversation or contact with ${phoneNumber} in your organization.`, { phoneNumber });
}

/**
 * Adds a note to the conversation with `phoneNumber`, written by the caller (null author for an
 * integration token), mentioning members of the organization. Nothing is written when anything is
 * refused. noteAdded is published after the commit (and conversationUpdated when the thread is new).
 */
export async function addNote(deps: Pick<ServiceDeps, 'db' | 'events'>, caller: Caller, input: NewNote): Promise<AddedNote> {
  const body = noteBody(input.body);
  const mentioned = mentionIds(input.mentionUserIds);
  const organizationId = caller.organizationId;
  const result = await deps.db.transaction(async (tx) => {
    const mentions = await lockMentioned(tx, organizationId, mentioned);
    const conversation = await conversationForNote(tx, organizationId, input.phoneNumber);
    // The id's time and created_at agree, so (created_at, id) keysets list notes in the order they were written.
    const now = Date.now();
    const [note] = await tx
      .insert(notes)
      .values({
        organizationId,
        id: uuidv7(now),
        conversationId: conversation.id,
        authorUserId: caller.userId,
        body,
        createdAt: new Date(now),
      })
      .returning();
    if (mentions.length > 0) {
      await tx
        .insert(noteMentions)
        .values(mentions.map((member) => ({ organizationId, noteId: note!.id, userId: member.user.id, createdAt: note!.createdAt })));
    }
    return { note: note!, mentions, conversationCreated: conversation.created };
  });
  deps.events.publish('noteAdded', organizationId, { noteId: result.note.id, conversationId: result.note.conversationId });
  if (result.conversationCreated)
    deps.events.publish('conversationUpdated', organizationId, { conversationId: result.note.conversationId });
  return result;
}

export async function notesByIds(db: DbOrTx, organizationId: string, ids: readonly string[]): Promise<NoteRow[]> {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return db
    .select()
    .from(notes)
    .where(and(eq(notes.organizationId, organizationId), inArray(notes.id, valid)));
}

/**
 * The members these notes mention, by name, in one statement. Someone who left the organization since is
 * not listed (users are visible only while members, as everywhere).
 */
export async function mentionsOfNotes(
  db: DbOrTx,
  organizationId: string,
  noteIds: readonly string[],
): Promise<Array<{ noteId: string; member: Member }>> {
  const valid = noteIds.filter(isUuid);
  if (valid.length === 0) return [];
  const rows = await db
    .select({ noteId: noteMentions.noteId, user: users, role: memberships.role, createdAt: memberships.createdAt })
    .from(noteMentions)
    .innerJoin(memberships, and(eq(memberships.organizationId, noteMentions.organizationId), eq(memberships.userId, noteMentions.userId)))
    .innerJoin(users, eq(users.id, noteMentions.userId))
    .where(and(eq(noteMentions.organizationId, organizationId), inArray(noteMentions.noteId, valid)))
    .orderBy(BY_NAME, asc(users.id));
  return rows.map(({ noteId, ...member }) => ({ noteId, member }));
}
