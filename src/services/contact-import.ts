import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { parse, type CsvError, type Options as CsvOptions } from 'csv-parse';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { contacts, conversations, type ContactRow } from '../db/tables.js';
import { AppError, badUserInput } from '../errors.js';
import {
  cleanCustomFields,
  cleanTags,
  customFieldKeyRule,
  isCustomFieldKey,
  MAX_CUSTOM_FIELDS,
  mergedCustomFieldCount,
  sameCustomFields,
  sameTags,
} from './contact-fields.js';
import { cleanName } from './contacts.js';
import { normalizePhone } from './phone.js';

// The CSV import of contacts (the CLI's `contact import`). Lines are read as a stream and written 1,000 at a
// time: per batch, one read of the numbers already there (locked) and one INSERT … ON CONFLICT DO UPDATE.
// Rules:
// - columns phone, firstName, lastName, tags (`;`-separated), matched ignoring case, spaces, `_` and `-`;
//   any other column is a custom field named by its header (a usable key, or the whole file is refused);
// - a number already there is updated: a non-empty name or tags cell replaces, custom fields merge in, an
//   empty cell changes nothing; a number seen again later in the file is applied again (the later line wins);
// - consent is never written (new contacts are opted in, as createContact's default; existing ones keep theirs),
//   and new contacts' textability is pending (null): no lookups are started from here;
// - a bad line is reported with its line number (header = line 1) and skipped whole; blank lines are skipped
//   silently. created + updated + skipped = the CSV records after the header.

export type ImportError = { line: number; error: string };
export type ImportResult = { created: number; updated: number; skipped: number; errors: ImportError[] };

export const IMPORT_BATCH_SIZE = 1000;

type KnownColumn = 'phone' | 'firstName' | 'lastName' | 'tags';
type Column = { kind: KnownColumn } | { kind: 'custom'; key: string };
type CsvRecord = { cells: string[]; start: number; end: number };
type Line = {
  line: number;
  phoneNumber: string;
  firstName: string | null;
  lastName: string | null;
  /** null: the cell was empty (keep the contact's). */
  tags: string[] | null;
  customFields: { [key: string]: string };
};

const KNOWN: { [name: string]: KnownColumn } = {
  phone: 'phone',
  phonenumber: 'phone',
  firstname: 'firstName',
  lastname: 'lastName',
  tags: 'tags',
};

/** The columns the header names; BAD_USER_INPUT (nothing imported) for a header we cannot read. */
function columnsOf(header: string[]): Column[] {
  const seen = new Set<string>();
  const columns = header.map((cell, index): Column => {
    const name = cell.trim();
    const where = `line 1, column ${index + 1}`;
    if (name === '') throw badUserInput(`${where}: the header has an empty column name.`);
    const known = KNOWN[name.toLowerCase().replace(/[\s_-]/g, '')];
    const column: Column = known ? { kind: known } : { kind: 'custom', key: name };
    if (column.kind === 'custom' && !isCustomFieldKey(column.key)) {
      throw badUserInput(`${where}: ${JSON.stringify(name.slice(0, 80))} is neither phone, firstName, lastName, tags nor a custom field key (${customFieldKeyRule}).`);
    }
    const id = column.kind === 'custom' ? `custom:${column.key}` : column.kind;
    if (seen.has(id)) throw badUserInput(`${where}: ${JSON.stringify(name)} is a second ${column.kind === 'custom' ? 'column with this name' : `${column.kind} column`}.`);
    seen.add(id);
    return column;
  });
  if (!seen.has('phone')) throw badUserInput('line 1: the header has no phone column (expected phone,firstName,lastName,tags,…).');
  return columns;
}

/** One record as a contact line; AppError (its message reported for the line) when it breaks a rule. */
function lineOf(columns: Column[], record: CsvRecord): Line {
  const { cells } = record;
  const extra = cells.slice(columns.length).filter((cell) => cell.trim() !== '');
  if (extra.length > 0) throw badUserInput(`has ${cells.length} fields, the header has ${columns.length}.`);
  if (cells.some((cell) => cell.includes('\u0000'))) throw badUserInput('contains a NUL character.');
  const line: Line = { line: record.start, phoneNumber: '', firstName: null, lastName: null, tags: null, customFields: {} };
  const custom: { [key: string]: string } = {};
  columns.forEach((column, index) => {
    const cell = cells[index] ?? '';
    if (column.kind === 'phone') {
      if (cell.trim() === '') throw badUserInput('phone is empty.');
      line.phoneNumber = normalizePhone(cell, 'phone');
    } else if (column.kind === 'firstName') line.firstName = cleanName(cell);
    else if (column.kind === 'lastName') line.lastName = cleanName(cell);
    else if (column.kind === 'tags') {
      const tags = cleanTags(cell.split(';'), 'tags');
      line.tags = tags.length > 0 ? tags : null;
    } else if (column.kind === 'custom') custom[column.key] = cell;
  });
  line.customFields = cleanCustomFields(custom, 'custom field');
  return line;
}

const isBlank = (cells: string[]) => cells.every((cell) => cell.trim() === '');

/** CRLF and CR as LF: csv-parse counts a CRLF inside a quoted field as two lines, and line numbers must be right. */
async function* unixLineEndings(source: AsyncIterable<string | Uint8Array>): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let carriageReturn = false;
  for await (const chunk of source) {
    let text: string = (carriageReturn ? '\r' : '') + (typeof chunk === 'string' ? chunk : decoder.write(Buffer.from(chunk)));
    carriageReturn = text.endsWith('\r');
    if (carriageReturn) text = text.slice(0, -1);
    if (text) yield text.replace(/\r\n?/g, '\n');
  }
  const rest = decoder.end() + (carriageReturn ? '\r' : '');
  if (rest) yield rest.replace(/\r\n?/g, '\n');
}

function skippedRecordError(error: CsvError | undefined, start: number, end: number): ImportError {
  const span = end > start ? `lines ${start}-${end}` : `line ${start}`;
  const what = error?.code === 'CSV_QUOTE_NOT_CLOSED' ? 'a quoted field is never closed' : `malformed CSV (${error?.code ?? 'unreadable record'})`;
  return { line: start, error: `${what}; ${span} not imported.` };
}

/**
 * Imports contacts from CSV text (a file stream) into the organization. BAD_USER_INPUT when the header cannot
 * be used (nothing imported); otherwise every line is imported or reported.
 */
export async function importContacts(
  db: Db,
  organizationId: string,
  input: AsyncIterable<string | Uint8Array>,
  options: { batchSize?: number } = {},
): Promise<ImportResult> {
  const batchSize = options.batchSize ?? IMPORT_BATCH_SIZE;
  const result: ImportResult = { created: 0, updated: 0, skipped: 0, errors: [] };
  let lastLine = 0;
  const csvOptions: CsvOptions<CsvRecord, string[]> = {
    bom: true,
    relax_column_count: true,
    // A stray quote inside a field is kept as text; only a quoted field left open breaks a record.
    relax_quotes: true,
    skip_empty_lines: false,
    skip_records_with_error: true,
    // Called in file order by the parser itself, so the line a record starts on is known exactly.
    on_record: (cells: string[], context: { lines: number }): CsvRecord => {
      const record = { cells, start: lastLine + 1, end: context.lines };
      lastLine = context.lines;
      return record;
    },
    on_skip: (error: CsvError | undefined) => {
      const end = Number(error?.lines ?? lastLine + 1);
      result.errors.push(skippedRecordError(error, lastLine + 1, end));
      result.skipped += 1;
      lastLine = end;
      return undefined;
    },
  };
  const parser = parse(csvOptions as unknown as CsvOptions); // on_record turns records into CsvRecords
  const reading = pipeline(input, unixLineEndings, parser);
  reading.catch(() => {}); // awaited below; the loop sees the same failure first
  let columns: Column[] | null = null;
  let batch: Line[] = [];
  for await (const record of parser as AsyncIterable<CsvRecord>) {
    if (!columns) {
      columns = columnsOf(record.cells);
      continue;
    }
    if (isBlank(record.cells)) {
      result.skipped += 1;
      continue;
    }
    try {
      batch.push(lineOf(columns, record));
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      result.errors.push({ line: record.start, error: error.message });
      result.skipped += 1;
      continue;
    }
    if (batch.length >= batchSize) {
      await writeBatch(db, organizationId, batch, result);
      batch = [];
    }
  }
  await reading;
  if (!columns) throw badUserInput('The file is empty: expected a header line (phone,firstName,lastName,tags,…).');
  if (batch.length > 0) await writeBatch(db, organizationId, batch, result);
  result.errors.sort((a, b) => a.line - b.line);
  return result;
}

type State = Pick<ContactRow, 'firstName' | 'lastName' | 'tags' | 'customFields'>;

/** Applies a batch of lines: one locked read of the numbers already there, one upsert, and links conversations to new contacts. */
async function writeBatch(db: Db, organizationId: string, lines: Line[], result: ImportResult): Promise<void> {
  const byPhone = new Map<string, Line[]>();
  for (const line of lines) byPhone.set(line.phoneNumber, [...(byPhone.get(line.phoneNumber) ?? []), line]);
  await db.transaction(async (tx) => {
    const existing = new Map(
      (
        await tx
          .select()
          .from(contacts)
          .where(and(eq(contacts.organizationId, organizationId), inArray(contacts.phoneNumber, [...byPhone.keys()])))
          .for('update')
      ).map((row) => [row.phoneNumber, row]),
    );
    const writes: (State & { phoneNumber: string })[] = [];
    const applied = new Map<string, number>();
    for (const [phoneNumber, phoneLines] of byPhone) {
      const current = existing.get(phoneNumber);
      let state: State = current ?? { firstName: null, lastName: null, tags: [], customFields: {} };
      let count = 0;
      for (const line of phoneLines) {
        const keys = mergedCustomFieldCount(state.customFields, line.customFields);
        if (keys > MAX_CUSTOM_FIELDS) {
          result.errors.push({ line: line.line, error: `the contact would have ${keys} custom fields (at most ${MAX_CUSTOM_FIELDS}).` });
          result.skipped += 1;
          continue;
        }
        state = {
          firstName: line.firstName ?? state.firstName,
          lastName: line.lastName ?? state.lastName,
          tags: line.tags ?? state.tags,
          customFields: { ...state.customFields, ...line.customFields },
        };
        count += 1;
      }
      if (count === 0) continue;
      applied.set(phoneNumber, count);
      const unchanged =
        current &&
        current.firstName === state.firstName &&
        current.lastName === state.lastName &&
        sameTags(current.tags, state.tags) &&
        sameCustomFields(current.customFields, state.customFields);
      // Lines that change nothing count as updated, and write nothing (updated_at stays).
      if (unchanged) result.updated += count;
      else writes.push({ phoneNumber, ...state });
    }
    if (writes.length === 0) return;
    const written = await tx
      .insert(contacts)
      .values(writes.map((row) => ({ organizationId, ...row, isTextable: null })))
      .onConflictDoUpdate({
        target: [contacts.organizationId, contacts.phoneNumber],
        // Consent (is_opted_in) and textability are never set here. coalesce and || keep what a contact created
        // since our read (an inbound message meanwhile) holds; for the rows read above they change nothing.
        set: {
          firstName: sql`coalesce(excluded.first_name, ${contacts.firstName})`,
          lastName: sql`coalesce(excluded.last_name, ${contacts.lastName})`,
          tags: sql`case when cardinality(excluded.tags) = 0 then ${contacts.tags} else excluded.tags end`,
          customFields: sql`${contacts.customFields} || excluded.custom_fields`,
          updatedAt: sql`now()`,
        },
      })
      .returning({ id: contacts.id, phoneNumber: contacts.phoneNumber, created: sql<boolean>`(xmax = 0)` });
    const createdIds: string[] = [];
    for (const row of written) {
      const count = applied.get(row.phoneNumber)!;
      if (row.created) {
        createdIds.push(row.id);
        result.created += 1;
        result.updated += count - 1;
      } else result.updated += count;
    }
    if (createdIds.length > 0) {
      // A conversation may predate the contact (an unknown sender): link it, as createContact does.
      await tx.execute(sql`update ${conversations} set contact_id = c.id, updated_at = now()
        from ${contacts} c
        where ${conversations.organizationId} = ${organizationId} and ${conversations.contactId} is null
          and c.organization_id = ${organizationId} and ${inArray(sql`c.id`, createdIds)} and c.phone_number = ${conversations.phoneNumber}`);
    }
  });
}
