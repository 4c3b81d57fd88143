import { defineConfig } from 'drizzle-kit';

// Migrations are generated from src/db/tables.ts into drizzle/ and applied at start (src/db/client.ts).
export default defineConfig({
  dialect: 'postgresql',
  schema: ['./src/db/tables.ts', './src/db/teamwork-tables.ts', './src/db/webhook-tables.ts'],
  out: './drizzle',
});
