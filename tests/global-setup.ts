import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { createDatabase } from '../src/db/client.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** PGlite: a migrated data directory to copy, and the same dumped as a tarball to load in memory. */
    pgliteTemplate: { dataDir: string; dump: string } | null;
    /** PostgreSQL: a migrated database each test file's database is created from (CREATE DATABASE … TEMPLATE). */
    postgresTemplate: string | null;
  }
}

// Once per test run, before any file:
// - compile src/ to dist/ (scripts/build.mjs), the code process-level tests start as `npm start` would;
// - migrate one empty store that every test file's store starts as a copy of. A new PGlite store is initdb
//   inside WebAssembly (3-5 s); a copy of a migrated one loads in about 1 s. The migrations themselves are
//   still applied by every test file (a no-op on the copy), as the app does at every start.
export default async function setup(project: TestProject) {
  // Not helpers/database.ts: it reads what this provides (vitest's inject), which only test files can import.
  const postgresUrl = process.env.DATABASE_URL || undefined;
  const databaseUrlFor = (name: string) => Object.assign(new URL(postgresUrl!), { pathname: `/${name}` }).toString();

  execFileSync(process.execPath, [join(import.meta.dirname, '..', 'scripts', 'build.mjs')], { stdio: 'inherit' });

  if (postgresUrl) {
    const name = `gw_test_template_${randomBytes(6).toString('hex')}`;
    const admin = postgres(postgresUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database ${name}`);
    const database = await createDatabase({ kind: 'postgres', url: databaseUrlFor(name), poolSize: 1 });
    await database.migrate();
    await database.close();
    project.provide('postgresTemplate', name);
    project.provide('pgliteTemplate', null);
    return async () => {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    };
  }

  const root = mkdtempSync(join(tmpdir(), 'gw-test-template-'));
  const dataDir = join(root, 'pgdata');
  const dump = join(root, 'pgdata.tar');
  const database = await createDatabase({ kind: 'pglite', dataDir });
  await database.migrate();
  await database.close();
  const pglite = new PGlite(dataDir);
  await pglite.waitReady;
  const tarball = await pglite.dumpDataDir('none');
  await pglite.close();
  writeFileSync(dump, Buffer.from(await tarball.arrayBuffer()));
  project.provide('pgliteTemplate', { dataDir, dump });
  project.provide('postgresTemplate', null);
  return () => rmSync(root, { recursive: true, force: true });
}
