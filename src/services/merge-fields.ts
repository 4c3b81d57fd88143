// Merge fields of saved replies: {{firstName}}, {{lastName}}, {{phone}} and {{custom.<key>}}, with optional
// whitespace inside the braces. One pass, so a value that itself contains braces is never expanded again.

/** What a template can name about a contact; absent values render blank. */
export type MergeValues = {
  firstName?: string | null;
  lastName?: string | null;
  /** E.164, as stored. */
  phone?: string | null;
  customFields?: Record<string, unknown> | null;
};

// `{{`, a name with at least one non-space character and no braces, `}}`. `{{}}` and `{{ }}` stay as written.
const FIELD = /\{\{\s*([^{}\s](?:[^{}]*[^{}\s])?)\s*\}\}/g;
const CUSTOM_PREFIX = 'custom.';

const text = (value: unknown): string => (typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : '');

function valueOf(name: string, values: MergeValues): string {
  switch (name) {
    case 'firstName':
      return text(values.firstName);
    case 'lastName':
      return text(values.lastName);
    case 'phone':
      return text(values.phone);
  }
  if (!name.startsWith(CUSTOM_PREFIX)) return '';
  const key = name.slice(CUSTOM_PREFIX.length).trim();
  const fields = values.customFields;
  // Own keys only: `{{custom.constructor}}` must not reach Object.prototype.
  return fields && key && Object.hasOwn(fields, key) ? text(fields[key]) : '';
}

/** The template with each merge field replaced by its value; unknown fields and missing values render blank. */
export function renderMergeFields(template: string, values: MergeValues): string {
  return template.replace(FIELD, (_match, name: string) => valueOf(name, values));
}
