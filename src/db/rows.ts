import { getTableColumns, sql, type Column, type InferSelectModel, type SQL, type Table } from 'drizzle-orm';
import type { DbOrTx } from './client.js';

// A lean result path for the hot reads (inbox and message pages). Drizzle's generic row mapping walks
// every selected field of every row through instanceof/prototype checks and path arrays; on a page of
// 50 messages that cost as much as the rest of the request. Here the SQL is still composed from the
// Drizzle tables, and each table gets a reader compiled once: column name -> property, decoding only
// the columns whose driver value differs from the model (timestamps arrive as text).

type Reader<T> = (raw: Record<string, unknown>) => T;

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * `"alias"."column" as "<prefix>column"` for every column of the table, to select it under a prefix.
 * One raw chunk, built once: composing it from a chunk per column cost more than running the query.
 */
export function columnsOf(table: Table, alias: string, prefix = ''): SQL {
  const list = Object.values(getTableColumns(table)).map((column) => `${quote(alias)}.${quote(column.name)} as ${quote(prefix + column.name)}`);
  return sql.raw(list.join(', '));
}

const needsDecoding = (column: Column) => column.columnType === 'PgTimestamp' || column.columnType === 'PgArray';

/** A function turning a raw row (columns under `prefix`) into the table's model, as Drizzle would. */
export function rowReader<T extends Table>(table: T, prefix = ''): Reader<InferSelectModel<T>> {
  const columns = Object.entries(getTableColumns(table)).map(([key, column]) => ({
    key,
    name: prefix + column.name,
    decode: needsDecoding(column) ? (value: unknown) => column.mapFromDriverValue(value) : null,
  }));
  return (raw) => {
    const row: Record<string, unknown> = {};
    for (const { key, name, decode } of columns) {
      const value = raw[name];
      row[key] = value === null || value === undefined ? null : decode ? decode(value) : value;
    }
    return row as InferSelectModel<T>;
  };
}

/** Runs a query and returns the driver's rows (column name -> value), whichever driver is underneath. */
export async function rawRows(db: DbOrTx, query: SQL): Promise<Record<string, unknown>[]> {
  const result = (await db.execute(query)) as unknown;
  // postgres.js answers an array of rows; PGlite an object holding them.
  return Array.isArray(result) ? result : (result as { rows: Record<string, unknown>[] }).rows;
}
