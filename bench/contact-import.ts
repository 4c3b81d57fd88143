import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { eq } from 'drizzle-orm';
import { createDatabase } from '../src/db/client.js';
import { organizations } from '../src/db/tables.js';
import { importContacts } from '../src/services/contact-import.js';
import { createOrganization } from '../src/services/organizations.js';
import { benchDatabaseUrl, prepareDatabase } from './lib/database.js';

// DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_import_bench npx tsx bench/contact-import.ts [--rows 10000]
// Generates a CSV of N contacts (phone, names, 2-3 tags, 3 custom fields) and imports it into a new organization
// three times, as `contact import` does (a file stream into importContacts): every row new, every row changed,
// every row the same. Prints the times. The organization is deleted at the end (its contacts cascade).

const { values } = parseArgs({ options: { rows: { type: 'string', default: '10000' } } });
const rows = Number(values.rows);
if (!Number.isSafeInteger(rows) || rows < 1 || rows > 1_000_000) throw new Error('--rows must be an integer from 1 to 1,000,000');

const TAGS = ['customer', 'lead', 'vip', 'newsletter', 'spring-promo', 'churned'];
const CITIES = ['Oakland', 'Boston', 'Austin', 'Denver', 'Raleigh'];

function file(dir: string, name: string, version: number): string {
  const lines = ['phone,firstName,lastName,tags,company,plan,city'];
  for (let i = 0; i < rows; i += 1) {
    // Valid, distinct US numbers: area codes 415, 617, 919, … and exchanges from 200.
    const phone = `(${[415, 617, 919, 212, 312][i % 5]}) ${200 + Math.floor(i / 5 / 10_000)}-${String(Math.floor(i / 5) % 10_000).padStart(4, '0')}`;
    const tags = [TAGS[i % 6], TAGS[(i + version + 1) % 6], ...(i % 3 === 0 ? [TAGS[(i + 3) % 6]] : [])].join(';');
    lines.push(`${phone},First${i}${version ? 'b' : ''},Last${i},${tags},Company ${i % 97},${version ? 'gold' : 'basic'},${CITIES[(i + version) % 5]}`);
  }
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

const url = benchDatabaseUrl();
await prepareDatabase(url);
const database = await createDatabase({ kind: 'postgres', url, poolSize: 2 });
const dir = mkdtempSync(join(tmpdir(), 'gw-import-bench-'));
const { organizationId } = await createOrganization(database.db, { name: `Import bench ${new Date().toISOString()}` });
try {
  const first = file(dir, 'contacts.csv', 0);
  const changed = file(dir, 'contacts-changed.csv', 1);
  console.log(`${rows.toLocaleString('en-US')} rows, ${new URL(url).pathname.slice(1)}, organization ${organizationId}`);
  for (const [label, path] of [
    ['create (every row new)', first],
    ['update (every row changed)', changed],
    ['again (every row the same)', changed],
  ] as const) {
    const started = process.hrtime.bigint();
    const result = await importContacts(database.db, organizationId, createReadStream(path));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const { errors, ...counts } = result;
    console.log(`${label.padEnd(28)} ${(ms / 1000).toFixed(2)} s  ${Math.round((rows / ms) * 1000).toLocaleString('en-US')} rows/s  ${JSON.stringify(counts)}${errors.length ? ` first error: ${JSON.stringify(errors[0])}` : ''}`);
  }
} finally {
  await database.db.delete(organizations).where(eq(organizations.id, organizationId));
  await database.close();
  rmSync(dir, { recursive: true, force: true });
}
