import { sql } from 'drizzle-orm';
import type { Db } from '../../src/db/client.js';

// Shared pieces of the adversarial tests: a fingerprint of every stored row (to prove a request changed
// nothing), and the ways clients write the same US phone number.

const TABLES = [
  'organizations',
  'api_tokens',
  'phone_numbers',
  'contacts',
  'conversations',
  'messages',
  'message_status_events',
  'consent_events',
  'short_links',
  'memberships',
  'audit_events',
] as const;

/** md5 of every row of every table (or of one organization's rows): equal fingerprints, unchanged data. */
export async function fingerprint(db: Db, organizationId?: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const table of TABLES) {
    const scope =
      organizationId === undefined
        ? sql``
        : table === 'organizations'
          ? sql` where t.id = ${organizationId}`
          : sql` where t.organization_id = ${organizationId}`;
    const rows = await db.execute<{ digest: string | null; n: number }>(
      sql`select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as digest, count(*)::int as n from ${sql.identifier(table)} t${scope}`,
    );
    const row = (Array.isArray(rows) ? rows[0] : (rows as unknown as { rows: Array<{ digest: string; n: number }> }).rows[0])!;
    result[table] = `${row.n}:${row.digest}`;
  }
  return result;
}

/** The same number as people type it: E.164, national with punctuation, with country code, spaced. */
export const phoneFormats: Array<(e164: string) => string> = [
  (p) => p,
  (p) => `(${p.slice(2, 5)}) ${p.slice(5, 8)}-${p.slice(8)}`,
  (p) => `${p.slice(2, 5)}.${p.slice(5, 8)}.${p.slice(8)}`,
  (p) => `${p.slice(2, 5)}-${p.slice(5, 8)}-${p.slice(8)}`,
  (p) => `1-${p.slice(2, 5)}-${p.slice(5, 8)}-${p.slice(8)}`,
  (p) => `+1 ${p.slice(2, 5)} ${p.slice(5, 8)} ${p.slice(8)}`,
  (p) => p.slice(2),
  (p) => `  ${p.slice(1)}  `,
];

/** Every text field of a GraphQL or REST response, flattened: to search a response for leaked values. */
export function textOf(value: unknown): string {
  return JSON.stringify(value) ?? '';
}
