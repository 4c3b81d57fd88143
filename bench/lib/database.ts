import postgres from 'postgres';
import { createDatabase } from '../../src/db/client.js';

/** The PostgreSQL the benchmark fills: DATABASE_URL, required (a dedicated database; it is created if missing). */
export function benchDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) {
    throw new Error(
      'Set DATABASE_URL to a PostgreSQL database the benchmark may fill, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/gw_bench',
    );
  }
  return url;
}

/** Creates the database when it does not exist yet, then applies the gateway's migrations. */
export async function prepareDatabase(url: string): Promise<void> {
  const probe = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await probe`select 1`;
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error;
    const target = new URL(url);
    const name = decodeURIComponent(target.pathname.slice(1));
    target.pathname = '/postgres';
    const admin = postgres(target.toString(), { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`create database "${name.replaceAll('"', '""')}"`);
    } finally {
      await admin.end();
    }
  } finally {
    await probe.end();
  }
  const database = await createDatabase({ kind: 'postgres', url, poolSize: 1 });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
}

export const openSql = (url: string) => postgres(url, { max: 2, onnotice: () => {}, idle_timeout: 5 });
