import { badUserInput } from '../errors.js';

// The rules for a contact's tags and custom fields, shared by the API (services/contacts.ts) and the CSV
// import (services/contact-import.ts), so both store the same shapes and refuse the same input.

export const MAX_TAGS = 50;
export const MAX_TAG_LENGTH = 64;
export const MAX_CUSTOM_FIELDS = 50;
export const MAX_CUSTOM_FIELD_KEY_LENGTH = 64;
export const MAX_CUSTOM_FIELD_VALUE_LENGTH = 1000;

/**
 * Custom field keys are used as merge fields, `{{custom.<key>}}`: letters, digits, `_` and `-`, so a key never
 * holds a space, a brace or a dot that a template would read as something else.
 */
const CUSTOM_FIELD_KEY = /^[A-Za-z0-9_-]+$/;

// C0 controls and DEL: NUL is refused by PostgreSQL, and the others are invisible in every inbox.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Lower-cased, trimmed, deduplicated (first occurrence kept), empty ones dropped; BAD_USER_INPUT beyond the limits. */
export function cleanTags(input: readonly string[], field = 'tags'): string[] {
  const tags = new Set<string>();
  for (const raw of input) {
    const tag = String(raw).trim().toLowerCase();
    if (tag === '') continue;
    if (tag.length > MAX_TAG_LENGTH) {
      throw badUserInput(`${field}: a tag must be at most ${MAX_TAG_LENGTH} characters (${JSON.stringify(tag.slice(0, 20))}… is ${tag.length}).`, {
        field,
        maximum: MAX_TAG_LENGTH,
      });
    }
    if (CONTROL.test(tag)) throw badUserInput(`${field}: a tag must not contain control characters.`, { field });
    tags.add(tag);
  }
  if (tags.size > MAX_TAGS) throw badUserInput(`${field}: at most ${MAX_TAGS} tags per contact (got ${tags.size}).`, { field, maximum: MAX_TAGS });
  return [...tags];
}

/** Whether a string is a usable custom field key. */
export const isCustomFieldKey = (key: string) =>
  key.length <= MAX_CUSTOM_FIELD_KEY_LENGTH && CUSTOM_FIELD_KEY.test(key) && key !== '__proto__'; // a prototype, not a field, to naive readers

export const customFieldKeyRule = `letters, digits, _ and - only, at most ${MAX_CUSTOM_FIELD_KEY_LENGTH} characters`;

/**
 * String values only, trimmed; an empty value drops its key. At most MAX_CUSTOM_FIELDS keys. BAD_USER_INPUT
 * names the first key that breaks a rule.
 */
export function cleanCustomFields(input: Record<string, unknown>, field = 'customFields'): Record<string, string> {
  const entries: [string, string][] = [];
  for (const [key, value] of Object.entries(input)) {
    if (!isCustomFieldKey(key)) {
      throw badUserInput(`${field}: ${JSON.stringify(key.slice(0, 80))} is not a valid key (${customFieldKeyRule}).`, { field, key: key.slice(0, 80) });
    }
    if (typeof value !== 'string') throw badUserInput(`${field}.${key} must be a string.`, { field, key });
    const text = value.trim();
    if (text === '') continue;
    if (text.length > MAX_CUSTOM_FIELD_VALUE_LENGTH) {
      throw badUserInput(`${field}.${key} must be at most ${MAX_CUSTOM_FIELD_VALUE_LENGTH} characters.`, {
        field,
        key,
        maximum: MAX_CUSTOM_FIELD_VALUE_LENGTH,
      });
    }
    if (text.includes('\u0000')) throw badUserInput(`${field}.${key} must not contain NUL characters.`, { field, key });
    entries.push([key, text]);
  }
  if (entries.length > MAX_CUSTOM_FIELDS) {
    throw badUserInput(`${field}: at most ${MAX_CUSTOM_FIELDS} custom fields per contact (got ${entries.length}).`, { field, maximum: MAX_CUSTOM_FIELDS });
  }
  // fromEntries defines own properties: a "__proto__" key stays a key, never a prototype.
  return Object.fromEntries(entries);
}

/** The number of keys two custom field objects have together (what a merge would hold). */
export function mergedCustomFieldCount(current: Record<string, string>, added: Record<string, string>): number {
  let count = Object.keys(current).length;
  for (const key of Object.keys(added)) if (!Object.hasOwn(current, key)) count += 1;
  return count;
}

export const sameTags = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((tag, i) => tag === b[i]);

export function sameCustomFields(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && a[key] === b[key]);
}
