import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { violatedUniqueConstraint } from '../db/failures.js';
import { contacts } from '../db/tables.js';
import { savedReplies, type SavedReplyRow } from '../db/teamwork-tables.js';
import { AppError, badUserInput } from '../errors.js';
import { requireRole } from './access.js';
import type { Caller } from './auth.js';
import { isUuid } from './cursors.js';
import { renderMergeFields } from './merge-fields.js';
import { normalizePhone } from './phone.js';
import type { SendReplyInput } from './replies/types.js';
import { bodyLength, MAX_BODY_CHARACTERS } from './sms-text.js';

// Saved replies: an organization's canned texts with merge fields. Any member reads them and sends them;
// ADMIN and OWNER (and integration tokens) write them. Names are unique per organization, ignoring case.

export const MAX_SAVED_REPLY_NAME_CHARACTERS = 100;
const NAME_KEY = 'saved_replies_org_name_key';

const notFound = (id: string) => new AppError('SAVED_REPLY_NOT_FOUND', `No saved reply ${JSON.stringify(id.slice(0, 100))} in this organization.`);
const nameTaken = (name: string) => new AppError('SAVED_REPLY_NAME_TAKEN', `A saved reply named ${JSON.stringify(name)} exists already.`, { field: 'name' });
const invalid = (field: 'name' | 'body', message: string, maximum: number) => new AppError('INVALID_SAVED_REPLY', message, { field, maximum });

/** The organization's saved replies by name (case-insensitively, as the unique index orders them). */
export async function listSavedReplies(db: DbOrTx, organizationId: string): Promise<SavedReplyRow[]> {
  return db
    .select()
    .from(savedReplies)
    .where(eq(savedReplies.organizationId, organizationId))
    .orderBy(asc(sql`lower(${savedReplies.name})`), asc(savedReplies.id));
}

/** Saved replies of this organization by id (Node lookups); ids that are not UUIDs match nothing. */
export async function savedRepliesByIds(db: DbOrTx, organizationId: string, ids: readonly string[]): Promise<SavedReplyRow[]> {
  const wanted = ids.filter(isUuid);
  if (wanted.length === 0) return [];
  return db
    .select()
    .from(savedReplies)
    .where(and(eq(savedReplies.organizationId, organizationId), inArray(savedReplies.id, wanted)));
}

/** Trimmed name and body (each optional for an update), or INVALID_SAVED_REPLY. */
function checked<T extends { name?: string | null; body?: string | null }>(input: T): { name?: string; body?: string } {
  const out: { name?: string; body?: string } = {};
  if (input.name !== null && input.name !== undefined) {
    const name = input.name.trim();
    if (name.length === 0) throw invalid('name', 'name must not be empty.', MAX_SAVED_REPLY_NAME_CHARACTERS);
    if (bodyLength(name) > MAX_SAVED_REPLY_NAME_CHARACTERS) {
      throw invalid('name', `name must be at most ${MAX_SAVED_REPLY_NAME_CHARACTERS} characters.`, MAX_SAVED_REPLY_NAME_CHARACTERS);
    }
    out.name = name;
  }
  if (input.body !== null && input.body !== undefined) {
    // The body keeps its inner line breaks; only the ends are trimmed, as a sent message's are.
    const body = input.body.trim();
    if (body.length === 0) throw invalid('body', 'body must not be empty.', MAX_BODY_CHARACTERS);
    // The same limit as a reply's message (its rendered text is checked again when it is sent).
    if (bodyLength(body) > MAX_BODY_CHARACTERS) throw invalid('body', `body must be at most ${MAX_BODY_CHARACTERS} characters.`, MAX_BODY_CHARACTERS);
    out.body = body;
  }
  return out;
}

export async function createSavedReply(db: DbOrTx, caller: Caller, input: { name: string; body: string }): Promise<SavedReplyRow> {
  requireRole(caller, 'ADMIN', 'create saved replies');
  const { name, body } = checked(input);
  if (name === undefined || body === undefined) throw badUserInput('name and body are required.');
  // Only the name index can conflict (the id is fresh): no row back means the name is taken.
  const [row] = await db
    .insert(savedReplies)
    .values({ organizationId: caller.organizationId, name, body, createdByUserId: caller.userId })
    .onConflictDoNothing()
    .returning();
  if (!row) throw nameTaken(name);
  return row;
}

/** Changes the name and/or body; an omitted (or null) field stays as it is. */
export async function updateSavedReply(
  db: DbOrTx,
  caller: Caller,
  id: string,
  input: { name?: string | null; body?: string | null },
): Promise<SavedReplyRow> {
  requireRole(caller, 'ADMIN', 'change saved replies');
  const changes = checked(input);
  if (!isUuid(id)) throw notFound(id);
  if (changes.name === undefined && changes.body === undefined) {
    const [row] = await savedRepliesByIds(db, caller.organizationId, [id]);
    if (!row) throw notFound(id);
    return row;
  }
  try {
    const [row] = await db
      .update(savedReplies)
      .set({ ...changes, updatedAt: new Date() })
      .where(and(eq(savedReplies.organizationId, caller.organizationId), eq(savedReplies.id, id)))
      .returning();
    if (!row) throw notFound(id);
    return row;
  } catch (error) {
    if (violatedUniqueConstraint(error) === NAME_KEY) throw nameTaken(changes.name ?? '');
    throw error;
  }
}

/** Deletes a saved reply; answers it as it was. */
export async function deleteSavedReply(db: DbOrTx, caller: Caller, id: string): Promise<SavedReplyRow> {
  requireRole(caller, 'ADMIN', 'delete saved replies');
  if (!isUuid(id)) throw notFound(id);
  const [row] = await db
    .delete(savedReplies)
    .where(and(eq(savedReplies.organizationId, caller.organizationId), eq(savedReplies.id, id)))
    .returning();
  if (!row) throw notFound(id);
  return row;
}

/** A reply request as clients give it: a message, or a saved reply to render for the contact. */
export type SavedReplyRequest = Omit<SendReplyInput, 'message'> & { message?: string | null; savedReplyId?: string | null };

/**
 * The reply input with `message` set: as given, or the saved reply rendered for the contact with this
 * phone number (one statement reads both; without a contact, its fields render blank and the send refuses
 * the contact as usual). Both or neither of message and savedReplyId: BAD_USER_INPUT. An unknown saved reply
 * (or another organization's): SAVED_REPLY_NOT_FOUND, before anything is stored, sent or charged.
 */
export async function withSavedReply(deps: { db: DbOrTx }, organizationId: string, input: SavedReplyRequest): Promise<SendReplyInput> {
  const { savedReplyId, message, ...rest } = input;
  const hasMessage = message !== null && message !== undefined;
  const hasSaved = savedReplyId !== null && savedReplyId !== undefined;
  if (hasMessage && hasSaved) throw badUserInput('Give either message or savedReplyId, not both.', { field: 'savedReplyId' });
  if (hasMessage) return { ...rest, message };
  if (!hasSaved) throw badUserInput('Give message or savedReplyId.', { field: 'message' });
  if (!isUuid(savedReplyId)) throw notFound(savedReplyId);
  const phoneNumber = normalizePhone(input.phoneNumber);
  const [found] = await deps.db
    .select({
      body: savedReplies.body,
      firstName: contacts.firstName,
      lastName: contacts.lastName,
      phone: contacts.phoneNumber,
      customFields: contacts.customFields,
    })
    .from(savedReplies)
    .leftJoin(contacts, and(eq(contacts.organizationId, savedReplies.organizationId), eq(contacts.phoneNumber, phoneNumber)))
    .where(and(eq(savedReplies.organizationId, organizationId), eq(savedReplies.id, savedReplyId)));
  if (!found) throw notFound(savedReplyId);
  return { ...rest, message: renderMergeFields(found.body, found) };
}
