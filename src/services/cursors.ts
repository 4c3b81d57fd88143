import { AppError } from '../errors.js';

// Keyset cursors: (time, id) of the row plus the scope they were issued for (a conversation for
// messages, an organization for conversations), so a cursor from elsewhere is refused, not reinterpreted.
// Opaque to clients: base64url of "<kind>:<scope>:<epoch ms>:<id>".

/**
 * msg: a thread's messages; conv: the inbox by last activity; convw / convr: by waiting time, the waiting part and the rest; audit: the audit log;
 * note: a thread's notes; timeline: a thread's messages and notes together; mention: the notes that mention one member; contact: contacts by last update.
 */
export type CursorKind = 'msg' | 'conv' | 'convw' | 'convr' | 'audit' | 'note' | 'timeline' | 'mention' | 'contact';
export type Keyset = { at: Date; id: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: unknown): value is string => typeof value === 'string' && UUID.test(value);

export function encodeCursor(kind: CursorKind, scope: string, key: Keyset): string {
  return Buffer.from(`${kind}:${scope}:${key.at.getTime()}:${key.id}`).toString('base64url');
}

export function decodeCursor(kind: CursorKind, scope: string, cursor: string, argument = 'cursor'): Keyset {
  const decoded = decodeCursorWithScope(kind, cursor, argument);
  if (decoded.scope !== scope) throw invalidCursor(argument);
  return decoded.key;
}

const invalidCursor = (argument: string) => new AppError('INVALID_CURSOR', `${argument} is not a valid cursor for this list`, { argument });

/**
 * Decodes a cursor whose scope the caller does not know in advance (e.g. a message cursor from any
 * conversation). The caller must check that the returned scope belongs to its organization.
 */
export function decodeCursorWithScope(
  kind: CursorKind,
  cursor: string,
  argument = 'cursor',
  alsoKinds: readonly CursorKind[] = [],
): { kind: CursorKind; scope: string; key: Keyset } {
  const invalid = () => invalidCursor(argument);
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 200 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw invalid();
  }
  const parts = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  if (parts.length !== 4) throw invalid();
  const [cursorKind, cursorScope, ms, id] = parts as [string, string, string, string];
  if ((cursorKind !== kind && !alsoKinds.includes(cursorKind as CursorKind)) || !isUuid(cursorScope) || !/^\d{1,15}$/.test(ms) || !isUuid(id)) throw invalid();
  const at = new Date(Number(ms));
  if (Number.isNaN(at.getTime())) throw invalid();
  return { kind: cursorKind as CursorKind, scope: cursorScope, key: { at, id } };
}
