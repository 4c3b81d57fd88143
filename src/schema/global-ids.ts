import { isUuid } from '../services/cursors.js';

// Global ids, decoded in one place: base64 of `Type:id`, as the relay plugin encodes them.

/** Longer input is not decoded: no global id of ours comes near it. */
const MAX_GLOBAL_ID_LENGTH = 200;

/** The parts of a global id, or null when the value is not one. */
export function parseGlobalId(value: unknown): { typename: string; id: string } | null {
  if (typeof value !== 'string' || value.length > MAX_GLOBAL_ID_LENGTH) return null;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const separator = decoded.indexOf(':');
  if (separator <= 0) return null;
  return { typename: decoded.slice(0, separator), id: decoded.slice(separator + 1) };
}

/**
 * An argument that takes a Node id of `typename` or a raw UUID, as the UUID. Anything else stays as given,
 * so it matches nothing and the caller's own "not found" answers it.
 */
export function uuidOfNodeId(value: string | number, typename: string): string {
  const raw = String(value).trim();
  if (raw.length > MAX_GLOBAL_ID_LENGTH || isUuid(raw)) return raw;
  const parsed = parseGlobalId(raw);
  return parsed?.typename === typename && isUuid(parsed.id) ? parsed.id : raw;
}
