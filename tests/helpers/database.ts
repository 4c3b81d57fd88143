import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { inject } from 'vitest';
import { createDatabase, type Database } from '../../src/db/client.js';

/** The PostgreSQL server under test, if any: the suite runs on PGlite when DATABASE_URL is unset. */
export const postgresUrl = process.env.DATABASE_URL || undefined;

export function databaseUrlFor(name: string): string {
  const url = new URL(postgresUrl!);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * A migrated, empty database for one test file: in-memory PGlite, or a new PostgreSQL database
 * (dropped again by close()) on the server in DATABASE_URL.
 */
export async function createTestDatabase(): Promise<Database & { url?: string }> {
  if (!postgresUrl) {
    const database = await createDatabase({ kind: 'pglite', loadDataDir: pgliteTemplateDump() });
    await database.migrate();
    return database;
  }
  const name = `gw_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(postgresUrl, { max: 1, onnotice: () => {} });
  const template = inject('postgresTemplate');
  await admin.unsafe(template ? `create database ${name} template ${template}` : `create database ${name}`);
  await admin.end();
  const url = databaseUrlFor(name);
  const database = await createDatabase({ kind: 'postgres', url, poolSize: 10 });
  await database.migrate();
  return {
    ...database,
    url,
    async close() {
      await database.close();
      const dropper = postgres(postgresUrl!, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

// The migrated template of tests/global-setup.ts (null when a test file runs outside that setup).

let dump: Blob | undefined;
function pgliteTemplateDump(): Blob | undefined {
  const template = inject('pgliteTemplate');
  if (template) dump ??= new Blob([readFileSync(template.dump)]);
  return dump;
}

/** A new PGlite data directory for a store on disk, already migrated when the template exists. */
export function createPgliteDataDir(prefix = 'gw-pglite-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const template = inject('pgliteTemplate');
  if (template) cpSync(template.dataDir, dir, { recursive: true });
  return dir;
}
