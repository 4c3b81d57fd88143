import DataLoader from 'dataloader';
import type { DbOrTx } from '../db/client.js';
import type { NoteRow } from '../db/teamwork-tables.js';
import type { Member } from '../services/members.js';
import { conversationPages, type KeysetRequest, type Page, type TimelineRow } from '../services/note-pages.js';
import { mentionsOfNotes, notesByIds } from '../services/notes.js';

/**
 * Per-request loaders for notes, scoped to one organization (part of createLoaders). A page of notes
 * with their authors and mentions costs a fixed number of statements: the page, the mentions of all its
 * notes (with the members, who also prime `member`), and the authors through `member`.
 */
export function createNoteLoaders(db: DbOrTx, organizationId: string, member: DataLoader<string, Member | null>) {
  const note = new DataLoader<string, NoteRow | null>(async (ids) => {
    const byId = new Map((await notesByIds(db, organizationId, ids)).map((row) => [row.id, row]));
    return ids.map((id) => byId.get(id) ?? null);
  });
  const noteMentions = new DataLoader<string, Member[]>(async (noteIds) => {
    const byNote = new Map<string, Member[]>();
    for (const { noteId, member: mentioned } of await mentionsOfNotes(db, organizationId, noteIds)) {
      member.prime(mentioned.user.id, mentioned);
      const list = byNote.get(noteId);
      if (list) list.push(mentioned);
      else byNote.set(noteId, [mentioned]);
    }
    return noteIds.map((id) => byNote.get(id) ?? []);
  });
  // One loader per distinct page request (kind, walk, size, cursors, columns), each batching over conversations.
  const pageLoaders = new Map<string, DataLoader<string, Page<TimelineRow>>>();
  const conversationPage = <T extends TimelineRow>(conversationId: string, request: KeysetRequest): Promise<Page<T>> => {
    let loader = pageLoaders.get(request.key);
    if (!loader) {
      loader = new DataLoader<string, Page<TimelineRow>>((ids) =>
        conversationPages(
          db,
          organizationId,
          ids.map((id) => ({ conversationId: id, request })),
        ),
      );
      pageLoaders.set(request.key, loader);
    }
    return loader.load(conversationId) as Promise<Page<T>>;
  };
  return { note, noteMentions, conversationPage };
}
