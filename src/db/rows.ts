import { getTableColumns, is, sql, type Column, type InferSelectModel, type SQL, type Table } from 'drizzle-orm';
import { PgDialect, PgTransaction } from 'drizzle-orm/pg-core';
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
export function columnsOf(table: Table, alias: string, prefix = '', keys?: readonly string[]): SQL {
  const list = Object.entries(getTableColumns(table))
    .filter(([key]) => !keys || keys.includes(key))
    .map(([, column]) => `${quote(alias)}.${quote(column.name)} as ${quote(prefix + column.name)}`);
  return sql.raw(list.join(', '));
}

const needsDecoding = (column: Column) => column.columnType === 'PgTimestamp' || column.columnType === 'PgArray';

/**
 * A function turning a raw row (columns under `prefix`) into the table's model, as Drizzle would.
 * With `keys`, only those fields (a row read with `columnsOf(..., keys)`); the others stay unset.
 */
export function rowReader<T extends Table>(table: T, prefix = '', keys?: readonly string[]): Reader<InferSelectModel<T>> {
  const entries = Object.entries(getTableColumns(table)).filter(([key]) => !keys || keys.includes(key));
  const columns = entries.map(([key, column]) => ({
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

const dialect = new PgDialect();

/**
 * A hot read's statement, built from Drizzle's SQL once (with `sql.placeholder`s for its values) and run
 * as a prepared statement: PostgreSQL parses and plans the text once per connection and postgres.js
 * keeps its row description, instead of both redoing it every time (Drizzle's `execute` never prepares,
 * drizzle-orm#6096), and the request does not compose SQL. Only outside transactions: preparing inside
 * postgres.js transactions is what failed under load (porsager/postgres#823); the plain pool is what
 * postgres.js's own tagged queries use. Counted in the statement log like any Drizzle query. Behind a
 * pooler (DATABASE_DIRECT_URL) the client prepares nothing, which wins over this request (client.ts).
 */
export class HotQuery {
  private readonly query;
  constructor(build: SQL) {
    this.query = dialect.sqlToQuery(build);
  }

  private prepare(db: DbOrTx, arrays: boolean) {
    // A name makes Drizzle ask the driver to prepare; postgres.js names statements by their text itself.
    // Arrays (a result mapper that keeps them): rows as value arrays, not objects keyed by column name.
    return db._.session.prepareQuery(
      this.query,
      undefined,
      is(db, PgTransaction) ? undefined : 'hot-read',
      arrays,
      arrays ? keepRows : undefined,
    );
  }

  /** Rows as objects (column name -> value). */
  async rows(db: DbOrTx, values: Record<string, unknown> = {}): Promise<Record<string, unknown>[]> {
    const result = (await this.prepare(db, false).execute(values)) as unknown;
    return Array.isArray(result) ? result : (result as { rows: Record<string, unknown>[] }).rows;
  }

  /**
   * Rows as arrays of values in select-list order: postgres.js builds an object per row key by key
   * otherwise, the largest cost of reading a page. Read them with `indexReader`.
   */
  async arrays(db: DbOrTx, values: Record<string, unknown> = {}): Promise<unknown[][]> {
    return (await this.prepare(db, true).execute(values)) as unknown[][];
  }
}

const keepRows = (rows: unknown[]) => rows;

/**
 * Like rowReader, for rows read as arrays (`HotQuery.arrays`): the table's columns (or `keys` of them, in
 * table order, as `columnsOf` lists them) start at `offset` of the select list.
 */
export function indexReader<T extends Table>(table: T, keys?: readonly string[], offset = 0): (raw: unknown[]) => InferSelectModel<T> {
  const columns = Object.entries(getTableColumns(table)).filter(([key]) => !keys || keys.includes(key));
  const decoders = columns.map(([, column]) => (needsDecoding(column) ? (value: unknown) => column.mapFromDriverValue(value) : null));
  // One object literal per row (compiled once per column set): every row gets the same shape at once,
  // where assigning field by field made each row walk V8's shape transitions (and more garbage).
  const fields = columns.map(([key], index) => {
    const value = `raw[${offset + index}]`;
    const read = decoders[index] ? `(${value} == null ? null : decode[${index}](${value}))` : `(${value} ?? null)`;
    return `${JSON.stringify(key)}: ${read}`;
  });
  const read = new Function('decode', `return (raw) => ({ ${fields.join(', ')} });`) as (
    decode: unknown[],
  ) => (raw: unknown[]) => InferSelectModel<T>;
  return read(decoders);
}

/** Where a column sits in a select list made by `columnsOf(table, ..., keys)`, plus `offset`. */
export function columnIndex(table: Table, key: string, keys?: readonly string[], offset = 0): number {
  return (
    offset +
    Object.keys(getTableColumns(table))
      .filter((name) => !keys || keys.includes(name))
      .indexOf(key)
  );
}
