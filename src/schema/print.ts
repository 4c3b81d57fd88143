import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { schema } from './index.js';

/** The SDL as committed in schema.graphql: sorted, so the diff only shows real changes. */
export const printedSchema = () => `${printSchema(lexicographicSortSchema(schema))}\n`;

export const schemaFile = fileURLToPath(new URL('../../schema.graphql', import.meta.url));

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(schemaFile, printedSchema());
  console.log(`wrote ${schemaFile}`);
}
